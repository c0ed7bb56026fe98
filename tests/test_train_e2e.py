"""End to end: the train command, exact resume, run records, and one-line errors."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from backmix_jax.training import train
from backmix_jax.training.run import build_run
from backmix_jax.training.train import train_and_evaluate
from tests.helpers import quick_config

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--config.model=cnn_small", "--config.num_epochs=1", "--config.batch_size=32",
         "--config.data.backend=numpy"]


def _train_cli(workdir, *extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "experiments.train", "--config", "configs/digits.py",
                         "--workdir", str(workdir), *QUICK, *extra], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def _params(workdir):
  from backmix_jax.training.checkpointing import Checkpointer
  from backmix_jax.training.run import build_run
  from tests.helpers import flat_params
  cfg = quick_config(num_epochs=2)
  run = build_run(cfg)
  state, step = Checkpointer(workdir).restore(run.state, run.signature)
  return flat_params(state), step


def test_resume_equals_uninterrupted(tmp_path):
  """A run stopped after step 20 and resumed ends with the same parameters and metrics as an
  uninterrupted run: params, optimiser, BN statistics, RNG and data position are restored."""
  cfg = quick_config(num_epochs=2, checkpoint_every_steps=10, keep_checkpoints=100)
  full = tmp_path / "full"
  m_full = train_and_evaluate(cfg, str(full))
  # The interrupted run: only the checkpoints up to step 20 (mid-epoch 1) survive.
  part = tmp_path / "part"
  os.makedirs(part / "checkpoints")
  for name in os.listdir(full / "checkpoints"):
    if name.isdigit() and int(name) <= 20:
      shutil.copytree(full / "checkpoints" / name, part / "checkpoints" / name)
  m_part = train_and_evaluate(cfg, str(part))
  p_full, s_full = _params(full)
  p_part, s_part = _params(part)
  assert s_full == s_part == 2 * (754 // 32)  # 2 epochs of digits ARPL trial 0
  np.testing.assert_array_equal(p_part, p_full)
  for key in ("auroc", "oscr", "acc"):
    assert m_part[key] == m_full[key]
  # Run records: metrics log, TensorBoard events and the resolved config beside them.
  records = [json.loads(line) for line in open(full / "metrics.jsonl")]
  assert {r["kind"] for r in records} == {"train", "eval"}
  assert os.listdir(full / "tensorboard")
  assert json.load(open(full / "config.json"))["model"] == "cnn_small"


def test_train_command_trains_resumes_and_reports(tmp_path):
  """`python -m experiments.train` shows progress, writes checkpoints and metrics.json, prints
  the open-set metrics; run again in the same workdir it resumes instead of restarting."""
  r = _train_cli(tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  for text in ("step", "img/s", "left", "AUROC", "OSCR"):
    assert text in r.stdout
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert 0.5 < metrics["auroc"] <= 1 and 0 < metrics["oscr"] <= metrics["acc"]
  assert os.listdir(tmp_path / "checkpoints")
  again = _train_cli(tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resume from checkpoint at step 23" in again.stdout
  assert "nothing to train" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--config.nonexistent=1"], "unknown config field"),
    (["--config.known_classes=(0,0,1)"], "repeats a class"),
    (["--config.known_classes=(0,1,12)"], "out of range"),
    (["--config.dataset=imagenet22k"], "unknown benchmark"),
    (["--config.framework=nope"], "framework='nope' is unknown"),
])
def test_bad_input_gives_one_line(tmp_path, args, message):
  """Bad input ends with exit code 2 and one line naming the problem, not a traceback."""
  r = _train_cli(tmp_path, *args)
  assert r.returncode == 2
  assert message in r.stderr
  assert "Traceback" not in r.stderr


def test_incompatible_checkpoint_is_refused(tmp_path):
  """A workdir holding a checkpoint of another model is refused with one line."""
  cfg = quick_config()
  train_and_evaluate(cfg, str(tmp_path))
  r = _train_cli(tmp_path, "--config.model=classifier32")
  assert r.returncode == 2
  assert "holds a different model" in r.stderr and "Traceback" not in r.stderr


def test_training_leaves_the_runs_initial_state_alive(tmp_path, monkeypatch):
  """The train step donates its input state (its buffers are deleted on CPU, GPU and TPU);
  the loop hands it a copy, so `run.state`, the template later restores and evaluations
  read, still holds every buffer after a whole run."""
  built = []

  def build_and_keep(config, *args, **kwargs):
    built.append(build_run(config, *args, **kwargs))
    return built[-1]

  monkeypatch.setattr(train, "build_run", build_and_keep)
  train_and_evaluate(quick_config(**{"data.image_size": 16, "batch_size": 128}), str(tmp_path))
  arrays = [x for x in jax.tree.leaves(built[0].state) if isinstance(x, jax.Array)]
  assert arrays and not any(x.is_deleted() for x in arrays)
