"""experiments.benchmark: every figure is measured and reported; no timing is asserted.

The run happens in a fresh interpreter where TensorFlow cannot be imported, on synthetic
data with the NumPy pipeline: the situation on a bare JAX GPU image (tools/gpu_bench.sh).
"""
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from backmix_jax.commands import benchmark as bench

REPO = pathlib.Path(__file__).resolve().parents[1]
STEP_FIELDS = {"images_per_second", "seconds_per_step", "repeat_seconds", "compile_seconds",
               "peak_memory_bytes", "temp_bytes"}
RATE_FIELDS = {"images_per_second", "seconds_per_step", "repeat_seconds"}
RATIOS = {"backmix_over_plain_time", "loop_over_step", "pipeline_over_step"}


def _check_result(result, steps, repeats, batch):
  for key in ("plain_step", "backmix_step"):
    assert set(result[key]) == STEP_FIELDS, key
    assert result[key]["compile_seconds"] > 0
  for key in ("pipeline", "loop"):
    assert set(result[key]) == RATE_FIELDS, key
  for key, _ in bench.ROWS:
    r = result[key]
    assert len(r["repeat_seconds"]) == repeats and all(t > 0 for t in r["repeat_seconds"])
    assert math.isclose(r["images_per_second"] * r["seconds_per_step"], batch, rel_tol=1e-9)
  assert set(result["ratios"]) == RATIOS
  assert all(math.isfinite(v) and v > 0 for v in result["ratios"].values())
  assert math.isclose(result["ratios"]["backmix_over_plain_time"],
                      result["backmix_step"]["seconds_per_step"]
                      / result["plain_step"]["seconds_per_step"])
  assert result["settings"]["steps"] == steps and result["settings"]["repeats"] == repeats
  for key in ("date", "device", "versions", "config", "command"):
    assert key in result


# A fake `tensorflow` package whose import fails, as on an image without TensorFlow.
HIDE_TF = textwrap.dedent("""
    raise ImportError("tensorflow is hidden by this test")
""")


@pytest.mark.slow
def test_cli_synthetic_without_tensorflow(tmp_path):
  """cnn_small, 2 steps x 1 repeat, --synthetic, data.backend=numpy, tensorflow not importable:
  prints the table, writes JSON with every row, ratio and metadata (colour images of the
  config's size, K classes, both devices of the mesh), and the table reads the JSON back."""
  fake = tmp_path / "fake" / "tensorflow"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text(HIDE_TF)
  out = tmp_path / "bench.json"
  env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{REPO}",
             XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.benchmark", "--config", "configs/digits.py",
         "--config.model=cnn_small", "--config.batch_size=16", "--config.data.image_size=16",
         "--config.data.backend=numpy", "--synthetic", "--synthetic_classes=5", "--steps=2",
         "--repeats=1", "--warmup=1", "--device_batches=1", f"--json={out}"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "BackMix/plain step time" in proc.stdout and f"wrote {out}" in proc.stdout
  result = json.loads(out.read_text())
  _check_result(result, steps=2, repeats=1, batch=16)
  c = result["config"]
  assert c["data"] == "synthetic" and c["backend"] == "numpy"
  assert c["image_shape"] == [16, 16, 3] and c["num_classes"] == 5
  assert c["train_size"] == 8 * 16
  assert result["device"]["count"] == 2
  table = bench.format_table(result)
  for _, label in bench.ROWS:
    assert label in table
  if result["backmix_step"]["peak_memory_bytes"] is None:  # CPU: no allocator statistics
    assert "| n/a |" in table
  # tools/bench_summary.py (standard library only) turns the JSON into one markdown row.
  proc = subprocess.run([sys.executable, "tools/bench_summary.py", str(out), str(out)], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  rows = [l for l in proc.stdout.splitlines() if l.startswith("| cnn_small | float32 | 16 |")]
  assert len(rows) == 2 and "(numpy)" in rows[0]


@pytest.mark.slow
def test_bad_settings_are_one_line_errors(tmp_path):
  """A missing --config or zero steps ends with exit code 2 and one 'error:' line."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  base = [sys.executable, "-m", "experiments.benchmark"]
  proc = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and proc.stderr.strip().startswith("error:")
  proc = subprocess.run(base + ["--config", "configs/digits.py", "--steps=0"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines() == [
      "error: steps, repeats and device_batches must be >= 1, warmup >= 0"]
