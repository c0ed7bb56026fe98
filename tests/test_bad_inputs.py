"""Bad inputs and broken environments end in one line and a known exit code, never a
traceback: one table of (input, expected exit code, expected words).

Most rows run in-process (the config check, the data loaders, the workdir claim) and map
the exception through `exit_codes.exit_status`, the function the commands end with; only
what lives in the command line itself (flag parsing, the config file, --workdir,
--distributed) starts a subprocess, each of which stops before any JAX work.
"""
import errno
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import quick_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status(action):
  """Run `action`; (exit code, line) as the commands would end: 0 if nothing was raised."""
  from backmix_jax.commands import exit_codes
  try:
    action()
  except BaseException as e:  # KeyboardInterrupt rows included
    status = exit_codes.exit_status(e)
    assert status is not None, f"{type(e).__name__} would end in a traceback: {e}"
    return status
  return 0, ""


# --- config values: validate.check_config, before any data is read ---------------------

def config(**overrides):
  def run(tmp_path, monkeypatch):
    from backmix_jax.training import validate
    return _status(lambda: validate.check_config(quick_config(**overrides)))
  return run


# --- data files: the loaders, before training -----------------------------------------

def _images(n):
  return np.zeros((n, 8, 8, 1), np.uint8)


def _labels(n):
  return np.arange(n) % 10


def _jpeg_arrays(blobs):
  buf = np.frombuffer(b"".join(blobs), np.uint8)
  return buf, np.cumsum([0] + [len(b) for b in blobs])


def _jpeg():
  from PIL import Image
  out = io.BytesIO()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, "JPEG")
  return out.getvalue()


def npz(**train):
  """A source whose train split is `train` (test split: 10 good images); load_open_set."""
  def run(tmp_path, monkeypatch):
    from backmix_jax.data.openset import load_open_set
    path = tmp_path / "source.npz"
    arrays = dict(test_images=_images(10), test_labels=_labels(10))
    arrays.update(train)
    np.savez(path, **arrays)
    cfg = quick_config(**{"data.source": f"npz:{path}", "data.image_size": 8})
    return _status(lambda: load_open_set(cfg))
  return run


def raw_file(content: bytes):
  def run(tmp_path, monkeypatch):
    from backmix_jax.data.openset import load_open_set
    path = tmp_path / "source.npz"
    path.write_bytes(content)
    cfg = quick_config(**{"data.source": f"npz:{path}", "data.image_size": 8})
    return _status(lambda: load_open_set(cfg))
  return run


def train_in_new_workdir(**train):
  """train_and_evaluate from the npz source of `npz(**train)` into a new workdir: a bad input
  ends before anything is written, so the workdir is never created."""
  def run(tmp_path, monkeypatch):
    from backmix_jax.training.train import train_and_evaluate
    path = tmp_path / "source.npz"
    np.savez(path, **dict(dict(test_images=_images(10), test_labels=_labels(10)), **train))
    cfg = quick_config(**{"data.source": f"npz:{path}", "data.image_size": 8})
    status = _status(lambda: train_and_evaluate(cfg, str(tmp_path / "run")))
    assert not (tmp_path / "run").exists(), os.listdir(tmp_path / "run")
    return status
  return run


def all_classes_known(tmp_path, monkeypatch):
  from backmix_jax.data.openset import load_open_set
  return _status(lambda: load_open_set(quick_config(known_classes=tuple(range(10)))))


# --- the workdir: training/workdir.claim ----------------------------------------------

def _claim(cfg, workdir, body=None):
  from backmix_jax.training.workdir import claim
  with claim(cfg, str(workdir)) as held:
    held.accept()
    if body is not None:
      body()


def read_only(tmp_path, monkeypatch):
  # Tests run as root, for whom chmod does not make a directory read-only: the file
  # system's answer is simulated where the workdir is first written.
  from backmix_jax.training import workdir

  def refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
  monkeypatch.setattr(workdir, "_open_lock", refuse)
  return _status(lambda: _claim(quick_config(), tmp_path / "run"))


def disk_full_at_start(tmp_path, monkeypatch):
  from backmix_jax.training import workdir

  def full(path, text):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
  monkeypatch.setattr(workdir, "_write_atomic", full)
  return _status(lambda: _claim(quick_config(), tmp_path / "run"))


def disk_full_while_running(tmp_path, monkeypatch):
  os.makedirs(tmp_path / "run" / "checkpoints" / "40")

  def body():
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "metrics.jsonl"))
  return _status(lambda: _claim(quick_config(), tmp_path / "run", body))


TENSORSTORE_FULL = ('RESOURCE_EXHAUSTED: Error writing "params/0" in OCDBT database: Failed to '
                    "write 11227 bytes to file 9: No space left on device [os_error_code='28']")


def disk_full_under_orbax(tmp_path, monkeypatch):
  # What Orbax raises when the disk fills during a checkpoint write (seen on a full tmpfs).
  os.makedirs(tmp_path / "run" / "checkpoints" / "40")

  def body():
    raise ValueError(TENSORSTORE_FULL)
  return _status(lambda: _claim(quick_config(), tmp_path / "run", body))


def busy(tmp_path, monkeypatch):
  return _status(lambda: _claim(quick_config(), tmp_path, lambda: _claim(quick_config(), tmp_path)))


def another_run(tmp_path, monkeypatch):
  _claim(quick_config(), tmp_path)
  os.makedirs(tmp_path / "checkpoints" / "23")
  return _status(lambda: _claim(quick_config(seed=5), tmp_path))


def damaged_record(name, text):
  """A run with a checkpoint whose record file `name` now holds `text`: the same command
  is refused before it writes."""
  def run(tmp_path, monkeypatch):
    _claim(quick_config(), tmp_path)
    os.makedirs(tmp_path / "checkpoints" / "23")
    (tmp_path / name).write_text(text)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    status = _status(lambda: _claim(quick_config(), tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    return status
  return run


def teacher_without_checkpoints(tmp_path, monkeypatch):
  from backmix_jax.training.run import build_run
  return _status(lambda: build_run(quick_config(**{"backmix.cam_source": "teacher",
                                                   "backmix.teacher": str(tmp_path)})))


def evaluate_truncated_config(tmp_path, monkeypatch):
  from backmix_jax.commands.evaluate import check_trained_config
  (tmp_path / "config.json").write_text('{"dataset": "digits", "model')
  return _status(lambda: check_trained_config(quick_config(), str(tmp_path)))


RUN_BLOCK = dict(dataset="digits", protocol="arpl", trial=0, known_classes=[6, 3, 4, 9, 8, 2],
                 model="cnn_small", framework="softmax", backmix=True, num_epochs=1,
                 total_steps=23, arpl_compat=False)


def evaluate_out(files):
  """check_out of `evaluate --out DIR` where DIR holds `files` (name -> JSON value): what
  evaluate runs before it writes anything."""
  def run(tmp_path, monkeypatch):
    import json
    from backmix_jax.commands.evaluate import check_out
    out = tmp_path / "out"
    out.mkdir()
    for name, value in files.items():
      (out / name).write_text(json.dumps(value))
    before = {p.name: p.read_text() for p in out.iterdir()}
    status = _status(lambda: check_out(str(out), str(tmp_path / "run"), RUN_BLOCK))
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    return status
  return run


def trials_bad_override(tmp_path, monkeypatch):
  from backmix_jax.commands.trials import run_trials
  status = _status(lambda: run_trials(quick_config(seed=-1), str(tmp_path / "trials"), [0],
                                      train=True))
  assert not (tmp_path / "trials").exists()  # refused before anything is written
  return status


def ctrl_c(tmp_path, monkeypatch):
  def interrupted():
    raise KeyboardInterrupt
  return _status(interrupted)


# --- the command line: subprocesses that end before any JAX work ----------------------

def command(*args, config_file=os.path.join(ROOT, "configs", "digits.py")):
  def run(tmp_path, monkeypatch):
    if callable(config_file):
      path = config_file(tmp_path)
    else:
      path = config_file
    (tmp_path / "a_file").write_text("not a directory")
    r = subprocess.run([sys.executable, "-m", "experiments.train", "--config", str(path),
                        *[a.format(tmp=tmp_path) for a in args]],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    # Nothing was written: no workdir, and no checkpoints/ in the current directory.
    assert sorted(os.listdir(tmp_path)) in (["a_file"], ["a_file", "bad_config.py"]), \
        os.listdir(tmp_path)
    return r.returncode, r.stderr.strip()
  return run


def syntax_error(tmp_path):
  (tmp_path / "bad_config.py").write_text("def get_config(:\n")
  return tmp_path / "bad_config.py"


def garbage_jpeg(tmp_path, monkeypatch):
  buf, offsets = _jpeg_arrays([_jpeg(), _jpeg(), b"garbage", _jpeg()])
  return npz(train_jpeg=buf, train_offsets=offsets, train_labels=_labels(4))(tmp_path,
                                                                            monkeypatch)


DIGITS = [0.0, 1, 2, 3.5, 4, 5, 6, 7, 8, 9]
NAMES = np.array([str(i) for i in range(10)])

CASES = [
    # Config values: ranges, types, counts and cadences.
    ("log_every_steps=0", config(log_every_steps=0), 2,
     "log_every_steps must be an integer >= 1"),
    ("checkpoint_every_steps=0", config(checkpoint_every_steps=0), 2,
     "checkpoint_every_steps must be an integer >= 1"),
    ("keep_checkpoints=0", config(keep_checkpoints=0), 2,
     "keep_checkpoints must be an integer >= 1"),
    ("keep_checkpoints=-1", config(keep_checkpoints=-1), 2, "keep_checkpoints must be"),
    ("seed=-1", config(seed=-1), 2, "seed must be an integer in 0.."),
    ("crop_padding=-3", config(**{"data.crop_padding": -3}), 2,
     "data.crop_padding must be an integer >= 0"),
    ("image_size=0", config(**{"data.image_size": 0}), 2,
     "data.image_size must be an integer >= 1"),
    ("channels=2", config(**{"data.channels": 2}), 2, "data.channels must be 0"),
    ("momentum=-0.5", config(**{"optimizer.momentum": -0.5}), 2,
     "optimizer.momentum must be in [0.0, 1.0)"),
    ("momentum=1", config(**{"optimizer.momentum": 1.0}), 2, "optimizer.momentum must be in"),
    ("decay=-0.1", config(**{"optimizer.decay": -0.1}), 2, "optimizer.decay must be > 0"),
    ("weight_decay=-1", config(**{"optimizer.weight_decay": -1.0}), 2,
     "optimizer.weight_decay must be >= 0"),
    ("warmup_epochs=-1", config(**{"optimizer.warmup_epochs": -1}), 2,
     "optimizer.warmup_epochs must be an integer >= 0"),
    ("backmix.warmup_epochs=-1", config(**{"backmix.warmup_epochs": -1}), 2,
     "backmix.warmup_epochs must be an integer >= 0"),
    ("learning_rate=inf", config(**{"optimizer.learning_rate": float("inf")}), 2,
     "optimizer.learning_rate must be a finite number"),
    ("milestones<0", config(**{"optimizer.milestones": (-1, 3)}), 2,
     "optimizer.milestones must be"),
    ("known_classes=abc", config(known_classes=("a", "b", "c")), 2,
     "known_classes must be class ids"),
    ("one known class", config(known_classes=(3,)), 2,
     "known_classes needs at least 2 classes"),
    ("max_skipped_steps=0", config(max_skipped_steps=0), 2,
     "max_skipped_steps must be an integer >= 1"),
    ("cam_source=teacher, no teacher", config(**{"backmix.cam_source": "teacher"}), 2,
     "cam_source='teacher' needs backmix.teacher"),
    ("teacher without checkpoints", teacher_without_checkpoints, 2,
     "holds no checkpoints; train the teacher first"),
    ("resume=sometimes", config(resume="sometimes"), 2,
     "resume='sometimes' is not one of auto, override"),
    # Data: counts, label values, unreadable files and images, a split with no unknowns.
    ("more images than labels", npz(train_images=_images(100), train_labels=_labels(90)), 2,
     "100 train_images but 90 train_labels"),
    ("more labels than images", npz(train_images=_images(90), train_labels=_labels(100)), 2,
     "90 train_images but 100 train_labels"),
    ("float labels", npz(train_images=_images(10), train_labels=np.array(DIGITS)), 2,
     "train_labels: labels must be integers; entry 3 is 3.5"),
    ("negative labels", npz(train_images=_images(10), train_labels=np.arange(10) - 1), 2,
     "labels must be class ids >= 0; entry 0 is -1"),
    ("labels past class_names",
     npz(train_images=_images(10), train_labels=_labels(10) + 3, class_names=NAMES), 2,
     "entry 7 is label 10, outside the 10 classes 0..9"),
    ("npz of objects",
     npz(train_images=_images(3), train_labels=np.array([1, "a", None], object)), 2,
     "train_labels holds Python objects"),
    ("not a zip", raw_file(b"these bytes are no npz archive"), 2, "not a readable .npz archive"),
    ("images of rank 1", npz(train_images=np.zeros((100,), np.uint8),
                            train_labels=_labels(100)),
     2, "train_images must be [N,H,W] or [N,H,W,C], got shape (100,)"),
    ("garbage JPEG", garbage_jpeg, 2, "train_jpeg image 2 cannot be decoded"),
    ("all classes known", all_classes_known, 2, "no unknown test samples"),
    ("0 training images", npz(train_images=_images(0), train_labels=_labels(0)), 2,
     "holds no images in its 'train' split"),
    ("0 test images", npz(train_images=_images(10), train_labels=_labels(10),
                          test_images=_images(0), test_labels=_labels(0)), 2,
     "holds no images in its 'test' split"),
    ("no training image of a known class",
     npz(train_images=_images(3), train_labels=np.array([0, 1, 5])), 2,
     "no images of the known classes [6, 3, 4, 9, 8, 2] in the training split"),
    ("no known test image", npz(train_images=_images(10), train_labels=_labels(10),
                                test_images=_images(3), test_labels=np.array([0, 1, 5])), 2,
     "no images of the known classes [6, 3, 4, 9, 8, 2] in the test split"),
    ("bad data, new workdir: nothing written",
     train_in_new_workdir(train_images=_images(100), train_labels=_labels(90)), 2,
     "100 train_images but 90 train_labels"),
    # The workdir and its file system.
    ("read-only workdir", read_only, 2, "Read-only file system"),
    ("disk full before training", disk_full_at_start, 2, "No space left on device"),
    ("disk full while training", disk_full_while_running, 1,
     ("No space left on device (", "the last complete checkpoint is step 40")),
    ("disk full in an Orbax save", disk_full_under_orbax, 1,
     ("No space left on device while running in", "the last complete checkpoint is step 40")),
    ("workdir in use", busy, 2, "is in use by pid"),
    ("workdir of another run", another_run, 2, "holds a different model or schedule"),
    ("truncated identity.json", damaged_record("identity.json", '{"identity": {"dataset": "dig'),
     2, "identity.json is unreadable"),
    ("identity.json holding a list", damaged_record("identity.json", "[1, 2]"), 2,
     "identity.json is unreadable (ValueError: a JSON list, not an object)"),
    ("identity.json without identity", damaged_record("identity.json", '{"started": null}'), 2,
     "identity.json is unreadable (no 'identity' entry)"),
    ("truncated config.json", damaged_record("config.json", '{"dataset": "dig'), 2,
     "config.json is unreadable"),
    ("history.jsonl line of a list", damaged_record("history.jsonl", "[1]\n"), 2,
     "history.jsonl line 1 is unreadable (not an object with 'identity' and 'config')"),
    ("evaluate, truncated config.json", evaluate_truncated_config, 2, "config.json is unreadable"),
    ("evaluate --out another workdir", evaluate_out({"identity.json": {}, "config.json": {},
                                                      "metrics.json": {"run": RUN_BLOCK}}), 2,
     "holds another run's record (identity.json, config.json)"),
    ("evaluate --out another run's metrics",
     evaluate_out({"metrics_unknown.json": {"run": dict(RUN_BLOCK, model="classifier32")}}), 2,
     "holds metrics of another run (metrics_unknown.json: model 'classifier32' there, "
     "'cnn_small' here)"),
    ("trials --train, bad override: nothing written", trials_bad_override, 2,
     "seed must be an integer in 0.."),
    ("Ctrl-C", ctrl_c, 130, "interrupted by Ctrl-C"),
    # The command line: flags, the config file, --workdir, --distributed.
    ("config file missing", command("--workdir={tmp}/run", config_file="no/such/config.py"), 2,
     "cannot load the config file: [Errno 2] No such file or directory"),
    ("config file syntax error", command("--workdir={tmp}/run", config_file=syntax_error), 2,
     "cannot load the config file: invalid syntax"),
    ("--workdir empty", command("--workdir="), 2, "--workdir is empty"),
    ("--workdir a file", command("--workdir={tmp}/a_file"), 2, "is a file, not a directory"),
    ("--distributed=on alone", command("--workdir={tmp}/run", "--distributed=on"), 2,
     "jax.distributed.initialize() failed"),
    ("--config.known_classes=abc",
     command("--workdir={tmp}/run", "--config.known_classes=abc"), 2,
     "known_classes must be class ids"),
    ("a boolean flag's value after a space",
     command("--workdir={tmp}/run", "--config.backmix.enabled", "False"), 2,
     "write --config.backmix.enabled=False"),
    ("a positional argument", command("--workdir={tmp}/run", "extra_arg"), 2,
     "unexpected argument 'extra_arg': the commands take flags only"),
    ("unknown tfds name",
     command("--workdir={tmp}/run", "--config.data.source=tfds:no_such_dataset"), 2,
     "tfds has no dataset 'no_such_dataset' (closest: "),
]


@pytest.mark.parametrize("action, code, words", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_ends_in_one_line(action, code, words, tmp_path, monkeypatch):
  got, text = action(tmp_path, monkeypatch)
  assert (got, len(text.splitlines())) == (code, 1), text
  for word in (words,) if isinstance(words, str) else words:
    assert word in text, text
  assert text.startswith("error: ") and "Traceback" not in text, text


def test_orbax_logs_of_a_reported_os_error_are_dropped():
  """Orbax logs a failed write once per background thread, with tracebacks; the command's
  one line names it, so those records are dropped, and only those."""
  import logging
  from backmix_jax.commands import exit_codes
  record = logging.LogRecord("absl", logging.ERROR, "future.py", 387,
                             "_SignalingThread.run() raised an exception: %s",
                             (TENSORSTORE_FULL,), None)
  assert not exit_codes.not_a_reported_os_error(record)
  other = logging.LogRecord("absl", logging.ERROR, "x.py", 1, "another failure", (), None)
  assert exit_codes.not_a_reported_os_error(other)


def test_evaluate_out_takes_a_new_dir_or_this_runs_evaluations(tmp_path):
  """--out is refused only for another run's files: a new or empty directory, the workdir
  itself, and one holding this run's evaluations (ARPL-mode ones included) are taken."""
  import json
  from backmix_jax.commands.evaluate import check_out
  out = tmp_path / "out"
  check_out(str(out), str(tmp_path / "run"), RUN_BLOCK)
  out.mkdir()
  check_out(str(out), str(tmp_path / "run"), RUN_BLOCK)
  (out / "metrics_arpl.json").write_text(json.dumps({"run": dict(RUN_BLOCK, arpl_compat=True)}))
  check_out(str(out), str(tmp_path / "run"), RUN_BLOCK)
  (out / "identity.json").write_text("{}")
  check_out(str(out), str(out), RUN_BLOCK)
