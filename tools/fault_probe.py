"""Fault probe: run the commands the way a user meets faults and bad inputs; OK or BAD each.

    python tools/fault_probe.py --out /tmp/probe [--only PATTERN] [--quick] [--workers 2]

Every case starts real subprocesses of the real commands (`python -m experiments.train|
evaluate|trials|visualize|benchmark|fgbg_examples ...`) in a fresh temporary directory
outside the checkout, and is classified by explicit rules (docs/reliability.md):

  - the exit code is the expected one: 0 done (or stopped by SIGTERM with a checkpoint
    saved), 2 a bad input found before work started, 1 a failure after training started,
    130 Ctrl-C;
  - where an error is expected, stderr holds exactly one non-empty line and it starts with
    "error: " (and names the expected words, where the case gives some);
  - no "Traceback" anywhere in stdout or stderr, and no raw Python warning
    ("...Warning: ...") on stderr;
  - no stale lock: after a command that ended by itself, `<workdir>/.lock` is not held
    (flock) and names no holder (the trainer empties it when it lets go);
  - where it applies: a refused command leaves the run record (every file of the workdir
    but .lock) byte-identical; a command line or config refused before work creates no
    workdir; a resumed run ends with a metrics.json byte-identical to the uninterrupted
    reference run of its configuration.

Training cases are tiny: configs/digits.py with cnn_small at 16 px (1 or 2 epochs of 754
images) and one shared uninterrupted reference run per configuration, built first. Cases
run in a small thread pool (each case is subprocesses); progress is printed per case. The
result: <out>/probe.md (table and the totals line), <out>/probe.json, <out>/summary.md
(counts per category and every BAD case) and <out>/logs/<case>.txt (each command's argv,
exit code, stdout and stderr).

--only PATTERN: cases whose "category/name" matches the regular expression (case-
insensitive). --quick: only the cases that train nothing (flags, config checks, data
checks, help). The file-system cases (read-only, full disk) need root for `mount`; without
it they are reported as skipped, with the reason, and count as neither OK nor BAD.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
DIGITS = os.path.join(ROOT, "configs", "digits.py")
FGBG = os.path.join(ROOT, "configs", "fgbg_digits.py")
CIFAR = os.path.join(ROOT, "configs", "cifar10.py")

# The tiny run every training case uses (1 epoch = 11 steps of 64).
TINY = ["--config.num_epochs=1", "--config.model=cnn_small", "--config.data.image_size=16",
        "--config.evals.open_set.every_epochs=0"]
# The process-fault run: 2 epochs = 22 steps, a checkpoint every 5, a log line every step
# (the probe watches them to signal at a given step).
PROC = ["--config.num_epochs=2", "--config.model=cnn_small", "--config.data.image_size=16",
        "--config.checkpoint_every_steps=5", "--config.log_every_steps=1",
        "--config.evals.open_set.every_epochs=0"]
PROC_STEPS = 22

TIMEOUT = 300          # any one command
WARNING = re.compile(r"^\S*Warning: ", re.M)


# --- running commands ---------------------------------------------------------------------

@dataclasses.dataclass
class Ran:
  argv: list
  rc: int | None
  out: str
  err: str
  seconds: float
  note: str = ""

  @property
  def text(self):
    return self.out + self.err


def env():
  return dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def argv_of(command, *args, config=DIGITS):
  argv = [PY, "-m", f"experiments.{command}"]
  if config is not None:
    argv += ["--config", config]
  return argv + [str(a) for a in args]


class Live:
  """A command started in the background; its output is collected line by line."""

  def __init__(self, ctx, argv):
    self.ctx, self.argv, self.t0 = ctx, argv, time.time()
    self.p = subprocess.Popen(argv, cwd=ctx.tmp, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, bufsize=1)
    self.out, self.err = [], []
    self.cv = threading.Condition()
    self.threads = [threading.Thread(target=self._pump, args=(s, b), daemon=True)
                    for s, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
    for t in self.threads:
      t.start()

  def _pump(self, stream, buf):
    for line in stream:
      with self.cv:
        buf.append(line)
        self.cv.notify_all()
    with self.cv:
      self.cv.notify_all()

  def wait_for(self, pattern, timeout=TIMEOUT) -> bool:
    """True once a stdout line matches `pattern`; False if the process ended first."""
    rx = re.compile(pattern, re.M)
    end = time.time() + timeout
    with self.cv:
      while True:
        if rx.search("".join(self.out)):
          return True
        if self.p.poll() is not None and not any(t.is_alive() for t in self.threads[:1]):
          return bool(rx.search("".join(self.out)))
        if time.time() > end:
          return False
        self.cv.wait(0.05)

  def signal(self, sig):
    if self.p.poll() is None:
      os.kill(self.p.pid, sig)

  def finish(self, timeout=TIMEOUT) -> Ran:
    note = ""
    try:
      self.p.wait(timeout)
    except subprocess.TimeoutExpired:
      self.p.kill()
      self.p.wait()
      note = f"killed after {timeout} s"
    for t in self.threads:
      t.join(10)
    r = Ran(self.argv, self.p.returncode, "".join(self.out), "".join(self.err),
            time.time() - self.t0, note)
    self.ctx.log(r)
    return r


# --- checks -------------------------------------------------------------------------------

def error_lines(err):
  return [line for line in err.splitlines() if line.strip()]


def first_error(r: Ran) -> str:
  lines = error_lines(r.err)
  for line in lines:
    if line.startswith("error: "):
      return line
  return lines[-1] if lines else ""


def lock_problem(workdir) -> str | None:
  path = os.path.join(workdir, ".lock")
  if not os.path.isfile(path):
    return None
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
      fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
      return f"{path} still locked after the command ended"
    content = open(path).read().strip()
    if content:
      return f"stale lock: {path} names {content[:80]}"
  finally:
    os.close(fd)
  return None


def snapshot(workdir) -> dict:
  """Every file of the workdir but .lock: path -> sha256 (directories -> 'dir')."""
  out = {}
  if not os.path.isdir(workdir):
    return out
  for base, dirs, files in os.walk(workdir):
    for d in dirs:
      out[os.path.relpath(os.path.join(base, d), workdir)] = "dir"
    for f in files:
      rel = os.path.relpath(os.path.join(base, f), workdir)
      if rel == ".lock":
        continue
      try:
        with open(os.path.join(base, f), "rb") as fh:
          out[rel] = hashlib.sha256(fh.read()).hexdigest()
      except OSError as e:
        out[rel] = f"unreadable {e}"
  return out


def snapshot_diff(before, after) -> str | None:
  changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
  if not changed:
    return None
  return "run record changed: " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "")


def same_metrics(workdir, reference) -> str | None:
  a, b = os.path.join(workdir, "metrics.json"), os.path.join(reference, "metrics.json")
  if not os.path.isfile(a):
    return "no metrics.json after the resume"
  if open(a, "rb").read() != open(b, "rb").read():
    ja, jb = json.load(open(a)), json.load(open(b))
    diff = [k for k in jb if ja.get(k) != jb.get(k)]
    return f"metrics.json differs from the uninterrupted run's ({', '.join(diff[:5])})"
  return None


@dataclasses.dataclass
class Expect:
  code: int | tuple = 0
  error: bool | None = None   # None: an error line iff the code is 1 or 2
  words: str | tuple = ()     # in the error line (any of a tuple, case-insensitive)


def check(r: Ran, e: Expect, problems: list, *, lock_dirs=(), label="") -> None:
  """Append to `problems` what breaks the rules for one command."""
  p = (label + ": ") if label else ""
  codes = e.code if isinstance(e.code, tuple) else (e.code,)
  if r.note:
    problems.append(p + r.note)
  if r.rc not in codes:
    problems.append(f"{p}exit {r.rc}, expected {'/'.join(map(str, codes))}")
  if "Traceback" in r.text:
    problems.append(f"{p}{r.text.count('Traceback')} traceback(s)")
  want_error = e.error if e.error is not None else (r.rc in (1, 2) or codes[0] in (1, 2))
  lines = error_lines(r.err)
  if want_error:
    if len(lines) != 1:
      problems.append(f"{p}stderr has {len(lines)} lines, expected 1 error line")
    if not any(line.startswith("error: ") for line in lines[:1]):
      problems.append(f"{p}stderr does not start with 'error: '")
    words = (e.words,) if isinstance(e.words, str) else e.words
    if words and not any(w.lower() in first_error(r).lower() for w in words):
      problems.append(f"{p}error line lacks {words[0]!r}")
  elif WARNING.search(r.err):
    problems.append(f"{p}raw Python warning on stderr: {WARNING.search(r.err).group(0)}...")
  for d in lock_dirs:
    lp = lock_problem(d)
    if lp:
      problems.append(p + lp)


# --- cases --------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
  name: str
  category: str
  expected: str
  fn: object
  trains: bool = False     # --quick leaves it out
  needs_root: bool = False


@dataclasses.dataclass
class Result:
  name: str
  category: str
  expected: str
  got: str
  status: str              # OK | BAD | SKIP
  error_line: str
  problems: list
  seconds: float


class Ctx:
  def __init__(self, case, tmp, logdir, refs):
    self.case, self.tmp, self.logdir, self.refs = case, tmp, logdir, refs
    self.problems: list[str] = []
    self.runs: list[Ran] = []
    self.skip = ""

  def log(self, r: Ran):
    self.runs.append(r)
    with open(os.path.join(self.logdir, slug(self.case.name) + ".txt"), "a") as f:
      f.write(f"$ {' '.join(r.argv)}\n# exit {r.rc} in {r.seconds:.1f} s {r.note}\n"
              f"--- stdout\n{r.out}\n--- stderr\n{r.err}\n\n")

  def run(self, argv, timeout=TIMEOUT) -> Ran:
    t0 = time.time()
    try:
      p = subprocess.run(argv, cwd=self.tmp, env=env(), capture_output=True, text=True,
                         timeout=timeout)
      r = Ran(argv, p.returncode, p.stdout, p.stderr, time.time() - t0)
    except subprocess.TimeoutExpired as e:
      r = Ran(argv, None, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else
              (e.stdout or ""), (e.stderr or b"").decode() if isinstance(e.stderr, bytes)
              else (e.stderr or ""), time.time() - t0, f"timed out after {timeout} s")
    self.log(r)
    return r

  def start(self, argv) -> Live:
    return Live(self, argv)

  def path(self, *parts):
    return os.path.join(self.tmp, *parts)

  def copy_ref(self, key="proc", name="run"):
    dst = self.path(name)
    shutil.copytree(self.refs[key], dst, symlinks=True)
    return dst


def slug(name):
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:90]


CASES: list[Case] = []


def case(category, name, expected, trains=False, needs_root=False):
  def register(fn):
    CASES.append(Case(name, category, expected, fn, trains, needs_root))
    return fn
  return register


def simple(category, name, argv_fn, e: Expect, *, fresh_workdir=None, trains=False):
  """A case of one command: `argv_fn(ctx)` -> argv; `fresh_workdir` (relative name): the
  command is refused before work, so that directory must not exist afterwards."""
  codes = e.code if isinstance(e.code, tuple) else (e.code,)
  expected = "/".join(map(str, codes)) + (" + error line" if (
      e.error or (e.error is None and codes[0] in (1, 2))) else "")

  def fn(ctx):
    r = ctx.run(argv_fn(ctx))
    check(r, e, ctx.problems, lock_dirs=[ctx.path(fresh_workdir or "run")])
    if fresh_workdir and r.rc == 2 and os.path.exists(ctx.path(fresh_workdir)):
      ctx.problems.append(f"refused before work but wrote {sorted(os.listdir(ctx.path(fresh_workdir)))}")
  CASES.append(Case(name, category, expected, fn, trains))


def train_override(category, name, override, words=(), code=2, extra=()):
  """train on a fresh workdir with one override that the config check refuses."""
  overrides = [override] if isinstance(override, str) else list(override)
  simple(category, name, lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                                             *extra, *overrides),
         Expect(code, words=words), fresh_workdir="run" if code == 2 else None)


# --- help --------------------------------------------------------------------------------

for _cmd in ("train", "evaluate", "trials", "visualize", "benchmark", "fgbg_examples"):
  simple("help", f"{_cmd} --help", lambda ctx, c=_cmd: argv_of(c, "--help", config=None),
         Expect(0, error=False))

# --- command line: flags, config file, workdir flag, positional args ---------------------

simple("command line", "train without --config",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), config=None),
       Expect(2, words="--config"), fresh_workdir="run")
simple("command line", "train without --workdir", lambda ctx: argv_of("train", *TINY),
       Expect(2, words="--workdir"))
simple("command line", "config file missing",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), config="no/such/config.py"),
       Expect(2, words="cannot load the config file"), fresh_workdir="run")


def _syntax(ctx):
  with open(ctx.path("bad_config.py"), "w") as f:
    f.write("def get_config(:\n")
  return argv_of("train", "--workdir", ctx.path("run"), config=ctx.path("bad_config.py"))


simple("command line", "config file syntax error", _syntax,
       Expect(2, words="cannot load the config file"), fresh_workdir="run")


def _raises(ctx):
  with open(ctx.path("raising_config.py"), "w") as f:
    f.write("def get_config():\n  raise RuntimeError('broken config file')\n")
  return argv_of("train", "--workdir", ctx.path("run"), config=ctx.path("raising_config.py"))


simple("command line", "config file whose get_config raises", _raises,
       Expect(2, words="broken config file"), fresh_workdir="run")
simple("command line", "digits config with a recipe argument",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), config=DIGITS + ":arpl"),
       Expect(2), fresh_workdir="run")
simple("command line", "cifar10 config with an unknown recipe",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), config=CIFAR + ":nosuch"),
       Expect(2, words="recipe"), fresh_workdir="run")
simple("command line", "unknown flag --nosuchflag",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), "--nosuchflag", *TINY),
       Expect(2, words="nosuchflag"), fresh_workdir="run")
simple("command line", "--distributed=on without a coordinator",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), "--distributed=on", *TINY),
       Expect(2, words="jax.distributed.initialize() failed"), fresh_workdir="run")
simple("command line", "--distributed=maybe",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), "--distributed=maybe", *TINY),
       Expect(2, words="distributed"), fresh_workdir="run")
simple("command line", "train with a positional argument",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, "extra_arg"),
       Expect(2, words="extra_arg"), fresh_workdir="run", trains=True)
simple("command line", "--config.backmix.enabled False (space)",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.backmix.enabled", "False"),
       Expect(2, words="False"), fresh_workdir="run", trains=True)
simple("command line", "--show_config --config.backmix.enabled False (space)",
       lambda ctx: argv_of("train", "--show_config", "--config.backmix.enabled", "False"),
       Expect(2, words="False"))


def _show_space(ctx):
  return argv_of("train", "--show_config", "--config.seed", "3")


@case("command line", "--show_config --config.seed 3 (space, read as the value)", "0, seed 3")
def _(ctx):
  r = ctx.run(_show_space(ctx))
  check(r, Expect(0, error=False), ctx.problems)
  if not re.search(r"^seed: 3$", r.out, re.M):
    ctx.problems.append("--show_config does not list seed: 3")


simple("command line", "--show_config", lambda ctx: argv_of("train", "--show_config"),
       Expect(0, error=False))
simple("command line", "--show_config with an unknown field",
       lambda ctx: argv_of("train", "--show_config", "--config.nosuch=1"),
       Expect(2, words="nosuch"))
simple("command line", "evaluate with a positional argument",
       lambda ctx: argv_of("evaluate", "--workdir", ctx.path("run"), *TINY, "extra_arg"),
       Expect(2, words="extra_arg"), fresh_workdir="run")
simple("command line", "trials with a positional argument",
       lambda ctx: argv_of("trials", "--workdir", ctx.path("run"), "--trials=0", "extra_arg"),
       Expect(2, words="extra_arg"), fresh_workdir="run")
simple("command line", "visualize with a positional argument",
       lambda ctx: argv_of("visualize", "--workdir", ctx.path("run"), *TINY, "extra_arg"),
       Expect(2, words="extra_arg"), fresh_workdir="run")
simple("command line", "benchmark with a positional argument",
       lambda ctx: argv_of("benchmark", "--synthetic", "--steps=1", "--repeats=1", "--warmup=0",
                           *TINY, "extra_arg"),
       Expect(2, words="extra_arg"), trains=True)
simple("command line", "benchmark --steps=0",
       lambda ctx: argv_of("benchmark", "--synthetic", "--steps=0", *TINY), Expect(2, words="steps"))
simple("command line", "benchmark --repeats=-1",
       lambda ctx: argv_of("benchmark", "--synthetic", "--repeats=-1", *TINY),
       Expect(2, words="repeats"))
simple("command line", "benchmark --steps=abc",
       lambda ctx: argv_of("benchmark", "--synthetic", "--steps=abc", *TINY), Expect(2))
simple("command line", "evaluate --step=abc",
       lambda ctx: argv_of("evaluate", "--workdir", ctx.path("run"), "--step=abc", *TINY),
       Expect(2, words="step"), fresh_workdir="run")

# --- config overrides: types, ranges, enums, unknown keys, malformed values ---------------

CONFIG_ERRORS = [
    # counts and cadences
    ("log_every_steps=0", "--config.log_every_steps=0", "log_every_steps"),
    ("checkpoint_every_steps=0", "--config.checkpoint_every_steps=0", "checkpoint_every_steps"),
    ("keep_checkpoints=0", "--config.keep_checkpoints=0", "keep_checkpoints"),
    ("keep_checkpoints=-1", "--config.keep_checkpoints=-1", "keep_checkpoints"),
    ("max_skipped_steps=0", "--config.max_skipped_steps=0", "max_skipped_steps"),
    ("num_epochs=0", "--config.num_epochs=0", "num_epochs"),
    ("num_epochs=-1", "--config.num_epochs=-1", "num_epochs"),
    ("batch_size=0", "--config.batch_size=0", "batch_size"),
    ("batch_size=-64", "--config.batch_size=-64", "batch_size"),
    ("eval_batch_size=0", "--config.eval_batch_size=0", "eval_batch_size"),
    ("num_devices=-1", "--config.num_devices=-1", "num_devices"),
    ("num_devices=64 (more than there are)", "--config.num_devices=64", "device"),
    ("profile_steps=-1", "--config.profile_steps=-1", "profile_steps"),
    ("seed=-1", "--config.seed=-1", "seed"),
    ("trial=5", "--config.trial=5", "trial"),
    ("trial=-1", "--config.trial=-1", "trial"),
    # data fields
    ("data.image_size=0", "--config.data.image_size=0", "image_size"),
    ("data.channels=2", "--config.data.channels=2", "channels"),
    ("data.crop_padding=-3", "--config.data.crop_padding=-3", "crop_padding"),
    ("data.normalize=foo", "--config.data.normalize=foo", "normalize"),
    ("imagenet statistics on 1 channel",
     ("--config.data.normalize=imagenet", "--config.data.channels=1"), "data.channels=3"),
    ("data.backend=foo", "--config.data.backend=foo", "backend"),
    # optimizer fields
    ("learning_rate=0", "--config.optimizer.learning_rate=0", "learning_rate"),
    ("learning_rate=-0.1", "--config.optimizer.learning_rate=-0.1", "learning_rate"),
    ("learning_rate=inf", "--config.optimizer.learning_rate=inf", "learning_rate"),
    ("learning_rate=nan", "--config.optimizer.learning_rate=nan", "learning_rate"),
    ("momentum=1.0", "--config.optimizer.momentum=1.0", "momentum"),
    ("momentum=-0.5", "--config.optimizer.momentum=-0.5", "momentum"),
    ("decay=0", "--config.optimizer.decay=0", "decay"),
    ("weight_decay=-1", "--config.optimizer.weight_decay=-1", "weight_decay"),
    ("optimizer.warmup_epochs=-1", "--config.optimizer.warmup_epochs=-1", "warmup_epochs"),
    ("milestones=(-1,3)", "--config.optimizer.milestones=(-1,3)", "milestones"),
    ("optimizer.name=rmsprop", "--config.optimizer.name=rmsprop", "rmsprop"),
    ("optimizer.schedule=linear", "--config.optimizer.schedule=linear", "linear"),
    # backmix fields
    ("backmix.fg_ratio=0", "--config.backmix.fg_ratio=0", "fg_ratio"),
    ("backmix.fg_ratio=1.5", "--config.backmix.fg_ratio=1.5", "fg_ratio"),
    ("backmix.patch_frac=0", "--config.backmix.patch_frac=0", "patch_frac"),
    ("backmix.patch_frac=2", "--config.backmix.patch_frac=2", "patch_frac"),
    ("backmix.mix_prob=-0.1", "--config.backmix.mix_prob=-0.1", "mix_prob"),
    ("backmix.mix_prob=1.5", "--config.backmix.mix_prob=1.5", "mix_prob"),
    ("backmix.num_patches=0", "--config.backmix.num_patches=0", "num_patches"),
    ("backmix.warmup_epochs=-1", "--config.backmix.warmup_epochs=-1", "warmup_epochs"),
    ("backmix.cam_grid=5 (does not divide 16)", "--config.backmix.cam_grid=5", "cam_grid"),
    ("backmix.cam_grid=-1", "--config.backmix.cam_grid=-1", "cam_grid"),
    ("backmix.bank_momentum=2", "--config.backmix.bank_momentum=2", "bank_momentum"),
    ("backmix.fill=nan", "--config.backmix.fill=nan", "fill"),
    ("backmix.cam_source=foo", "--config.backmix.cam_source=foo", "cam_source"),
    ("backmix.partner=foo", "--config.backmix.partner=foo", "partner"),
    ("backmix.placement=foo", "--config.backmix.placement=foo", "placement"),
    ("backmix.replace=foo", "--config.backmix.replace=foo", "replace"),
    ("backmix.train_on=foo", "--config.backmix.train_on=foo", "train_on"),
    ("backmix.cam_norm=foo", "--config.backmix.cam_norm=foo", "cam_norm"),
    ("backmix.fill_mode=foo", "--config.backmix.fill_mode=foo", "fill_mode"),
    ("cam_source=oracle on data without masks", "--config.backmix.cam_source=oracle", "oracle"),
    ("partner=other_class in bank mode",
     ["--config.backmix.cam_source=bank", "--config.backmix.partner=other_class"], "partner"),
    ("cam_grid in bank mode", ["--config.backmix.cam_source=bank", "--config.backmix.cam_grid=8"],
     "cam_grid"),
    # enums of the run
    ("model=resnet999", "--config.model=resnet999", "resnet999"),
    ("framework=foo", "--config.framework=foo", "framework"),
    ("dataset=foo", "--config.dataset=foo", "foo"),
    ("protocol=foo", "--config.protocol=foo", "protocol"),
    ("score=foo", "--config.score=foo", "score"),
    ("score=energy with framework pcssr", ["--config.framework=pcssr", "--config.score=energy"],
     "energy"),
    ("dtype=float8", "--config.dtype=float8", "dtype"),
    ("nan_policy=foo", "--config.nan_policy=foo", "nan_policy"),
    ("resume=sometimes", "--config.resume=sometimes", "resume"),
    # known classes
    ("known_classes=(3,) one class", "--config.known_classes=(3,)", "known_classes"),
    ("known_classes=(1,1,2) repeated", "--config.known_classes=(1,1,2)", "known_classes"),
    ("known_classes=(0,99) out of range", "--config.known_classes=(0,99)", ("99", "known")),
    ("known_classes=abc", "--config.known_classes=abc", "known_classes"),
    ("known_classes=(1,2 malformed", "--config.known_classes=(1,2", "known_classes"),
    # types and malformed values
    ("num_epochs=1.5 (float for an int)", "--config.num_epochs=1.5", "num_epochs"),
    ("num_epochs=abc", "--config.num_epochs=abc", "num_epochs"),
    ("num_epochs= (empty)", "--config.num_epochs=", "num_epochs"),
    ("seed=1e3", "--config.seed=1e3", "seed"),
    ("batch_size=True", "--config.batch_size=True", "batch_size"),
    ("backmix.enabled=maybe", "--config.backmix.enabled=maybe", "enabled"),
    ("learning_rate=fast", "--config.optimizer.learning_rate=fast", "learning_rate"),
    ("milestones=[a]", "--config.optimizer.milestones=[a]", "milestones"),
    ("eval_batch_size=-1", "--config.eval_batch_size=-1", "eval_batch_size"),
    ("evals.open_set.every_epochs=-1", "--config.evals.open_set.every_epochs=-1", "every_epochs"),
    ("evals.open_set.every_epochs=x", "--config.evals.open_set.every_epochs=x", "every_epochs"),
    # unknown keys
    ("unknown top-level field", "--config.nosuch=1", "nosuch"),
    ("unknown backmix field", "--config.backmix.nosuch=1", "nosuch"),
    ("unknown optimizer field optimizer.lr", "--config.optimizer.lr=0.1", "lr"),
    ("unknown data field", "--config.data.imagesize=16", "imagesize"),
    ("unknown evaluator", "--config.evals.nosuch.every_epochs=1", "nosuch"),
]
for _name, _ov, _words in CONFIG_ERRORS:
  train_override("config", _name, _ov, _words)

# --- data sources -------------------------------------------------------------------------


def _images(n, side=8):
  return np.zeros((n, side, side, 1), np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None, None]


def _labels(n):
  return (np.arange(n) % 10).astype(np.int64)


def _jpeg(ok=True):
  from PIL import Image
  out = io.BytesIO()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, "JPEG")
  return out.getvalue()


def _good(n=100):
  return dict(train_images=_images(n), train_labels=_labels(n),
              test_images=_images(60), test_labels=_labels(60))


def npz_case(name, arrays_fn, code=2, words=(), raw=None, trains=False):
  def argv(ctx):
    path = ctx.path("source.npz")
    if raw is not None:
      with open(path, "wb") as f:
        f.write(raw)
    else:
      np.savez(path, **arrays_fn())
    return argv_of("train", "--workdir", ctx.path("run"), *TINY, f"--config.data.source=npz:{path}")
  simple("data", name, argv, Expect(code, words=words, error=None if code else False),
         trains=trains)


def _with(**changes):
  def make():
    a = _good()
    for k, v in changes.items():
      if v is None:
        a.pop(k)
      else:
        a[k] = v
    return a
  return make


def _garbage_jpeg():
  blobs = [_jpeg(), _jpeg(), b"garbage", _jpeg()] * 25
  buf = np.frombuffer(b"".join(blobs), np.uint8)
  a = _good()
  del a["train_images"]
  a.update(train_jpeg=buf, train_offsets=np.cumsum([0] + [len(b) for b in blobs]))
  return a


npz_case("npz: a valid tiny file trains (control)", lambda: _good(300), code=0, trains=True)
simple("data", "npz: file missing",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           f"--config.data.source=npz:{ctx.path('missing.npz')}"),
       Expect(2, words="missing.npz"))
npz_case("npz: not a zip archive", None, raw=b"these bytes are no npz archive",
         words="npz")
npz_case("npz: empty file", None, raw=b"", words="npz")
npz_case("npz: more images than labels", _with(train_labels=_labels(90)), words="train_labels")
npz_case("npz: more labels than images", _with(train_labels=_labels(120)), words="train_labels")
npz_case("npz: float labels", _with(train_labels=_labels(100) + 0.5), words="integer")
npz_case("npz: negative labels", _with(train_labels=_labels(100) - 1), words="-1")
npz_case("npz: labels past class_names",
         _with(train_labels=_labels(100) + 3, class_names=np.array([str(i) for i in range(10)])),
         words="outside")
npz_case("npz: object arrays", _with(train_labels=np.array([1, "a", None] * 33 + [1], object)),
         words="object")
npz_case("npz: train_images key missing", _with(train_images=None), words="train_images")
npz_case("npz: test_labels key missing", _with(test_labels=None), words="test_labels")
npz_case("npz: 0 training images",
         _with(train_images=np.zeros((0, 8, 8, 1), np.uint8), train_labels=np.zeros((0,), np.int64)),
         words="train")
npz_case("npz: 0 test images",
         _with(test_images=np.zeros((0, 8, 8, 1), np.uint8), test_labels=np.zeros((0,), np.int64)),
         words="test")
npz_case("npz: images of rank 1", _with(train_images=np.zeros((100,), np.uint8)),
         words="train_images")
npz_case("npz: garbage JPEG entry", _garbage_jpeg, words="cannot be decoded")
simple("data", "all classes known (no unknown test samples)",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.known_classes=(0,1,2,3,4,5,6,7,8,9)"),
       Expect(2, words="unknown"))
simple("data", "tfds:no_such_dataset",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.data.source=tfds:no_such_dataset"),
       Expect(2, words="no_such_dataset"))
simple("data", "tfds:mnist not prepared in data_dir",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.data.source=tfds:mnist",
                           f"--config.data.data_dir={ctx.path('empty_tfds')}"),
       Expect(2, words="mnist"))
simple("data", "unknown source kind bogus:x",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.data.source=bogus:x"), Expect(2, words="bogus"))
simple("data", "empty data.source",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, "--config.data.source="),
       Expect(2, words="source"))
simple("data", "folder: missing directory",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           f"--config.data.source=folder:{ctx.path('nofolder')}"),
       Expect(2, words="nofolder"))


def _garbage_folder(ctx):
  root = ctx.path("tiny")
  for wnid in ("n01", "n02", "n03"):
    os.makedirs(os.path.join(root, "train", wnid, "images"))
    os.makedirs(os.path.join(root, "val", wnid))
    for i in range(3):
      for split in (os.path.join("train", wnid, "images"), os.path.join("val", wnid)):
        with open(os.path.join(root, split, f"{wnid}_{i}.JPEG"), "wb") as f:
          f.write(_jpeg() if (i, wnid) != (1, "n02") else b"garbage bytes, not a JPEG")
  return argv_of("train", "--workdir", ctx.path("run"), *TINY, f"--config.data.source=folder:{root}",
                 "--config.known_classes=(0,1)")


simple("data", "folder: garbage JPEG file", _garbage_folder, Expect(2, words="n02_1"))
simple("data", "unknown_source npz missing",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           f"--config.data.unknown_source=npz:{ctx.path('missing.npz')}"),
       Expect(2, words="missing.npz"))
simple("data", "mnist.npz of shared data, known_classes=(0,99)",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY,
                           "--config.data.source=npz:" + os.path.join(os.path.dirname(ROOT),
                                                                      "shared", "data", "mnist.npz"),
                           "--config.known_classes=(0,99)"),
       Expect(2, words="99"))

# --- fgbg rho and composite values ---------------------------------------------------------

FGBG_TINY = ["--config.num_epochs=1", "--config.data.composite.copies=1",
             "--config.data.composite.test_copies=1", "--config.evals.cam_localization.every_epochs=0",
             "--config.evals.conditions.every_epochs=0"]
for _rho, _code in (("1.5", 2), ("-0.1", 2), ("nan", 2), ("abc", 2), ("inf", 2),
                    ("0.0", 0), ("1.0", 0)):
  simple("fgbg", f"rho={_rho}",
         lambda ctx, r=_rho: argv_of("train", "--workdir", ctx.path("run"), *FGBG_TINY,
                                     f"--config.data.composite.rho={r}", config=FGBG),
         Expect(_code, words="rho", error=None if _code else False),
         fresh_workdir="run" if _code == 2 else None, trains=_code == 0)
for _name, _ov, _w in (("fg_size=40 (larger than the image)", "fg_size=40", "fg_size"),
                       ("copies=0", "copies=0", "copies"),
                       ("foreground=bogus", "foreground=bogus", "bogus"),
                       ("background=bogus", "background=bogus", "bogus"),
                       ("bg_dim=-1", "bg_dim=-1", "bg_dim")):
  simple("fgbg", _name,
         lambda ctx, o=_ov: argv_of("train", "--workdir", ctx.path("run"), *FGBG_TINY,
                                    f"--config.data.composite.{o}", config=FGBG),
         Expect(2, words=_w))

# --- trials specs -------------------------------------------------------------------------

for _spec, _w in (("5", "trials"), ("0-9", "trials"), ("a", "trials"), ("3-1", "range"),
                  ("", "trials"), ("0,,1", "trials"), ("-1", "trials"), ("0-", "trials"),
                  ("1.5", "trials")):
  simple("trials", f"--trials={_spec!r}",
         lambda ctx, s=_spec: argv_of("trials", "--workdir", ctx.path("run"), f"--trials={s}", *TINY),
         Expect(2, words=_w), fresh_workdir="run")
simple("trials", "--trials=0 with nothing trained (no --train)",
       lambda ctx: argv_of("trials", "--workdir", ctx.path("run"), "--trials=0", *TINY),
       Expect(2, words="--train"))
simple("trials", "trials --train with a bad override",
       lambda ctx: argv_of("trials", "--workdir", ctx.path("run"), "--trials=0", "--train", *TINY,
                           "--config.seed=-1"), Expect(2, words="seed"), fresh_workdir="run",
       trains=True)
simple("trials", "trials --workdir naming a file",
       lambda ctx: (open(ctx.path("a_file"), "w").close(),
                    argv_of("trials", "--workdir", ctx.path("a_file"), "--trials=0", *TINY))[1],
       Expect(2, words="a_file"))
simple("trials", "trials --train of trial 0 (control)",
       lambda ctx: argv_of("trials", "--workdir", ctx.path("run"), "--trials=0", "--train", *TINY),
       Expect(0, error=False), trains=True)

# --- the workdir --------------------------------------------------------------------------

simple("workdir", "--workdir= empty", lambda ctx: argv_of("train", "--workdir=", *TINY),
       Expect(2, words="--workdir"))
simple("workdir", "--workdir naming a file",
       lambda ctx: (open(ctx.path("a_file"), "w").close(),
                    argv_of("train", "--workdir", ctx.path("a_file"), *TINY))[1],
       Expect(2, words="not a directory"))
simple("workdir", "--workdir under a file",
       lambda ctx: (open(ctx.path("a_file"), "w").close(),
                    argv_of("train", "--workdir", ctx.path("a_file", "sub"), *TINY))[1],
       Expect(2, words="a_file"))
simple("workdir", "evaluate --workdir that does not exist",
       lambda ctx: argv_of("evaluate", "--workdir", ctx.path("nothing"), *TINY),
       Expect(2, words="nothing"), fresh_workdir="nothing")
simple("workdir", "visualize --workdir that does not exist",
       lambda ctx: argv_of("visualize", "--workdir", ctx.path("nothing"), *TINY),
       Expect(2, words="nothing"), fresh_workdir="nothing")


class Mount:
  """A tmpfs (or a read-only bind mount) at `path` for the block; needs root."""

  def __init__(self, ctx, path, options, bind=None):
    self.ctx, self.path, self.options, self.bind = ctx, path, options, bind

  def __enter__(self):
    os.makedirs(self.path, exist_ok=True)
    if self.bind:
      subprocess.run(["mount", "--bind", self.bind, self.path], check=True, capture_output=True)
      subprocess.run(["mount", "-o", "remount,bind,ro", self.path], check=True,
                     capture_output=True)
    else:
      subprocess.run(["mount", "-t", "tmpfs", "-o", self.options, "tmpfs", self.path],
                     check=True, capture_output=True)
    return self

  def remount(self, options):
    subprocess.run(["mount", "-o", f"remount,{options}", self.path], check=True,
                   capture_output=True)

  def __exit__(self, *exc):
    for _ in range(20):
      if subprocess.run(["umount", self.path], capture_output=True).returncode == 0:
        return
      time.sleep(0.5)
    subprocess.run(["umount", "-l", self.path], capture_output=True)


def can_mount() -> str:
  """'' if this process may mount (root with CAP_SYS_ADMIN), else the reason it cannot."""
  if os.geteuid() != 0:
    return "not root: mount needs root"
  d = tempfile.mkdtemp(prefix="probe_mount_")
  try:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d], capture_output=True,
                       text=True)
    if r.returncode:
      return f"mount refused: {r.stderr.strip()[:100]}"
    subprocess.run(["umount", d], capture_output=True)
    return ""
  finally:
    shutil.rmtree(d, ignore_errors=True)


@case("workdir", "read-only workdir (new run)", "2 + error line", needs_root=True)
def _(ctx):
  os.makedirs(ctx.path("src"))
  with Mount(ctx, ctx.path("ro"), "", bind=ctx.path("src")):
    r = ctx.run(argv_of("train", "--workdir", ctx.path("ro", "run"), *TINY))
    check(r, Expect(2, words="Read-only"), ctx.problems)


@case("workdir", "read-only workdir holding a finished run: rerun train", "2 + error line",
      needs_root=True)
def _(ctx):
  src = ctx.copy_ref("proc", "src")
  with Mount(ctx, ctx.path("ro"), "", bind=src):
    before = snapshot(src)
    r = ctx.run(argv_of("train", "--workdir", ctx.path("ro"), *PROC))
    check(r, Expect(2, words="Read-only"), ctx.problems)
    d = snapshot_diff(before, snapshot(src))
    if d:
      ctx.problems.append(d)


@case("workdir", "full disk at the start (tmpfs filled)", "2 + error line", needs_root=True)
def _(ctx):
  with Mount(ctx, ctx.path("full"), "size=1m"):
    with open(ctx.path("full", "filler"), "wb") as f:
      try:
        f.write(b"\0" * (2 << 20))
      except OSError:
        pass
    r = ctx.run(argv_of("train", "--workdir", ctx.path("full", "run"), *TINY))
    check(r, Expect(2, words="No space left"), ctx.problems, lock_dirs=[ctx.path("full", "run")])


@case("workdir", "full disk while training (3 MB tmpfs), rerun on it, then resume with room",
      "1 + error line; rerun 1/2 + error line; resume 0, metrics.json identical", trains=True,
      needs_root=True)
def _(ctx):
  wd = ctx.path("disk", "run")
  with Mount(ctx, ctx.path("disk"), "size=3m") as m:
    r = ctx.run(argv_of("train", "--workdir", wd, *PROC))
    check(r, Expect(1, words="No space left"), ctx.problems, lock_dirs=[wd], label="full")
    r2 = ctx.run(argv_of("train", "--workdir", wd, *PROC))
    check(r2, Expect((1, 2), words="No space left"), ctx.problems, lock_dirs=[wd],
          label="rerun on the full disk")
    m.remount("size=200m")
    r3 = ctx.run(argv_of("train", "--workdir", wd, *PROC))
    check(r3, Expect(0, error=False), ctx.problems, lock_dirs=[wd], label="resume with room")
    if r3.rc == 0:
      d = same_metrics(wd, ctx.refs["proc"])
      if d:
        ctx.problems.append(d)


@case("workdir", "two trainers in one workdir", "second: 2 + error line, first: 0",
      trains=True)
def _(ctx):
  wd = ctx.path("run")
  a = ctx.start(argv_of("train", "--workdir", wd, *PROC, "--config.evals.open_set.every_epochs=1"))
  if not a.wait_for(r"^model "):
    ctx.problems.append("first trainer never started")
  b = ctx.run(argv_of("train", "--workdir", wd, *PROC, "--config.evals.open_set.every_epochs=1"))
  ra = a.finish()
  if ra.seconds < b.seconds:
    ctx.problems.append("inconclusive: the first trainer ended before the second started")
  check(b, Expect(2, words="in use by pid"), ctx.problems, label="second")
  check(ra, Expect(0, error=False), ctx.problems, lock_dirs=[wd], label="first")


def record_case(name, args, code, words=(), unchanged=True, then=None, trains=False,
                expected=None):
  """A command on a copy of the finished reference run."""
  codes = code if isinstance(code, tuple) else (code,)

  def fn(ctx):
    wd = ctx.copy_ref()
    argv = args(ctx, wd)      # may damage the copy first: the snapshot is taken after that
    before = snapshot(wd)
    r = ctx.run(argv)
    check(r, Expect(code, words=words, error=None if codes[0] else False), ctx.problems,
          lock_dirs=[wd])
    if unchanged:
      d = snapshot_diff(before, snapshot(wd))
      if d:
        ctx.problems.append(d)
    if then:
      then(ctx, wd)
  CASES.append(Case(name, "run record", expected or ("/".join(map(str, codes)) + (
      " + error line, record unchanged" if codes[0] else "")), fn, trains))


def _original_still_works(ctx, wd):
  r = ctx.run(argv_of("train", "--workdir", wd, *PROC))
  check(r, Expect(0, error=False), ctx.problems, lock_dirs=[wd], label="then the original command")
  r = ctx.run(argv_of("evaluate", "--workdir", wd, *PROC))
  check(r, Expect(0, error=False), ctx.problems, lock_dirs=[wd], label="then evaluate")


record_case("rerun of the finished run re-evaluates, metrics.json identical",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC), 0, unchanged=False,
            then=lambda ctx, wd: ctx.problems.extend(filter(None, [same_metrics(wd, ctx.refs["proc"])])),
            expected="0, metrics.json identical")
record_case("another run's config (seed=5)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.seed=5"), 2, "seed")
record_case("another run's config (model=classifier32)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.model=classifier32"),
            2, "model")
record_case("another run's config (backmix.enabled=False)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.backmix.enabled=False"),
            2, "backmix")
record_case("another run's config (batch_size=32)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.batch_size=32"),
            2, "batch_size")
record_case("another run's config (digits split of trial 1)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.trial=1"), 2,
            ("trial", "known_classes"))
record_case("resume=override with another model is refused, record unchanged",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.resume=override",
                                    "--config.model=classifier32"), 2, "model",
            then=_original_still_works,
            expected="2 + error line, record unchanged; then train and evaluate 0")
record_case("resume=override with another image size is refused, record unchanged",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.resume=override",
                                    "--config.data.image_size=32"), 2, ("image", "shape"),
            then=_original_still_works,
            expected="2 + error line, record unchanged; then train and evaluate 0")


def _history_grew(ctx, wd):
  path = os.path.join(wd, "history.jsonl")
  if not os.path.isfile(path) or not open(path).read().strip():
    ctx.problems.append("history.jsonl records no override")


record_case("resume=override with num_epochs=3 is accepted and trains on",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.resume=override",
                                    "--config.num_epochs=3"), 0, unchanged=False,
            then=_history_grew, trains=True, expected="0, history.jsonl appended")
record_case("resume=override with seed=5 is accepted",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.resume=override",
                                    "--config.seed=5"), 0, unchanged=False, then=_history_grew,
            expected="0, history.jsonl appended")
record_case("rerun with other logging settings is accepted (not another run)",
            lambda ctx, wd: argv_of("train", "--workdir", wd, *PROC, "--config.log_every_steps=3",
                                    "--config.keep_checkpoints=5"), 0, unchanged=False,
            expected="0")


def _truncate_record(name, text):
  def args(ctx, wd):
    with open(os.path.join(wd, name), "w") as f:
      f.write(text)
    return argv_of("train", "--workdir", wd, *PROC)
  return args


record_case("truncated identity.json", _truncate_record("identity.json", '{"identity": {"data'),
            2, "identity.json")
record_case("truncated config.json", _truncate_record("config.json", '{"dataset": "dig'), 2,
            "config.json")
record_case("truncated history.jsonl", _truncate_record("history.jsonl", '{"time": "20'), 2,
            "history.jsonl")
record_case("identity.json that is a JSON list", _truncate_record("identity.json", "[1, 2]"), 2,
            "identity.json")
record_case("identity.json without its identity entry",
            _truncate_record("identity.json", '{"started": null}'), 2, "identity.json")
record_case("history.jsonl line that is a JSON list", _truncate_record("history.jsonl", "[1]\n"),
            2, "history.jsonl")


@case("run record", "a config error on a finished run changes nothing", "2 + error line, record unchanged")
def _(ctx):
  wd = ctx.copy_ref()
  before = snapshot(wd)
  r = ctx.run(argv_of("train", "--workdir", wd, *PROC, "--config.seed=-1"))
  check(r, Expect(2, words="seed"), ctx.problems, lock_dirs=[wd])
  d = snapshot_diff(before, snapshot(wd))
  if d:
    ctx.problems.append(d)


@case("run record", "a data error on a finished run changes nothing", "2 + error line, record unchanged")
def _(ctx):
  wd = ctx.copy_ref()
  before = snapshot(wd)
  r = ctx.run(argv_of("train", "--workdir", wd, *PROC,
                      f"--config.data.source=npz:{ctx.path('missing.npz')}"))
  check(r, Expect(2, words="missing.npz"), ctx.problems, lock_dirs=[wd])
  d = snapshot_diff(before, snapshot(wd))
  if d:
    ctx.problems.append(d)


# --- teacher ------------------------------------------------------------------------------

TEACHER = ["--config.backmix.cam_source=teacher"]
simple("teacher", "cam_source=teacher without a teacher",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER),
       Expect(2, words="teacher"), fresh_workdir="run")
simple("teacher", "teacher that does not exist",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                           f"--config.backmix.teacher={ctx.path('noteacher')}"),
       Expect(2, words="noteacher"))
simple("teacher", "teacher without checkpoints",
       lambda ctx: (os.makedirs(ctx.path("t")),
                    argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                            f"--config.backmix.teacher={ctx.path('t')}"))[1],
       Expect(2, words="no checkpoints"))
simple("teacher", "teacher naming a file",
       lambda ctx: (open(ctx.path("t"), "w").close(),
                    argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                            f"--config.backmix.teacher={ctx.path('t')}"))[1],
       Expect(2, words="teacher"))
simple("teacher", "teacher of another network (cnn_small teacher, classifier32 student)",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                           "--config.model=classifier32",
                           f"--config.backmix.teacher={ctx.copy_ref('proc', 'teacher')}"),
       Expect(2, words="teacher"))
simple("teacher", "teacher of another image size",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                           "--config.data.image_size=32",
                           f"--config.backmix.teacher={ctx.copy_ref('proc', 'teacher')}"),
       Expect(2, words="teacher"))
simple("teacher", "teacher is the student's own workdir",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                           f"--config.backmix.teacher={ctx.path('run')}"),
       Expect(2, words="teacher"))


def _truncated_teacher(ctx):
  t = ctx.copy_ref("proc", "teacher")
  truncate_checkpoint(t, PROC_STEPS)
  return argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                 f"--config.backmix.teacher={t}")


simple("teacher", "teacher whose newest checkpoint is truncated", _truncated_teacher,
       Expect((0, 2), error=None), trains=True)
simple("teacher", "a finished run as teacher of the same network (control)",
       lambda ctx: argv_of("train", "--workdir", ctx.path("run"), *TINY, *TEACHER,
                           f"--config.backmix.teacher={ctx.copy_ref('proc', 'teacher')}"),
       Expect(0, error=False), trains=True)


# --- evaluate -----------------------------------------------------------------------------

def truncate_checkpoint(wd, step):
  """Truncate every data file of checkpoint `step` to half its size."""
  base = os.path.join(wd, "checkpoints", str(step), "state")
  n = 0
  for dirpath, _, files in os.walk(base):
    for f in files:
      if f in ("_METADATA", "manifest.ocdbt") or "/d" in dirpath.replace(base, ""):
        p = os.path.join(dirpath, f)
        size = os.path.getsize(p)
        with open(p, "r+b") as fh:
          fh.truncate(size // 2)
        n += 1
  if not n:
    raise RuntimeError(f"nothing to truncate in {base}")


NAN_HELPER = r'''
import os, shutil, sys
import jax, numpy as np
import orbax.checkpoint as ocp
ck, step = sys.argv[1], int(sys.argv[2])
m = ocp.CheckpointManager(ck, item_names=("state", "meta"))
r = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
def nan(path, x):
  keys = "/".join(str(getattr(k, "key", k)) for k in path)
  x = np.asarray(x)
  return np.full(x.shape, np.nan, x.dtype) if "params" in keys and np.issubdtype(x.dtype, np.floating) else x
state = jax.tree_util.tree_map_with_path(nan, r["state"])
tmp = ck + ".nan"
m2 = ocp.CheckpointManager(tmp, item_names=("state", "meta"), options=ocp.CheckpointManagerOptions(create=True))
m2.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(r["meta"])))
m2.wait_until_finished(); m2.close(); m.close()
shutil.rmtree(os.path.join(ck, str(step))); shutil.move(os.path.join(tmp, str(step)), os.path.join(ck, str(step)))
shutil.rmtree(tmp)
'''


def nan_weights(ctx, wd, step):
  r = ctx.run([PY, "-c", NAN_HELPER, os.path.join(wd, "checkpoints"), str(step)])
  if r.rc != 0:
    raise RuntimeError(f"probe setup: could not write non-finite weights: {first_error(r)}")


def eval_case(name, args, code, words=(), unchanged=True, then=None, expected=None, trains=False):
  codes = code if isinstance(code, tuple) else (code,)

  def fn(ctx):
    wd = ctx.copy_ref()
    argv = args(ctx, wd)
    before = snapshot(wd)
    r = ctx.run(argv)
    check(r, Expect(code, words=words, error=None if codes[0] else False), ctx.problems,
          lock_dirs=[wd])
    if unchanged:
      d = snapshot_diff(before, snapshot(wd))
      if d:
        ctx.problems.append(d.replace("run record changed", "the workdir evaluated changed"))
    if then:
      then(ctx, wd, r)
  CASES.append(Case(name, "evaluate", expected or ("/".join(map(str, codes)) + (
      " + error line" if codes[0] else "") + (", workdir unchanged" if unchanged else "")), fn,
      trains))


def ev(wd, *args):
  return argv_of("evaluate", "--workdir", wd, *PROC, *args)


eval_case("evaluate the finished run (control)", lambda ctx, wd: ev(wd), 0, unchanged=False,
          then=lambda ctx, wd, r: ctx.problems.extend(filter(None, [same_metrics(wd, ctx.refs["proc"])])),
          expected="0, metrics.json identical")
eval_case("--step of an older checkpoint", lambda ctx, wd: ev(wd, "--step=20"), 0, unchanged=False,
          then=lambda ctx, wd, r: ctx.problems.extend(
              [] if os.path.isfile(os.path.join(wd, "metrics_step20.json")) and
              not same_metrics(wd, ctx.refs["proc"]) else ["metrics_step20.json missing or metrics.json changed"]),
          expected="0, metrics_step20.json, metrics.json unchanged")
eval_case("--step missing (999)", lambda ctx, wd: ev(wd, "--step=999"), 2, "999")
eval_case("--step=-1", lambda ctx, wd: ev(wd, "--step=-1"), 2, "step")
eval_case("workdir without checkpoints",
          lambda ctx, wd: (shutil.rmtree(os.path.join(wd, "checkpoints")), ev(wd))[1], 2,
          "checkpoint")
eval_case("another run's config (trial=1: another split)", lambda ctx, wd: ev(wd, "--config.trial=1"),
          2, ("trial", "known"))
eval_case("another schedule (seed=5) is accepted: same weights' meaning",
          lambda ctx, wd: ev(wd, "--config.seed=5", "--out", ctx.path("out")), 0,
          expected="0, workdir unchanged")
eval_case("another model (classifier32)", lambda ctx, wd: ev(wd, "--config.model=classifier32"),
          2, "model")
eval_case("another score (energy) is accepted", lambda ctx, wd: ev(wd, "--config.score=energy"),
          0, unchanged=False, expected="0")
eval_case("--arpl_compat", lambda ctx, wd: ev(wd, "--arpl_compat"), 0, unchanged=False,
          expected="0")


@case("evaluate", "SIGTERM while evaluating (--out)", "143 + error line, workdir unchanged")
def _(ctx):
  wd = ctx.copy_ref()
  before = snapshot(wd)
  live = ctx.start(ev(wd, "--out", ctx.path("out")))
  time.sleep(6)  # imports, data, restore: the command is still working
  if live.p.poll() is not None:
    ctx.problems.append("the command ended before the signal")
  live.signal(signal.SIGTERM)
  check(live.finish(), Expect(143, words="SIGTERM", error=True), ctx.problems, lock_dirs=[wd])
  d = snapshot_diff(before, snapshot(wd))
  if d:
    ctx.problems.append(d.replace("run record changed", "the workdir evaluated changed"))


def _truncated(ctx, wd, *args, step=PROC_STEPS):
  truncate_checkpoint(wd, step)
  return ev(wd, *args)


eval_case("newest checkpoint truncated, no --step, --out elsewhere (nothing renamed)",
          lambda ctx, wd: _truncated(ctx, wd, "--out", ctx.path("out")), (0, 2),
          expected="0/2, no traceback/raw warning, workdir unchanged")
eval_case("newest checkpoint truncated, --step of it",
          lambda ctx, wd: _truncated(ctx, wd, f"--step={PROC_STEPS}"), 2, "unreadable")
eval_case("older checkpoint truncated, --step of it",
          lambda ctx, wd: _truncated(ctx, wd, "--step=20", step=20), 2, "unreadable")


def _nan(ctx, wd, *args):
  nan_weights(ctx, wd, PROC_STEPS)
  return ev(wd, *args)


eval_case("non-finite weights, --step of them",
          lambda ctx, wd: _nan(ctx, wd, f"--step={PROC_STEPS}", "--out", ctx.path("out")), 2,
          ("finite", "nan"))
eval_case("non-finite weights, newest",
          lambda ctx, wd: _nan(ctx, wd, "--out", ctx.path("out")), 2, ("finite", "nan"))


@case("evaluate", "--out onto another run's workdir", "0/2, the other run's record unchanged")
def _(ctx):
  wd = ctx.copy_ref("proc", "run")
  other = ctx.copy_ref("proc", "other")
  with open(os.path.join(other, "metrics.json"), "a") as f:
    f.write("\n")   # distinguishable from what this evaluation would write
  before = snapshot(other)
  r = ctx.run(ev(wd, "--out", other, "--step=20"))
  check(r, Expect((0, 2)), ctx.problems, lock_dirs=[wd, other])
  d = snapshot_diff(before, {k: v for k, v in snapshot(other).items() if k in before})
  if d:
    ctx.problems.append(d.replace("run record", "the other run's record"))


@case("evaluate", "read-only workdir with --out", "0, output in --out", needs_root=True)
def _(ctx):
  src = ctx.copy_ref("proc", "src")
  with Mount(ctx, ctx.path("ro"), "", bind=src):
    r = ctx.run(ev(ctx.path("ro"), "--out", ctx.path("out")))
    check(r, Expect(0, error=False), ctx.problems)
    if not os.path.isfile(ctx.path("out", "metrics.json")):
      ctx.problems.append("no metrics.json in --out")


@case("evaluate", "read-only workdir without --out", "2 + error line", needs_root=True)
def _(ctx):
  src = ctx.copy_ref("proc", "src")
  with Mount(ctx, ctx.path("ro"), "", bind=src):
    r = ctx.run(ev(ctx.path("ro")))
    check(r, Expect(2, words="Read-only"), ctx.problems)


@case("evaluate", "read-only workdir, newest checkpoint truncated, --out",
      "0/2, no false 'moved to' claim", needs_root=True)
def _(ctx):
  src = ctx.copy_ref("proc", "src")
  truncate_checkpoint(src, PROC_STEPS)
  with Mount(ctx, ctx.path("ro"), "", bind=src):
    r = ctx.run(ev(ctx.path("ro"), "--out", ctx.path("out")))
    check(r, Expect((0, 2)), ctx.problems)
    if "moved to" in r.text and not os.path.exists(os.path.join(src, "checkpoints",
                                                                  f"{PROC_STEPS}.corrupt")):
      ctx.problems.append("claims 'moved to ...corrupt', which a read-only workdir cannot do")


def _noise_npz(ctx):
  path = ctx.path("noise.npz")
  rng = np.random.default_rng(0)
  np.savez(path, test_images=rng.integers(0, 256, (50, 16, 16, 3), dtype=np.uint8),
           test_labels=np.zeros(50, np.int64))
  return path


eval_case("--unknown=npz of noise (control)",
          lambda ctx, wd: ev(wd, f"--unknown=npz:{_noise_npz(ctx)}", "--out", ctx.path("out")),
          0, expected="0, workdir unchanged")
eval_case("--unknown=tfds:no_such_dataset",
          lambda ctx, wd: ev(wd, "--unknown=tfds:no_such_dataset"), 2, "no_such_dataset")
eval_case("--unknown=npz missing",
          lambda ctx, wd: ev(wd, f"--unknown=npz:{ctx.path('missing.npz')}"), 2, "missing.npz")
eval_case("--unknown=folder missing",
          lambda ctx, wd: ev(wd, f"--unknown=folder:{ctx.path('nofolder')}"), 2, "nofolder")
eval_case("--unknown=bogus:x", lambda ctx, wd: ev(wd, "--unknown=bogus:x"), 2, "bogus")
eval_case("--unknown= (empty spec list item)", lambda ctx, wd: ev(wd, "--unknown=,"), 2,
          "unknown")
eval_case("--unknown=npz that is not an archive",
          lambda ctx, wd: (open(ctx.path("x.npz"), "wb").write(b"no zip"),
                           ev(wd, f"--unknown=npz:{ctx.path('x.npz')}"))[1], 2, "x.npz")
eval_case("--out naming a file",
          lambda ctx, wd: (open(ctx.path("a_file"), "w").close(),
                           ev(wd, "--out", ctx.path("a_file")))[1], 2, "a_file")

# --- visualize ----------------------------------------------------------------------------


def vis_case(name, args, code, words=(), then=None):
  codes = code if isinstance(code, tuple) else (code,)

  def fn(ctx):
    wd = ctx.copy_ref()
    argv = args(ctx, wd)      # may damage the copy first: the snapshot is taken after that
    before = snapshot(wd)
    r = ctx.run(argv)
    check(r, Expect(code, words=words, error=None if codes[0] else False), ctx.problems,
          lock_dirs=[wd])
    d = snapshot_diff(before, snapshot(wd))
    if d:
      ctx.problems.append(d.replace("run record changed", "the workdir changed"))
    if then:
      then(ctx, r)
  CASES.append(Case(name, "visualize", "/".join(map(str, codes)) + (
      " + error line" if codes[0] else ""), fn))


def vis(wd, *args):
  return argv_of("visualize", "--workdir", wd, *PROC, *args)


vis_case("grid of a finished run (control)",
         lambda ctx, wd: vis(wd, "--num=4", "--out", ctx.path("g.png")), 0,
         then=lambda ctx, r: ctx.problems.extend(
             [] if os.path.isfile(ctx.path("g.png")) else ["no g.png written"]))
vis_case("--num=0", lambda ctx, wd: vis(wd, "--num=0", "--out", ctx.path("g.png")), 2, "num")
vis_case("--num=-3", lambda ctx, wd: vis(wd, "--num=-3", "--out", ctx.path("g.png")), 2, "num")
vis_case("--num=abc", lambda ctx, wd: vis(wd, "--num=abc"), 2, "num")
vis_case("--out naming a directory",
         lambda ctx, wd: (os.makedirs(ctx.path("adir")), vis(wd, "--num=4", "--out", ctx.path("adir")))[1],
         (0, 2), "adir", then=lambda ctx, r: ctx.problems.extend(
             [] if r.rc != 0 or any(f.endswith(".png") for f in os.listdir(ctx.path("adir")))
             else ["exit 0 but no PNG in the directory"]))
vis_case("--out under a file",
         lambda ctx, wd: (open(ctx.path("a_file"), "w").close(),
                          vis(wd, "--num=4", "--out", ctx.path("a_file", "g.png")))[1], 2, "a_file")
vis_case("workdir without checkpoints",
         lambda ctx, wd: (shutil.rmtree(os.path.join(wd, "checkpoints")),
                          vis(wd, "--out", ctx.path("g.png")))[1], 2, "checkpoint")
vis_case("another model (classifier32)",
         lambda ctx, wd: vis(wd, "--config.model=classifier32", "--out", ctx.path("g.png")), 2,
         "model")
vis_case("bad override (backmix.fg_ratio=2)",
         lambda ctx, wd: vis(wd, "--config.backmix.fg_ratio=2", "--out", ctx.path("g.png")), 2,
         "fg_ratio")
vis_case("newest checkpoint truncated",
         lambda ctx, wd: (truncate_checkpoint(wd, PROC_STEPS),
                          vis(wd, "--num=4", "--out", ctx.path("g.png")))[1], (0, 2))

# --- process faults on the tiny digits run ------------------------------------------------


def _resume_and_compare(ctx, wd, label="resume"):
  r = ctx.run(argv_of("train", "--workdir", wd, *PROC))
  check(r, Expect(0, error=False), ctx.problems, lock_dirs=[wd], label=label)
  if r.rc == 0:
    d = same_metrics(wd, ctx.refs["proc"])
    if d:
      ctx.problems.append(f"{label}: {d}")
  return r


def fault(name, expected, when, signals, code, words=(), error=None, stdout_words=None,
          check_lock=True, after=None, gap=0.3):
  """Start the process-fault run, send `signals` once stdout matches `when`, check how it
  ends, then resume it and compare with the uninterrupted run."""
  def fn(ctx):
    wd = ctx.path("run")
    live = ctx.start(argv_of("train", "--workdir", wd, *PROC))
    if not live.wait_for(when):
      ctx.problems.append(f"never reached {when!r} (the run ended first)")
    for sig in signals:
      live.signal(sig)
      time.sleep(gap)
    r = live.finish()
    want_error, want_stdout = error, stdout_words
    if error == "either":  # a stop already complete ("stopped by ..." on stdout) or one error line
      want_error = not (stdout_words in r.out and not error_lines(r.err))
      want_stdout = None
    check(r, Expect(code, words=words, error=want_error), ctx.problems,
          lock_dirs=[wd] if check_lock else [], label="interrupted")
    if want_stdout and want_stdout not in r.out:
      ctx.problems.append(f"interrupted: stdout lacks {want_stdout!r}")
    if after:
      after(ctx, wd)
    _resume_and_compare(ctx, wd)
  CASES.append(Case(name, "process", expected, fn, True))


STEP = lambda n: rf"^step +{n}/{PROC_STEPS}"  # noqa: E731
fault("kill -9 mid-training, resume", "kill; resume 0, metrics.json identical", STEP(8),
      [signal.SIGKILL], -9, error=False, check_lock=False)
fault("kill -9 during compilation (before step 1), resume", "kill; resume 0, identical",
      r"^device ", [signal.SIGKILL], -9, error=False, check_lock=False)
fault("kill -9 during the final evaluation, resume", "kill; resume 0, identical",
      r"^train +done", [signal.SIGKILL], -9, error=False, check_lock=False)
fault("SIGTERM mid-training, resume", "0 'stopped by SIGTERM'; resume 0, identical", STEP(8),
      [signal.SIGTERM], 0, error=False, stdout_words="stopped by SIGTERM")
fault("SIGTERM in the second epoch, resume", "0 'stopped by SIGTERM'; resume 0, identical",
      STEP(13), [signal.SIGTERM], 0, error=False, stdout_words="stopped by SIGTERM")
fault("SIGTERM before the first step, resume", "0, one line; resume 0, identical", r"^device ",
      [signal.SIGTERM], 0, error=False)
fault("SIGTERM during the final evaluation, resume",
      "0 (as SIGTERM in training), lock released; resume 0, identical", r"^train +done",
      [signal.SIGTERM], 0, error=False)
fault("Ctrl-C mid-training, resume", "130 'stopped by SIGINT'; resume 0, identical", STEP(8),
      [signal.SIGINT], 130, error=False, stdout_words="stopped by SIGINT")
fault("double Ctrl-C mid-training (20 ms apart), resume",
      "130, one error line (or the first stop's line); resume 0, identical", STEP(8),
      [signal.SIGINT, signal.SIGINT], 130, error="either", words="Ctrl-C",
      stdout_words="stopped by SIGINT", gap=0.02)
fault("Ctrl-C during the final evaluation, resume", "130; resume 0, identical", r"^train +done",
      [signal.SIGINT], 130)


def _truncate_newest(ctx, wd):
  steps = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())
  if steps:
    truncate_checkpoint(wd, steps[-1])


fault("kill -9 then the newest checkpoint truncated, resume",
      "kill; resume 0 (falls back), identical", STEP(12), [signal.SIGKILL], -9, error=False,
      check_lock=False, after=_truncate_newest)


@case("process", "uninterrupted rerun reproduces the reference run", "0, metrics.json identical",
      trains=True)
def _(ctx):
  _resume_and_compare(ctx, ctx.path("run"), label="fresh run")


@case("process", "finished run, final checkpoint truncated, rerun",
      "0, warning, metrics.json identical", trains=True)
def _(ctx):
  wd = ctx.copy_ref()
  truncate_checkpoint(wd, PROC_STEPS)
  _resume_and_compare(ctx, wd, label="rerun")


@case("process", "finished run, final checkpoint deleted, rerun", "0, metrics.json identical",
      trains=True)
def _(ctx):
  wd = ctx.copy_ref()
  shutil.rmtree(os.path.join(wd, "checkpoints", str(PROC_STEPS)))
  _resume_and_compare(ctx, wd, label="rerun")


@case("process", "leftover unfinished Orbax save (tmp dir), rerun", "0, metrics.json identical",
      trains=True)
def _(ctx):
  wd = ctx.copy_ref()
  ck = os.path.join(wd, "checkpoints")
  os.rename(os.path.join(ck, str(PROC_STEPS)),
            os.path.join(ck, f"{PROC_STEPS}.orbax-checkpoint-tmp-1234"))
  _resume_and_compare(ctx, wd, label="rerun")


@case("process", "stale .lock of a dead pid, rerun", "0, takes the lock over")
def _(ctx):
  wd = ctx.copy_ref()
  with open(os.path.join(wd, ".lock"), "w") as f:
    json.dump(dict(pid=999999, host=socket.gethostname(), since="2026-01-01"), f)
  r = ctx.run(argv_of("train", "--workdir", wd, *PROC))
  check(r, Expect(0, error=False), ctx.problems, lock_dirs=[wd])


@case("process", "non-finite loss (learning_rate=1e30, nan_policy=stop)", "1 + error line",
      trains=True)
def _(ctx):
  wd = ctx.path("run")
  r = ctx.run(argv_of("train", "--workdir", wd, *TINY, "--config.optimizer.learning_rate=1e30",
                      "--config.checkpoint_every_steps=2"))
  check(r, Expect(1, words="non-finite"), ctx.problems, lock_dirs=[wd])


@case("process", "non-finite loss with nan_policy=skip_step, max_skipped_steps=2",
      "1 + error line", trains=True)
def _(ctx):
  wd = ctx.path("run")
  r = ctx.run(argv_of("train", "--workdir", wd, *TINY, "--config.optimizer.learning_rate=1e30",
                      "--config.nan_policy=skip_step", "--config.max_skipped_steps=2"))
  check(r, Expect(1, words="non-finite"), ctx.problems, lock_dirs=[wd])


@case("process", "benchmark --synthetic, smallest (control)", "0", trains=True)
def _(ctx):
  r = ctx.run(argv_of("benchmark", "--synthetic", "--steps=1", "--repeats=1", "--warmup=0",
                      "--device_batches=1", "--synthetic_batches=1", *TINY))
  check(r, Expect(0, error=False), ctx.problems)


REF_CATEGORIES = {"run record", "evaluate", "visualize", "process", "teacher"}


# --- the runner ---------------------------------------------------------------------------

def build_reference(base, logdir):
  """The uninterrupted process-fault run every comparison and copy uses."""
  ref = os.path.join(base, "reference_proc")
  shutil.rmtree(ref, ignore_errors=True)
  t0 = time.time()
  p = subprocess.run(argv_of("train", "--workdir", ref, *PROC), cwd=base, env=env(),
                     capture_output=True, text=True, timeout=TIMEOUT)
  with open(os.path.join(logdir, "_reference_proc.txt"), "w") as f:
    f.write(f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}\n")
  if p.returncode != 0 or not os.path.isfile(os.path.join(ref, "metrics.json")):
    sys.exit(f"the reference run failed (exit {p.returncode}); see {logdir}/_reference_proc.txt")
  print(f"reference run: {ref} ({time.time() - t0:.0f} s)", flush=True)
  return {"proc": ref}


def run_case(c: Case, base, logdir, refs, mount_reason) -> Result:
  t0 = time.time()
  if c.needs_root and mount_reason:
    return Result(c.name, c.category, c.expected, "-", "SKIP", "", [f"skipped: {mount_reason}"], 0.0)
  tmp = tempfile.mkdtemp(prefix=slug(c.name)[:30] + "_", dir=base)
  ctx = Ctx(c, tmp, logdir, refs)
  try:
    c.fn(ctx)
  except Exception as e:  # the probe's own failure: reported as BAD, to be looked at
    ctx.problems.append(f"probe error: {type(e).__name__}: {str(e)[:200]}")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  last = ctx.runs[-1] if ctx.runs else None
  main = next((r for r in ctx.runs if r.argv[:2] == [PY, "-m"] and r.rc not in (0, None)
               and error_lines(r.err)), None) or next(
      (r for r in ctx.runs if r.argv[:2] == [PY, "-m"]), last)
  got = []
  for r in ctx.runs:
    if r.argv[:2] != [PY, "-m"]:
      continue
    n = len(error_lines(r.err))
    got.append(f"{r.rc}" + (f" ({n} stderr lines)" if n else ""))
  err = first_error(main) if main else ""
  return Result(c.name, c.category, c.expected, "; ".join(got) or "-",
                "BAD" if ctx.problems else "OK", err[:220], ctx.problems, time.time() - t0)


def git_commit() -> str:
  return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()


def md_cell(s):
  return str(s).replace("|", "\\|").replace("\n", " ")


def write_outputs(out, results, meta):
  counts = {}
  for r in results:
    k = counts.setdefault(r.category, {"OK": 0, "BAD": 0, "SKIP": 0})
    k[r.status] += 1
  n_ok = sum(r.status == "OK" for r in results)
  n_bad = sum(r.status == "BAD" for r in results)
  n_skip = sum(r.status == "SKIP" for r in results)
  total = f"{len(results)} cases: {n_ok} OK, {n_bad} BAD" + (f", {n_skip} skipped" if n_skip else "")
  head = (f"Command: `{meta['command']}`  \nDate: {meta['date']}  \nMachine: {meta['machine']}  \n"
          f"Commit: {meta['commit']}  \nWall time: {meta['seconds'] / 60:.1f} min\n\n")
  summary = ["| category | cases | OK | BAD |", "|---|---:|---:|---:|"]
  for cat, k in counts.items():
    summary.append(f"| {cat} | {sum(k.values())} | {k['OK']} | {k['BAD']} |")
  summary.append(f"| all | {len(results)} | {n_ok} | {n_bad} |")
  bad = [r for r in results if r.status == "BAD"]
  bad_lines = [f"- **{r.category} / {r.name}**: expected {r.expected}; got {r.got}: "
               f"{'; '.join(r.problems)}" for r in bad] or ["- none"]
  skip_lines = [f"- {r.category} / {r.name}: {'; '.join(r.problems)}" for r in results
                if r.status == "SKIP"]
  summary_md = head + "\n".join(summary) + "\n\n" + total + "\n\nBAD cases:\n\n" + "\n".join(bad_lines) + (
      "\n\nSkipped:\n\n" + "\n".join(skip_lines) if skip_lines else "") + "\n"
  table = ["| # | case | category | expected | got | OK/BAD | error line / problems |",
           "|---:|---|---|---|---|---|---|"]
  for i, r in enumerate(results, 1):
    detail = r.error_line if r.status == "OK" else "; ".join(r.problems) + (
        f" -- {r.error_line}" if r.error_line else "")
    table.append(f"| {i} | {md_cell(r.name)} | {r.category} | {md_cell(r.expected)} | "
                 f"{md_cell(r.got)} | {r.status} | {md_cell(detail)} |")
  with open(os.path.join(out, "probe.md"), "w") as f:
    f.write("# Fault probe\n\n" + head + "\n".join(table) + "\n\n" + total + "\n")
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(summary_md)
  with open(os.path.join(out, "probe.json"), "w") as f:
    json.dump(dict(meta, total=total, counts=counts,
                   cases=[dataclasses.asdict(r) for r in results]), f, indent=1)
  return total


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--out", required=True, help="directory for probe.md, probe.json, logs/")
  ap.add_argument("--only", default="", help="regular expression on 'category/name'")
  ap.add_argument("--quick", action="store_true", help="only the cases that train nothing")
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--list", action="store_true", help="list the cases and exit")
  args = ap.parse_args()
  cases = [c for c in CASES if c is not None]
  if args.only:
    rx = re.compile(args.only, re.I)
    cases = [c for c in cases if rx.search(f"{c.category}/{c.name}")]
  if args.quick:
    cases = [c for c in cases if not c.trains and not c.needs_root]
  if args.list:
    for i, c in enumerate(cases, 1):
      print(f"{i:3d} {c.category:14s} {c.name}")
    print(f"{len(cases)} cases")
    return
  out = os.path.abspath(args.out)
  if out == ROOT or out.startswith(ROOT + os.sep):
    sys.exit("--out must be outside the checkout")
  logdir = os.path.join(out, "logs")
  shutil.rmtree(logdir, ignore_errors=True)
  os.makedirs(logdir)
  base = tempfile.mkdtemp(prefix="fault_probe_")
  t0 = time.time()
  commit_at_start = git_commit()
  mount_reason = can_mount()
  if mount_reason:
    print(f"file-system cases skipped: {mount_reason}", flush=True)
  needs_ref = any(c.trains or c.needs_root or c.category in REF_CATEGORIES for c in cases)
  refs = build_reference(base, logdir) if needs_ref else {}
  # Expensive cases first, so the pool ends together.
  order = sorted(range(len(cases)), key=lambda i: (not cases[i].trains, i))
  results: list[Result | None] = [None] * len(cases)
  lock = threading.Lock()
  done = [0]

  def one(i):
    r = run_case(cases[i], base, logdir, refs, mount_reason)
    with lock:
      done[0] += 1
      results[i] = r
      why = f"  ({'; '.join(r.problems)[:160]})" if r.status != "OK" else ""
      print(f"[{done[0]:3d}/{len(cases)}] {r.status:4s} {r.seconds:6.1f}s  {r.category} / "
            f"{r.name}{why}", flush=True)
  with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
    list(pool.map(one, order))
  shutil.rmtree(base, ignore_errors=True)
  commit = git_commit()
  if commit != commit_at_start:  # others committed while the probe ran: cases saw both
    commit = f"{commit_at_start}..{commit}"
  dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "backmix_jax",
                          "experiments", "configs"], capture_output=True, text=True).stdout.strip()
  meta = dict(command="python tools/fault_probe.py " + " ".join(sys.argv[1:]),
              date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              machine=f"{platform.node()}: {platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} CPU cores, Python {platform.python_version()}",
              commit=commit + (" (with uncommitted changes in backmix_jax/experiments/configs)"
                               if dirty else ""),
              seconds=time.time() - t0)
  total = write_outputs(out, results, meta)
  print(f"\n{total}  ({meta['seconds'] / 60:.1f} min); {out}/probe.md", flush=True)


if __name__ == "__main__":
  main()
