"""How a training run stops and what it leaves: Ctrl-C, a diverging run under
nan_policy=skip_step, a full disk, a resume with a shorter schedule, and the records a
resume writes. In-process, on a 5-step run (16 px digits, batch 128, a checkpoint every
2 steps); a stop is provoked by wrapping the train step.
"""
import errno
import json
import os
import signal

import jax.numpy as jnp
import pytest

from backmix_jax.commands import exit_codes
from backmix_jax.training import train
from backmix_jax.training.checkpointing import Checkpointer
from backmix_jax.training.train import NonFiniteError, Preempted, train_and_evaluate
from backmix_jax.training.workdir import RunFailed
from tests.helpers import quick_config

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

TOTAL = 5  # 754 training images // 128


def tiny(**overrides):
  return quick_config(**{"batch_size": 128, "eval_batch_size": 128, "checkpoint_every_steps": 2,
                         "keep_checkpoints": 10, "log_every_steps": 1, "data.image_size": 16,
                         **overrides})


def wrap_step(monkeypatch, after):
  """Make the train loop's step call `after(step, metrics)` -> metrics after each step."""
  # The step factory train.py imported from training/step.py, whatever its name.
  (name,) = [n for n, v in vars(train).items()
             if callable(v) and getattr(v, "__module__", "") == "backmix_jax.training.step"]
  real = getattr(train, name)

  def make(*args, **kwargs):
    step_fn, calls = real(*args, **kwargs), []

    def wrapped(state, batch):
      state, metrics = step_fn(state, batch)
      calls.append(1)
      return state, after(len(calls), metrics)
    return wrapped
  monkeypatch.setattr(train, name, make)


def _records(workdir):
  return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


def test_ctrl_c_saves_says_how_to_resume_and_exits_130(tmp_path, monkeypatch):
  """Ctrl-C is handled like SIGTERM: the step finishes, a checkpoint is saved, the line
  says how to resume, the exit code is 130; the rerun resumes from it, metrics.jsonl marks
  the resume, and every record's step is an integer."""
  def interrupt(step, metrics):
    if step == 3:
      os.kill(os.getpid(), signal.SIGINT)
    return metrics
  wrap_step(monkeypatch, interrupt)
  handler = signal.getsignal(signal.SIGINT)
  with pytest.raises(Preempted) as stop:
    train_and_evaluate(tiny(), str(tmp_path))
  code, line = exit_codes.exit_status(stop.value)
  assert code == 130
  assert line.startswith(f"stopped by SIGINT at step 3/{TOTAL}; checkpoint saved in")
  assert line.endswith("Run the same command again to resume.")
  assert Checkpointer(tmp_path).all_steps() == [2, 3]
  assert signal.getsignal(signal.SIGINT) is handler  # restored

  monkeypatch.undo()
  train_and_evaluate(tiny(), str(tmp_path))
  records = _records(tmp_path)
  assert all(type(r["step"]) is int for r in records)
  kinds = [(r["kind"], r["step"]) for r in records]
  assert ("resumed_from", 3) in kinds
  # The records before the marker end at the steps the stopped run logged; after it, the
  # run goes on from step 4 to the final evaluation.
  mark = kinds.index(("resumed_from", 3))
  assert [s for k, s in kinds[mark + 1:] if k == "train"] == [4, 5]
  assert kinds[-1] == ("eval", TOTAL)


def test_second_ctrl_c_aborts_at_once():
  """A user who will not wait for the save presses Ctrl-C again: KeyboardInterrupt now."""
  handler = signal.getsignal(signal.SIGINT)
  with train.PreemptionWatch(ckpt=None) as watch:
    os.kill(os.getpid(), signal.SIGINT)
    assert watch.flag and watch.signal == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is handler
  assert exit_codes.exit_status(KeyboardInterrupt())[0] == 130


def test_skip_step_stops_after_max_skipped_steps(tmp_path, monkeypatch):
  """nan_policy=skip_step on a run that stays non-finite stops after max_skipped_steps
  steps in a row, naming the last good checkpoint (exit code 1: training had started)."""
  wrap_step(monkeypatch, lambda step, m: dict(m, finite=jnp.asarray(step < 2)))
  with pytest.raises(NonFiniteError, match=r"2 steps in a row \(to step 3\) had non-finite loss "
                                           r"or gradients under nan_policy=skip_step "
                                           r"\(max_skipped_steps=2\); last good checkpoint: "
                                           r"step 2") as stop:
    train_and_evaluate(tiny(nan_policy="skip_step", max_skipped_steps=2), str(tmp_path))
  assert exit_codes.exit_status(stop.value)[0] == 1
  assert Checkpointer(tmp_path).all_steps() == [2]


def test_disk_full_while_training_names_the_checkpoint_to_resume_from(tmp_path, monkeypatch):
  """A full disk at a checkpoint write ends in one line and exit code 1, naming the last
  complete checkpoint; the workdir is left free for the rerun."""
  real_save = Checkpointer.save

  def save(self, step, *args, **kwargs):
    if step == 4:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.directory)
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(Checkpointer, "save", save)
  with pytest.raises(RunFailed) as stop:
    train_and_evaluate(tiny(), str(tmp_path))
  code, line = exit_codes.exit_status(stop.value)
  assert code == 1 and "No space left on device" in line
  assert "the last complete checkpoint is step 2" in line
  assert (tmp_path / ".lock").read_text() == ""  # released


def test_override_with_a_shorter_schedule_never_relabels_a_checkpoint(tmp_path):
  """Resuming a finished 5-step run under a 3-step schedule (batch 192) with resume=override:
  nothing is trained and no checkpoint "3" holding the step-5 weights is written."""
  train_and_evaluate(tiny(), str(tmp_path))
  assert Checkpointer(tmp_path).all_steps() == [2, 4, 5]
  metrics = train_and_evaluate(tiny(batch_size=192, resume="override"), str(tmp_path))
  assert Checkpointer(tmp_path).all_steps() == [2, 4, 5]
  assert metrics["step"] == 5
  (entry,) = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert entry["changed"] == {"batch_size": [128, 192]}


class _Killed(Exception):
  """What the default SIGTERM handler would do to the command (exit 143, no message, the
  lock's content left behind), as an exception the test can see."""


def test_sigterm_during_the_final_evaluation_is_one_line_and_frees_the_workdir(tmp_path,
                                                                               monkeypatch):
  """SIGTERM while the final model is evaluated ends like SIGTERM during training: the
  Preempted line saying the checkpoint is saved and how to go on, exit code 0, the lock
  released, the handler restored; the rerun evaluates the saved final checkpoint."""
  real = train.evaluate_run

  def evaluate_run(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
  monkeypatch.setattr(train, "evaluate_run", evaluate_run)

  def killed(signum, frame):
    raise _Killed
  previous = signal.signal(signal.SIGTERM, killed)
  try:
    with pytest.raises(Preempted) as stop:
      train_and_evaluate(tiny(), str(tmp_path))
    assert signal.getsignal(signal.SIGTERM) is killed  # restored
  finally:
    signal.signal(signal.SIGTERM, previous)
  code, line = exit_codes.exit_status(stop.value)
  assert code == 0
  assert line.startswith(f"stopped by SIGTERM before the final evaluation of step {TOTAL} "
                         "finished; checkpoint saved in"), line
  assert line.endswith("Run the same command again to evaluate it."), line
  assert (tmp_path / ".lock").read_text() == ""  # released
  assert Checkpointer(tmp_path).all_steps()[-1] == TOTAL
  assert not (tmp_path / "metrics.json").exists()

  monkeypatch.undo()
  assert train_and_evaluate(tiny(), str(tmp_path))["step"] == TOTAL


def test_sigterm_before_the_first_step_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
  """SIGTERM while the data loads or the model is built (no step to finish) stops at once:
  the Preempted line, exit code 0, the handler restored, and a new workdir never created."""
  def build_run(config):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("the signal did not stop the run")
  monkeypatch.setattr(train, "build_run", build_run)

  def killed(signum, frame):
    raise _Killed
  previous = signal.signal(signal.SIGTERM, killed)
  try:
    with pytest.raises(Preempted) as stop:
      train_and_evaluate(tiny(), str(tmp_path / "run"))
    assert signal.getsignal(signal.SIGTERM) is killed  # restored
  finally:
    signal.signal(signal.SIGTERM, previous)
  code, line = exit_codes.exit_status(stop.value)
  assert code == 0
  assert line.startswith("stopped by SIGTERM before the first step"), line
  assert not (tmp_path / "run").exists()


def test_training_into_a_full_disk_ends_in_one_line_without_tracebacks(tmp_path):
  """The train command on a 3 MB tmpfs: the first checkpoint write fills it. stderr is the
  one line naming the error, and the rerun's ends in it too; no traceback (TensorStore's
  callbacks into Orbax's closed event loop printed dozens of 'Event loop is closed')."""
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    pytest.skip(f"needs to mount a 3 MB tmpfs (root): {mounted.stderr.strip()}")
  try:
    runs = [subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=configs/digits.py",
         f"--workdir={disk}/run", "--config.num_epochs=1", "--config.checkpoint_every_steps=2",
         "--config.data.image_size=16"], cwd=root, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")) for _ in range(2)]
  finally:
    subprocess.run(["umount", str(disk)], check=True)
  line = (f"error: No space left on device while running in {disk}/run: no checkpoint was "
          "saved yet; fix that and run the same command again")
  first, rerun = runs
  assert (first.returncode, first.stderr.strip()) == (1, line), first.stderr[-3000:]
  # The rerun may add Orbax's one warning that it removes the unfinished checkpoint folder.
  assert rerun.returncode == 1 and rerun.stderr.strip().splitlines()[-1] == line
  assert "Traceback" not in rerun.stderr and len(rerun.stderr.splitlines()) <= 2, rerun.stderr[-3000:]
