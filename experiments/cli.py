"""Shared command-line plumbing: --config/--workdir flags, quiet TensorFlow, one-line errors.

Exit codes: 0 done (or stopped by SIGTERM with a checkpoint saved), 2 a bad input or
environment found before work started (flags, config file, config values, data, workdir,
distributed setup), 1 a failure after training started (non-finite loss, disk full, I/O),
130 stopped by Ctrl-C. Each failure is one line on stderr, never a traceback; a traceback
means a bug.
"""
from __future__ import annotations

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

absl_logging.set_verbosity(absl_logging.WARNING)


def _not_a_reported_os_error(record) -> bool:
  """Drop Orbax's log records of a failed system call (disk full, read-only file system,
  I/O error, in TensorStore's words): the command ends with one line naming it, which
  these records would bury under a traceback per background thread."""
  from backmix_jax.training.workdir import TENSORSTORE_ERRNO
  text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
  return TENSORSTORE_ERRNO.search(text) is None


absl_logging.get_absl_logger().addFilter(_not_a_reported_os_error)

CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/digits.py",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")



def user_errors() -> tuple[type[BaseException], ...]:
  from backmix_jax.data.sources import DataError
  from backmix_jax.evaluation.evaluators import EvaluatorError
  from backmix_jax.training.checkpointing import CheckpointError
  from backmix_jax.training.train import NonFiniteError
  from backmix_jax.training.validate import ConfigError
  from backmix_jax.training.workdir import WorkdirError
  return (ConfigError, DataError, CheckpointError, NonFiniteError, EvaluatorError, WorkdirError)


def exit_status(error: BaseException) -> tuple[int, str] | None:
  """(exit code, the one line to print) for an error a command ends with; None for one
  that is a bug (its traceback is wanted) or absl's own SystemExit. Preempted's line goes
  to stdout, the others' (starting 'error: ') to stderr."""
  from backmix_jax.training.train import NonFiniteError, Preempted
  from backmix_jax.training.workdir import RunFailed
  if isinstance(error, Preempted):  # a clean stop: the checkpoint is saved, the rerun resumes
    return error.exit_code, str(error)
  if isinstance(error, KeyboardInterrupt):
    return 130, ("error: interrupted by Ctrl-C; checkpoints already complete are kept: run the "
                 "same command again to resume from the newest")
  if isinstance(error, (RunFailed, NonFiniteError)):  # training had started
    return 1, f"error: {error}"
  if isinstance(error, user_errors()):
    return 2, f"error: {error}"
  if isinstance(error, OSError) and error.errno is not None:
    where = f" ({error.filename})" if error.filename else ""
    return 2, f"error: {error.strerror}{where}"
  return None


DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Call jax.distributed.initialize(): auto = when a multi-host TPU slice "
    "(TPU_WORKER_HOSTNAMES lists several hosts) or JAX_COORDINATOR_ADDRESS is set.")


def maybe_initialize_distributed():
  """Join the other hosts of a pod slice before any JAX computation (a no-op on one host)."""
  import jax
  hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  wanted = DISTRIBUTED.value == "on" or (
      DISTRIBUTED.value == "auto" and (len(hosts) > 1 or "JAX_COORDINATOR_ADDRESS" in os.environ))
  if wanted:
    try:
      jax.distributed.initialize()
    except Exception as e:  # no coordinator, unreachable hosts: a setup problem, not a bug
      from backmix_jax.training.validate import ConfigError
      reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise ConfigError(f"--distributed={DISTRIBUTED.value}: jax.distributed.initialize() "
                        f"failed: {reason} (set JAX_COORDINATOR_ADDRESS and the process "
                        "ids, run on a multi-host TPU slice, or use --distributed=off on "
                        "one host)") from None


def _parse_flags(argv, *, require_workdir: bool = True):
  """Unknown fields and bad override values end in one line, not a traceback."""
  try:
    rest = flags.FLAGS(argv)
    if CONFIG.value is not None:
      # ml_collections defers a config file that cannot be read (missing, unreadable) to
      # its first use: use it here, so that it fails with the other flag errors.
      CONFIG.value.keys()
  except Exception as e:  # flags, or the config file's own code (a SyntaxError, ...)
    # A config file that fails to load arrives with its traceback inside the message: keep
    # the last line, which names the problem.
    lines = [line for line in str(e).strip().splitlines() if line.strip()] or [repr(e)]
    msg = lines[-1].strip()
    if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":  # KeyError quotes its message
      msg = msg[1:-1]
    if isinstance(e, (AttributeError, KeyError)):
      msg = f"unknown config field {msg}"
    elif not isinstance(e, (flags.Error, TypeError, ValueError)):
      msg = f"cannot load the config file: {msg}"  # the message names the file
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
  missing = [f"--{name}" for name, flag in (("config", CONFIG), ("workdir", WORKDIR))
             if flag.value is None and (name == "config" or require_workdir)]
  if missing:
    print(f"error: {' and '.join(missing)} required", file=sys.stderr)
    sys.exit(2)
  if WORKDIR.value is not None:  # '--workdir=' would put checkpoints/ in the current dir
    from backmix_jax.training.workdir import WorkdirError, check_path
    try:
      check_path(WORKDIR.value)
    except WorkdirError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  return rest


def run_main(main, *, require_workdir: bool = True):
  """absl app.run with bad flags and user errors (bad config, data, checkpoint) in one line."""
  from absl import app

  def wrapped(argv):
    try:
      maybe_initialize_distributed()
      main(argv)
    except BaseException as e:  # KeyboardInterrupt included: Ctrl-C ends in one line too
      status = None if isinstance(e, SystemExit) else exit_status(e)
      if status is None:
        raise
      code, line = status
      print(line, file=sys.stdout if code in (0, 130) and not line.startswith("error:")
            else sys.stderr, flush=True)
      sys.exit(code)

  app.run(wrapped, flags_parser=functools.partial(_parse_flags, require_workdir=require_workdir))
