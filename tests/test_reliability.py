"""Reliability: preemption (SIGTERM), hard kills (SIGKILL), corrupted checkpoints, NaNs.

Each interrupted run is resumed with the same command and must end bit-identical to one
uninterrupted run (CPU, deterministic): parameters, BN statistics, optimiser, BackMix bank
(bank mode is used throughout) and the data position all come back from the checkpoint.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from backmix_jax.training.checkpointing import Checkpointer
from backmix_jax.training.run import build_run
from backmix_jax.training.train import NonFiniteError, train_and_evaluate
from tests.helpers import build_with_step, quick_config

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = dict(num_epochs=2, **{"backmix.cam_source": "bank"})
FLAGS = ["--config.model=cnn_small", "--config.num_epochs=2", "--config.batch_size=32",
         "--config.eval_batch_size=64", "--config.log_every_steps=5",
         "--config.data.backend=numpy", "--config.backmix.cam_source=bank"]


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "experiments.train", "--config", "configs/digits.py",
          "--workdir", str(workdir), *FLAGS, *extra]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")


def _state(workdir, step=None):
  run = build_run(quick_config(**OVERRIDES))
  state, _ = Checkpointer(workdir).restore(run.state, run.signature, step)
  return state


def _assert_same_state(a, b):
  import jax
  for name in ("params", "batch_stats", "opt_state", "bank", "step"):
    jax.tree.map(np.testing.assert_array_equal, getattr(a, name), getattr(b, name))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted run (46 steps, bank mode)."""
  workdir = tmp_path_factory.mktemp("reference")
  metrics = train_and_evaluate(quick_config(**OVERRIDES), str(workdir))
  return _state(workdir), metrics


def _start_and_interrupt(workdir, sig, after_step, *extra):
  """Start the train command, send `sig` once it has logged `after_step`; return its output."""
  p = subprocess.Popen(_cmd(workdir, *extra), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in p.stdout:
    lines.append(line)
    if line.startswith(f"step {after_step:>6}/"):
      p.send_signal(sig)
      break
  rest, _ = p.communicate(timeout=300)
  return p.returncode, "".join(lines) + rest


def test_sigterm_saves_and_resumes_exactly(tmp_path, reference):
  """SIGTERM: checkpoint at the next step boundary, exit 0 with how to resume; the rerun
  ends identical to the uninterrupted run."""
  rc, out = _start_and_interrupt(tmp_path, signal.SIGTERM, 10, "--config.checkpoint_every_steps=1000")
  assert rc == 0, out[-2000:]
  assert "stopped by SIGTERM at step" in out and "Run the same command again to resume" in out
  stopped = Checkpointer(tmp_path).latest_step()
  assert 10 <= stopped < 46
  r = subprocess.run(_cmd(tmp_path, "--config.checkpoint_every_steps=1000"), cwd=ROOT,
                     env=_env(), capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"resume from checkpoint at step {stopped}" in r.stdout
  _assert_same_state(_state(tmp_path), reference[0])


def test_sigkill_resumes_from_last_checkpoint_exactly(tmp_path, reference):
  """SIGKILL (no chance to save): the rerun resumes from the last periodic checkpoint, sees
  each remaining batch once, and ends identical to the uninterrupted run."""
  rc, out = _start_and_interrupt(tmp_path, signal.SIGKILL, 15, "--config.checkpoint_every_steps=7")
  assert rc == -signal.SIGKILL
  saved = Checkpointer(tmp_path).latest_step()
  assert saved is not None and saved % 7 == 0
  r = subprocess.run(_cmd(tmp_path, "--config.checkpoint_every_steps=7"), cwd=ROOT, env=_env(),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert f"resume from checkpoint at step {saved}" in r.stdout
  _assert_same_state(_state(tmp_path), reference[0])


def test_corrupted_newest_checkpoint_falls_back(tmp_path, reference):
  """A damaged newest checkpoint is moved aside with a warning; training resumes from the
  previous good one, nothing else is lost, and the result equals the uninterrupted run."""
  cfg = quick_config(checkpoint_every_steps=10, keep_checkpoints=100, **OVERRIDES)
  train_and_evaluate(cfg, str(tmp_path))
  newest = tmp_path / "checkpoints" / "46"
  for root, _, files in os.walk(newest / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  with pytest.warns(UserWarning, match="step 46 is unreadable"):
    train_and_evaluate(cfg, str(tmp_path))
  assert (tmp_path / "checkpoints" / "46.corrupt").is_dir()
  assert sorted(Checkpointer(tmp_path).all_steps()) == [10, 20, 30, 40, 46]
  _assert_same_state(_state(tmp_path), reference[0])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  """nan_policy=stop: a diverging run stops naming the step and the last good checkpoint,
  which stays restorable; nan_policy=skip_step finishes with finite parameters."""
  # A sane first epoch, then a learning rate of 1e30 from epoch 1 (step 23) on.
  cfg = quick_config(num_epochs=2, checkpoint_every_steps=4,
                     **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.01,
                        "optimizer.schedule": "multistep", "optimizer.milestones": (1,),
                        "optimizer.decay": 1e32})
  with pytest.raises(NonFiniteError, match=r"non-finite loss or gradients at step \d+; last good checkpoint: step \d+"):
    train_and_evaluate(cfg, str(tmp_path / "stop"))
  assert Checkpointer(tmp_path / "stop").latest_step() in (20, 24)
  state = _state_for(cfg, tmp_path / "stop")
  assert all(np.all(np.isfinite(np.asarray(x))) for x in __import__("jax").tree.leaves(state.params))


def test_skip_step_policy_keeps_state_and_advances():
  """nan_policy=skip_step: a step whose gradients are non-finite leaves parameters, optimiser
  and BN statistics untouched but still advances the step (the data position)."""
  import jax
  import jax.numpy as jnp
  from backmix_jax import parallel
  run, step_fn = build_with_step(quick_config(nan_policy="skip_step"))
  batch = parallel.to_global(next(iter(run.stream.batches(0, 1))), run.mesh)
  poisoned = run.state.replace(params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan),
                                                   run.state.params))
  before = jax.device_get(poisoned)
  after, metrics = step_fn(poisoned, batch)
  assert not bool(metrics["finite"])
  assert int(after.step) == 1
  for name in ("params", "opt_state", "batch_stats"):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b),
                 getattr(after, name), getattr(before, name))


def _state_for(cfg, workdir):
  run = build_run(cfg)
  return Checkpointer(workdir).restore(run.state, run.signature)[0]
