"""One workdir, one run: the single-writer lock, the run record (identity.json, config.json,
history.jsonl) and a checkpoint policy that cannot lose the final model. In-process and
without training: a workdir "holds checkpoints" here when checkpoints/<step>/ exists.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from backmix_jax.training.workdir import WorkdirError, claim
from tests.helpers import quick_config


def _claim(cfg, directory):
  """A start of `cfg` in `directory` whose checks pass: it is accepted and recorded."""
  with claim(cfg, str(directory)) as held:
    held.accept()


def _checkpoint(directory, step):
  os.makedirs(directory / "checkpoints" / str(step), exist_ok=True)


def test_second_writer_is_refused_while_the_first_holds_the_workdir(tmp_path):
  """Two trainers in one workdir: the second is refused naming the first's pid and host;
  once the first is done the workdir is free again, with no stale-lock warning."""
  with claim(quick_config(), str(tmp_path)) as held:
    held.accept()
    with pytest.raises(WorkdirError, match=rf"in use by pid {os.getpid()} on host "
                                           rf"{socket.gethostname()}"):
      _claim(quick_config(), tmp_path)
  _claim(quick_config(), tmp_path)
  assert (tmp_path / ".lock").read_text() == ""


def test_lock_of_a_live_process_refuses_and_of_a_killed_one_is_taken_over(tmp_path, capsys):
  """Another process holding the lock is named in the refusal; once it is killed (no
  chance to release anything) its lock is taken over with one warning line."""
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import fcntl, json, os, socket, time
      fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT)
      fcntl.flock(fd, fcntl.LOCK_EX)
      os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname())).encode())
      print("locked", flush=True)
      time.sleep(60)
      """)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(WorkdirError, match=rf"in use by pid {holder.pid} on host"):
      _claim(quick_config(), tmp_path)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  capsys.readouterr()
  _claim(quick_config(), tmp_path)
  out = capsys.readouterr().out
  assert f"took over the stale lock of pid {holder.pid}" in out and "no longer runs" in out


def test_rerun_of_another_run_is_refused_and_override_appends_history(tmp_path, capsys):
  """A rerun whose schedule differs is refused naming each differing field; changing only
  evaluation, logging or checkpoint settings is allowed; resume=override continues the run,
  appends the new config to history.jsonl (config.json keeps the first start) and makes
  it the run's identity from then on."""
  _claim(quick_config(), tmp_path)
  first_config = (tmp_path / "config.json").read_text()
  assert json.loads((tmp_path / "identity.json").read_text())["identity"]["seed"] == 0
  _checkpoint(tmp_path, 23)
  with pytest.raises(WorkdirError, match=r"holds a different model or schedule \(checkpoint "
                                         r"step 23\): num_epochs 1 recorded, 3 now, seed 0 "
                                         r"recorded, 5 now\. .*--config.resume=override"):
    _claim(quick_config(seed=5, num_epochs=3), tmp_path)
  _claim(quick_config(log_every_steps=1, eval_batch_size=128, keep_checkpoints=1, score="msp",
                      checkpoint_every_steps=7), tmp_path)
  assert not (tmp_path / "history.jsonl").exists()

  _claim(quick_config(seed=5, resume="override"), tmp_path)
  history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert len(history) == 1
  assert history[0]["changed"] == {"seed": [0, 5]} and history[0]["resumed_from_step"] == 23
  assert history[0]["config"]["seed"] == 5 and history[0]["config"]["resume"] == "override"
  assert (tmp_path / "config.json").read_text() == first_config
  assert "continuing with a changed config (resume=override): seed" in capsys.readouterr().out
  _claim(quick_config(seed=5), tmp_path)  # the overridden run is the run now
  with pytest.raises(WorkdirError, match="seed 5 recorded, 0 now"):
    _claim(quick_config(), tmp_path)


def test_workdir_without_a_checkpoint_is_recorded_afresh(tmp_path):
  """Nothing trained yet (e.g. the first start stopped at a data error): a changed config
  is not refused; it replaces the record of the start that trained nothing."""
  _claim(quick_config(**{"data.image_size": 24}), tmp_path)
  _claim(quick_config(), tmp_path)
  assert json.loads((tmp_path / "identity.json").read_text())["identity"]["data.image_size"] == 32
  assert json.loads((tmp_path / "config.json").read_text())["data"]["image_size"] == 32
  assert not (tmp_path / "history.jsonl").exists()


def test_workdir_of_an_older_version_is_checked_against_its_config_json(tmp_path):
  """A workdir trained before identity.json existed: its config.json is the record."""
  (tmp_path / "config.json").write_text(quick_config().to_json_best_effort())
  _checkpoint(tmp_path, 23)
  with pytest.raises(WorkdirError, match="model 'cnn_small' recorded, 'classifier32' now"):
    _claim(quick_config(model="classifier32"), tmp_path)
  _claim(quick_config(), tmp_path)
  assert json.loads((tmp_path / "identity.json").read_text())["derived_from"] == "config.json"


def test_final_checkpoint_is_kept_whatever_keep_says(tmp_path):
  """keep=0 would have Orbax delete every checkpoint, the final one included."""
  import jax.numpy as jnp
  from backmix_jax.training.checkpointing import Checkpointer
  ckpt = Checkpointer(str(tmp_path), keep=0)
  for step in (1, 2, 3):
    ckpt.save(step, {"w": jnp.ones(2)}, {"model": "x"}, force=True)
  ckpt.wait()
  assert ckpt.all_steps() == [3]
  ckpt.close()


def test_evaluate_accepts_the_split_spelled_out_and_follows_an_override(tmp_path):
  """The split's own known classes written out are the same run; after a resume=override
  evaluate compares with the overriding config (history.jsonl), not the first one."""
  from backmix_jax.training.checkpointing import CheckpointError
  from backmix_jax.commands.evaluate import check_trained_config
  _claim(quick_config(), tmp_path)
  check_trained_config(quick_config(known_classes=(6, 3, 4, 9, 8, 2)), str(tmp_path))
  with pytest.raises(CheckpointError, match=r"trial=0 in training, 1 here"):
    check_trained_config(quick_config(trial=1), str(tmp_path))
  _checkpoint(tmp_path, 23)
  _claim(quick_config(**{"data.normalize": "unit", "resume": "override"}), tmp_path)
  check_trained_config(quick_config(**{"data.normalize": "unit"}), str(tmp_path))
  with pytest.raises(CheckpointError, match="history.jsonl"):
    check_trained_config(quick_config(), str(tmp_path))



def test_unreadable_checkpoint_asked_for_by_step_is_one_line(tmp_path):
  """evaluate --step N of a damaged checkpoint: a CheckpointError naming the step and the
  steps there are (the newest-first fallback is only for the unnamed newest); nothing is
  moved."""
  import jax.numpy as jnp
  from backmix_jax.training.checkpointing import CheckpointError, Checkpointer
  ckpt = Checkpointer(str(tmp_path))
  for step in (1, 2):
    ckpt.save(step, {"w": jnp.ones(2)}, {"model": "x"}, force=True)
  ckpt.wait()
  for root, _, files in os.walk(tmp_path / "checkpoints" / "1" / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  with pytest.raises(CheckpointError, match=r"checkpoint at step 1 in .* is unreadable .*"
                                            r"choose another of the steps \[1, 2\]"):
    ckpt.restore({"w": jnp.ones(2)}, {"model": "x"}, step=1)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
  ckpt.close()


def _listing(root):
  """Every path under `root` with its mtime and size: what a reader must leave as it was."""
  return {str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.lstat().st_size)
          for p in root.rglob("*")}


def _tiny_checkpoints(directory, values_by_step):
  import jax.numpy as jnp
  from backmix_jax.training.checkpointing import Checkpointer
  ckpt = Checkpointer(str(directory))
  for step, values in values_by_step.items():
    ckpt.save(step, {"w": jnp.asarray(values, jnp.float32)}, {"model": "x"}, force=True)
  ckpt.wait()
  ckpt.close()


def test_reader_reports_a_damaged_newest_checkpoint_and_moves_nothing(tmp_path):
  """Evaluation, the mixing grid and a teacher read checkpoints with read_only=True: a
  damaged newest checkpoint is one CheckpointError naming it and the older steps; nothing in
  the workdir is renamed or written (a read-only workdir would refuse that). Training's
  Checkpointer alone moves it to <step>.corrupt."""
  import jax.numpy as jnp
  from backmix_jax.commands import exit_codes
  from backmix_jax.training.checkpointing import CheckpointError, Checkpointer
  _tiny_checkpoints(tmp_path, {1: [1.0, 2.0], 2: [3.0, 4.0]})
  for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  before = _listing(tmp_path)
  ckpt = Checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(CheckpointError, match=r"checkpoint at step 2 in .* is unreadable .*it is "
                                            r"the newest: choose an older one of the steps \[1\]"
                     ) as error:
    ckpt.restore({"w": jnp.ones(2)}, {"model": "x"})
  ckpt.close()
  code, line = exit_codes.exit_status(error.value)
  assert code == 2 and len(line.splitlines()) == 1
  assert _listing(tmp_path) == before


def test_non_finite_checkpoint_is_one_line_naming_the_step(tmp_path):
  """A checkpoint whose weights were flipped to NaN/inf on disk is caught where its values
  are first seen (the restore), named by step and array: exit code 2, not NaN scores and a
  traceback later. Asked for by step it is reported; as training's newest it is moved aside
  like an unreadable one and the older one is restored."""
  import jax.numpy as jnp
  from backmix_jax.commands import exit_codes
  from backmix_jax.training.checkpointing import CheckpointError, Checkpointer
  _tiny_checkpoints(tmp_path, {1: [1.0, 2.0], 2: [1.0, float("nan")]})
  ckpt = Checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(CheckpointError, match=r"checkpoint at step 2 in .* holds non-finite "
                                            r"weights \(NaN or inf in w\)") as error:
    ckpt.restore({"w": jnp.ones(2)}, {"model": "x"}, step=2)
  ckpt.close()
  code, line = exit_codes.exit_status(error.value)
  assert code == 2 and len(line.splitlines()) == 1
  ckpt = Checkpointer(str(tmp_path))
  with pytest.warns(UserWarning, match="step 2 holds non-finite weights"):
    state, step = ckpt.restore({"w": jnp.ones(2)}, {"model": "x"})
  ckpt.close()
  assert step == 1 and sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2.corrupt"]


def test_refused_start_writes_nothing_and_leaves_the_record_as_it_was(tmp_path, capsys):
  """A start refused after the claim (a bad input, or an override whose model the
  checkpoint refuses: anything raised before accept()) writes nothing: a new workdir is not
  created, and an existing one keeps its history.jsonl, so the original command and
  evaluate's check still take the original config."""
  from backmix_jax.commands.evaluate import check_trained_config
  from backmix_jax.training.checkpointing import CheckpointError
  new = tmp_path / "new"
  with pytest.raises(CheckpointError):
    with claim(quick_config(), str(new)):
      raise CheckpointError("refused by a check of the run")
  assert not new.exists()
  run = tmp_path / "run"
  _claim(quick_config(), run)
  _checkpoint(run, 23)
  before = _listing(run)
  with pytest.raises(CheckpointError):
    with claim(quick_config(model="classifier32", resume="override"), str(run)):
      raise CheckpointError("holds a different model")
  # Only the lock was held (and emptied again) meanwhile.
  before.pop(".lock")
  after = _listing(run)
  after.pop(".lock")
  assert after == before and not (run / "history.jsonl").exists()
  assert "continuing with a changed config" not in capsys.readouterr().out
  _claim(quick_config(), run)
  check_trained_config(quick_config(), str(run))


def test_a_claim_left_without_accept_is_a_bug_not_a_silent_unrecorded_run(tmp_path):
  """A caller that forgets accept() would train unrecorded (and, in a new workdir,
  unlocked): the claim says so instead of ending quietly."""
  with pytest.raises(RuntimeError, match="ended without accept"):
    with claim(quick_config(), str(tmp_path / "run")):
      pass


def test_unfinished_checkpoint_writes_are_removed_by_the_writer_only(tmp_path):
  """The temporary folders of saves that never finished are removed (and named) by a writing
  Checkpointer, so Orbax's first save meets none; finished checkpoints stay, and a reader
  removes nothing."""
  from backmix_jax.training.checkpointing import Checkpointer
  root = tmp_path / "checkpoints"
  for name in ("10", "15.orbax-checkpoint-tmp", "20.orbax-checkpoint-tmp-1733390000"):
    (root / name).mkdir(parents=True)
    (root / name / "data").write_text("x")
  reader = Checkpointer(str(tmp_path), read_only=True)
  assert reader.remove_unfinished() == []
  reader.close()
  assert len(os.listdir(root)) == 3
  writer = Checkpointer(str(tmp_path))
  assert writer.remove_unfinished() == ["15.orbax-checkpoint-tmp",
                                        "20.orbax-checkpoint-tmp-1733390000"]
  writer.close()
  assert os.listdir(root) == ["10"] and (root / "10" / "data").read_text() == "x"
