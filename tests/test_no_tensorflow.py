"""The TensorFlow-free path: on a JAX-only image (no tensorflow, no tensorflow_datasets) the
library imports, 'auto' picks the NumPy pipeline, and a run trains and evaluates.

Runs in a fresh interpreter, because this test session may already have imported TensorFlow.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]

# sys.modules[name] = None makes every `import name` raise ImportError, as if not installed.
SCRIPT = textwrap.dedent("""
    import json, sys
    for name in ("tensorflow", "tensorflow_datasets"):
      sys.modules[name] = None
    from backmix_jax.data import pipeline
    from backmix_jax.data.openset import load_open_set
    from backmix_jax.training.train import train_and_evaluate
    from configs import digits

    config = digits.get_config()
    config.model = "cnn_small"
    config.num_epochs = 1
    config.batch_size = 32
    config.eval_batch_size = 64
    config.data.backend = "auto"
    config.checkpoint_every_steps = 1000
    metrics = train_and_evaluate(config, sys.argv[1])
    # Nothing imported TensorFlow behind our back (a caught ImportError would leave None).
    loaded = sorted(m for m in sys.modules
                    if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")
                    and sys.modules[m] is not None)
    data = load_open_set(config)
    print("RESULT " + json.dumps(dict(backend=pipeline.resolve_backend("auto"),
                                      steps=len(data.train) // config.batch_size,
                                      test=[len(data.test_known), len(data.test_unknown)],
                                      tf_available=pipeline.tensorflow_available(),
                                      loaded=loaded, metrics=metrics)))
""")


def test_train_and_evaluate_without_tensorflow(tmp_path):
  """digits, cnn_small, 1 epoch, data.backend='auto': resolves to numpy, trains every step,
  writes a checkpoint and finite metrics, and never imports TensorFlow."""
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  workdir = tmp_path / "run"
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(workdir)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
  result = json.loads(line[len("RESULT "):])
  assert result["backend"] == "numpy" and result["tf_available"] is False
  assert result["loaded"] == []
  m = result["metrics"]
  # every test image scored: digits with ARPL's MNIST trial 0 lists (6 known / 4 unknown)
  assert [m["num_known"], m["num_unknown"]] == result["test"]
  assert result["test"][0] > result["test"][1] > 200
  for key in ("acc", "auroc", "oscr"):
    assert 0.0 <= m[key] <= 1.0
  steps = result["steps"]  # one epoch of the known training images
  assert steps > 0 and m["step"] == steps  # evaluated after the last step
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert any(r["kind"] == "eval" and r["step"] == steps for r in records)
  assert (workdir / "metrics.json").is_file() and (workdir / "eval_outputs.npz").is_file()
  assert any(p.name == str(steps) for p in workdir.rglob("*") if p.is_dir())  # final checkpoint
