"""One workdir, one run: a single-writer lock and the record of what the run is.

`with claim(config, workdir) as held: ...` is held around a whole training run, which calls
`held.accept()` once its config, data and the checkpoint it resumes from have passed their
checks: nothing is written in the workdir before (a bad input or a refused override leaves
it as it was; a new workdir is not even created).

- Lock: an advisory `fcntl.flock` on <workdir>/.lock, whose content names the holder
  (pid, host); a workdir that holds files is locked at once, a new or empty one on
  acceptance. A second trainer in the same workdir is refused in one line naming them. A
  flock dies with its process, so the lock of a killed run is free again: its leftover
  content is reported in one warning line and replaced.
- Record: the first accepted start writes identity.json (training/identity.py: data, classes,
  model and schedule) and config.json (the resolved config). Every later start must be the
  same run: one whose identity differs from the run's is refused in one line naming each
  differing field, unless config.resume='override' continues it deliberately; the new
  config is then appended to history.jsonl (config.json and identity.json keep the first
  start) and is the run's identity from then on. Evaluation, logging and checkpoint
  settings are no part of the identity and may change freely. A workdir without a
  checkpoint has trained nothing yet: the next start rewrites its record.
- Failures: an OSError before the run starts (workdir unwritable, disk full) is a
  WorkdirError; one during the run (disk full, read-only file system, I/O error) becomes
  RunFailed, naming the last complete checkpoint the same command resumes from.

Only process 0 locks and writes; every process reads the record, so all of them refuse
or go on together. A remote workdir (gs://...) gets the record but no lock (flock needs a
local file system).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time

from etils import epath

from backmix_jax.training import identity

# Values of config.resume. auto: resume a workdir of the same run, refuse another run's.
# override: continue this workdir under the config given, whatever it recorded.
RESUME_MODES = ("auto", "override")

LOCK = ".lock"
IDENTITY = "identity.json"
HISTORY = "history.jsonl"
CONFIG = "config.json"


class WorkdirError(RuntimeError):
  """The workdir cannot take this run: busy, another run's, unreadable record, unwritable."""


class RunFailed(RuntimeError):
  """The environment failed after the run had started (disk full, read-only, I/O error);
  the workdir keeps its last complete checkpoint. Commands exit with code 1."""


def _mode(config) -> str:
  return config.get("resume", "auto") if hasattr(config, "get") else "auto"


def _remote(workdir: str) -> bool:
  return "://" in workdir


def check_path(workdir) -> str:
  """`workdir` as a usable path string; WorkdirError when it is empty or names a file."""
  if workdir is None or not str(workdir).strip():
    raise WorkdirError("--workdir is empty; name a directory for checkpoints and records")
  workdir = str(workdir)
  if not _remote(workdir) and os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} is a file, not a directory")
  return workdir


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the committed checkpoints in <workdir>/checkpoints, sorted; [] when there is
  none. Orbax names them by the bare step; unfinished and quarantined ones carry a suffix.
  Lists folders without opening Orbax (which would create the directory, and is slow to
  import): the one listing the workdir record, evaluation, trials and the teacher use."""
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _read_json(path: epath.Path, key: str | None = None):
  """The JSON object in `path` (its `key` entry if given); WorkdirError if it is unreadable,
  not an object or lacks `key`."""
  try:
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
      raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value if key is None else value[key]
  except (ValueError, UnicodeDecodeError, KeyError) as e:
    why = f"no {key!r} entry" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
    raise WorkdirError(f"{path} is unreadable ({why}); it records which run "
                       "this workdir holds: restore it, or move it aside and rerun with "
                       "--config.resume=override to record this config instead") from None


def _history(workdir: str) -> list[dict]:
  path = epath.Path(workdir) / HISTORY
  if not path.exists():
    return []
  records = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      entry = json.loads(line)
      if not (isinstance(entry, dict) and {"identity", "config"} <= set(entry)):
        raise ValueError("not an object with 'identity' and 'config'")
    except ValueError as e:
      raise WorkdirError(f"{path} line {number} is unreadable ({e}); restore or remove "
                         "that line") from None
    records.append(entry)
  return records


def accepted_identity(workdir: str) -> tuple[dict | None, str]:
  """(identity the workdir's run has now, the file it was read from); (None, '') for a
  workdir that records no run. Older workdirs hold only config.json: its identity is used."""
  root = epath.Path(workdir)
  history = _history(workdir)
  if history:
    return history[-1]["identity"], str(root / HISTORY)
  if (root / IDENTITY).exists():
    return _read_json(root / IDENTITY, "identity"), str(root / IDENTITY)
  if (root / CONFIG).exists():
    return identity.full_identity(_read_json(root / CONFIG)), str(root / CONFIG)
  return None, ""


def trained_config(workdir: str) -> tuple[dict | None, str]:
  """(the config the workdir's run was last started with, its file): history.jsonl's last
  entry after an override, else config.json; (None, '') without either."""
  root = epath.Path(workdir)
  history = _history(workdir)
  if history:
    return history[-1]["config"], str(root / HISTORY)
  if (root / CONFIG).exists():
    return _read_json(root / CONFIG), str(root / CONFIG)
  return None, ""


def _write_atomic(path: epath.Path, text: str):
  """Write then rename, so a crash or a full disk leaves the old file or the new one."""
  tmp = path.parent / f".{path.name}.tmp"
  tmp.write_text(text)
  tmp.replace(path)


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") \
      else dict(config)


def _record(config, workdir: str, *, write: bool):
  """Compare `config` with the run the workdir records; refuse or record (see module doc)."""
  # records loads jax: kept out of this module's import, which the commands' --workdir check
  # runs while their flags are parsed (commands/cli.py).
  from backmix_jax.training.records import log
  current = identity.full_identity(config)
  recorded, source = accepted_identity(workdir)
  root = epath.Path(workdir)
  config_text = (config.to_json_best_effort(indent=2)
                 if hasattr(config, "to_json_best_effort") else json.dumps(config, indent=2))
  steps = checkpoint_steps(workdir)
  # Nothing trained yet (a first start that stopped before its first checkpoint, e.g. at a
  # data error): this start is the first one.
  fresh = recorded is None or (not steps and not source.endswith(HISTORY))
  if fresh:
    if write:
      _write_atomic(root / IDENTITY, json.dumps(dict(identity=current, started=_now(),
                                                     host=socket.gethostname(),
                                                     pid=os.getpid()), indent=2))
      _write_atomic(root / CONFIG, config_text)
    return
  trained_config(workdir)  # the record evaluation reads: an unreadable one is refused here too
  if write and source.endswith(CONFIG):  # a workdir of an older version: config.json only
    _write_atomic(root / IDENTITY, json.dumps(dict(identity=recorded, started=None,
                                                   host=None, pid=None, derived_from=CONFIG),
                                              indent=2))
  changed = identity.differences(recorded, current)
  if not changed:
    return
  mode = _mode(config)
  listed = ", ".join(f"{k} {old!r} recorded, {new!r} now" for k, (old, new) in changed.items())
  if steps and mode != "override":
    raise WorkdirError(
        f"{workdir} holds a different model or schedule (checkpoint step {steps[-1]}): "
        f"{listed}. Rerun with the recorded settings ({source}), use another --workdir, "
        "or add --config.resume=override to continue this run with these settings "
        f"(recorded in {HISTORY})")
  why = "resume=override" if steps else "no checkpoint yet"
  if write:
    log(f"note   {workdir}: continuing with a changed config ({why}): {listed}; "
        f"recorded in {HISTORY}")
    entry = dict(time=_now(), host=socket.gethostname(), pid=os.getpid(),
                 resumed_from_step=steps[-1] if steps else None, reason=why,
                 changed={k: list(v) for k, v in changed.items()}, identity=current,
                 config=_config_dict(config))
    path = root / HISTORY
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
      old += "\n"
    _write_atomic(path, old + json.dumps(entry) + "\n")


def _open_lock(path: str) -> int:
  return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _holder(fd: int) -> dict:
  try:
    record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    return record if isinstance(record, dict) else {}
  except (ValueError, UnicodeDecodeError):
    return {}


@contextlib.contextmanager
def _lock(workdir: str):
  """Hold <workdir>/.lock for the block; WorkdirError when a live process holds it."""
  import fcntl

  from backmix_jax.training.records import log  # loads jax: see _record
  path = os.path.join(workdir, LOCK)
  fd = _open_lock(path)
  host = socket.gethostname()
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      held = _holder(fd)
      raise WorkdirError(
          f"{workdir} is in use by pid {held.get('pid', '?')} on host {held.get('host', '?')} "
          f"(since {held.get('since', '?')}; lock {path}): wait for that run to end or use "
          "another --workdir") from None
    except OSError as e:  # a file system without flock: fall back on the recorded pid
      held = _holder(fd)
      pid = held.get("pid")
      if held.get("host") == host and isinstance(pid, int) and pid != os.getpid() \
         and _pid_alive(pid):
        raise WorkdirError(f"{workdir} is in use by pid {held['pid']} on host {host} "
                           f"(lock {path}, no flock here: {e.strerror})") from None
    held = _holder(fd)
    if held.get("pid") is not None:
      pid = held["pid"]
      gone = ("which no longer runs" if held.get("host") == host and isinstance(pid, int)
              and not _pid_alive(pid) else "which no longer holds it")
      log(f"warn   {workdir}: took over the stale lock of pid {pid} on host "
          f"{held.get('host', '?')} ({gone}: its run ended without releasing it, e.g. killed)")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(dict(pid=os.getpid(), host=host, since=_now())).encode(), 0)
    os.fsync(fd)
    try:
      yield
    finally:
      # Emptied, not deleted: removing the file would let two later starts lock two
      # different files of the same name.
      with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
  finally:
    os.close(fd)  # releases the flock


# How TensorStore (under Orbax) reports a failed system call: a ValueError whose message
# ends in e.g. "No space left on device [os_error_code='28']".
TENSORSTORE_ERRNO = re.compile(r"\[os_error_code='(\d+)'\]")


def _os_error(error: BaseException) -> OSError | None:
  """The OSError behind `error` (itself, a cause it was raised from, or an errno named in
  its message by TensorStore), if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError) and error.errno is not None:
      return error
    found = TENSORSTORE_ERRNO.search(str(error))
    if found:
      code = int(found.group(1))
      return OSError(code, os.strerror(code))
    seen.add(id(error))
    error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
  return None


def _run_failed(workdir: str, error: OSError) -> RunFailed:
  steps = checkpoint_steps(workdir)
  where = f" ({error.filename})" if error.filename else ""
  resume = (f"the last complete checkpoint is step {steps[-1]}; fix that and run the same "
            "command again to resume from it" if steps else
            "no checkpoint was saved yet; fix that and run the same command again")
  return RunFailed(f"{os.strerror(error.errno)}{where} while running in {workdir}: {resume}")


def _holds_files(workdir: str) -> bool:
  return not _remote(workdir) and os.path.isdir(workdir) and bool(os.listdir(workdir))


class Claim:
  """What `claim` yields: `accept()` records the run once its checks have passed."""

  def __init__(self, config, workdir: str, writer: bool, stack: contextlib.ExitStack):
    self.config, self.workdir, self.writer, self.stack = config, workdir, writer, stack
    self.locked = False
    self.accepted = False

  def lock(self):
    if self.writer and not _remote(self.workdir) and not self.locked:
      self.stack.enter_context(_lock(self.workdir))
      self.locked = True

  def accept(self):
    """The run is accepted (its config, data, evaluators and the checkpoint it resumes from
    passed their checks): create and lock the workdir if that is not done yet, check the
    record again under the lock, and write it. Raises WorkdirError. Idempotent."""
    if self.accepted:
      return
    try:
      if self.writer:
        epath.Path(self.workdir).mkdir(parents=True, exist_ok=True)
      new = not self.locked
      self.lock()
      if new and self.writer and checkpoint_steps(self.workdir):
        # Empty when this start looked, and trained in since by another run.
        raise WorkdirError(f"{self.workdir} gained checkpoints while this run was being "
                           "prepared (another trainer started there); run the command again")
      _record(self.config, self.workdir, write=self.writer)
    except OSError as e:
      raise WorkdirError(f"cannot use {self.workdir}: {e.strerror or e}"
                         + (f" ({e.filename})" if e.filename else "")) from None
    self.accepted = True


@contextlib.contextmanager
def claim(config, workdir: str):
  """Hold `workdir` for one run of `config` (see the module docstring); yields a Claim.

  Before the block: a workdir that already holds files is locked, and a config of another
  run is refused (WorkdirError), writing nothing. The run calls `accept()` once its own
  checks pass; only then is a new workdir created and locked and the record (identity.json,
  config.json, history.jsonl) written, so a refused override or a bad input leaves the
  workdir as it was. An OSError inside the block becomes RunFailed.
  """
  import jax  # not at module top: see _record
  workdir = check_path(workdir)
  mode = _mode(config)
  if mode not in RESUME_MODES:
    raise WorkdirError(f"resume={mode!r} is not one of {', '.join(RESUME_MODES)}")
  writer = jax.process_index() == 0
  with contextlib.ExitStack() as stack:
    held = Claim(config, workdir, writer, stack)
    try:
      if _holds_files(workdir):  # a second trainer is refused at once, before any data
        held.lock()
      _record(config, workdir, write=False)  # another run's config: refused, nothing written
    except OSError as e:
      raise WorkdirError(f"cannot use {workdir}: {e.strerror or e}"
                         + (f" ({e.filename})" if e.filename else "")) from None
    try:
      yield held
      if not held.accepted:  # a caller's bug: its run would go unrecorded and, new, unlocked
        raise RuntimeError(f"claim of {workdir} ended without accept(): call it once the "
                           "run's checks pass, before the run writes in the workdir")
    except Exception as e:
      cause = _os_error(e)
      # The project's own errors already say what went wrong; an OSError (raw, or behind
      # a library's wrapper) is the environment failing under a running job.
      if cause is not None and (isinstance(e, OSError)
                                or not type(e).__module__.startswith("backmix_jax")):
        raise _run_failed(workdir, cause) from e
      raise
