"""How a command ends: the exit code and the one line each failure is reported with.

0 done (or training stopped by SIGTERM with a checkpoint saved), 143 another command
stopped by SIGTERM (128 + 15, as a shell reports it), 2 a bad input or environment found
before work started (flags, config file, config values, data, workdir, distributed setup),
1 a failure after training started (non-finite loss, disk full, I/O), 130 stopped by
Ctrl-C. Each failure is one line, never a traceback; a traceback means a bug. The commands
(backmix_jax/commands/cli.py) end through `exit_status`.
"""
from __future__ import annotations

import logging

from backmix_jax.data.core import DataError
from backmix_jax.evaluation.evaluators import EvaluatorError
from backmix_jax.training.checkpointing import CheckpointError
from backmix_jax.training.train import NonFiniteError, Preempted
from backmix_jax.training.validate import ConfigError
from backmix_jax.training.workdir import TENSORSTORE_ERRNO, RunFailed, WorkdirError

# Problems with what the user gave (config, data, checkpoint, workdir), found before work
# started: exit code 2.
USER_ERRORS = (ConfigError, DataError, CheckpointError, EvaluatorError, WorkdirError)
# Failures after training started (non-finite loss, disk full, I/O): exit code 1.
RUN_FAILURES = (RunFailed, NonFiniteError)


class Terminated(Exception):
  """SIGTERM reached a command outside training (which saves and stops: Preempted)."""


def raise_terminated(signum, frame):
  """The commands' SIGTERM handler: end through `exit_status` like any other stop."""
  raise Terminated


def exit_status(error: BaseException) -> tuple[int, str] | None:
  """(exit code, the one line to print) for an error a command ends with; None for one
  that is a bug (its traceback is wanted) or absl's own SystemExit. Preempted's line goes
  to stdout, the others' (starting 'error: ') to stderr."""
  if isinstance(error, Preempted):  # a clean stop: the checkpoint is saved, the rerun resumes
    return error.exit_code, str(error)
  if isinstance(error, KeyboardInterrupt):
    return 130, ("error: interrupted by Ctrl-C; checkpoints already complete are kept: run the "
                 "same command again to resume from the newest")
  if isinstance(error, Terminated):
    return 143, ("error: stopped by SIGTERM before the command finished; what it writes at "
                 "the end was not written: run the same command again")
  if isinstance(error, RUN_FAILURES):
    return 1, f"error: {error}"
  if isinstance(error, USER_ERRORS):
    return 2, f"error: {error}"
  if isinstance(error, OSError) and error.errno is not None:
    where = f" ({error.filename})" if error.filename else ""
    return 2, f"error: {error.strerror}{where}"
  return None


def not_a_reported_os_error(record: logging.LogRecord) -> bool:
  """Log filter dropping Orbax's records of a failed system call (disk full, read-only file
  system, I/O error, in TensorStore's words): the command ends with one line naming it,
  which these records would bury under a traceback per background thread."""
  text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
  return TENSORSTORE_ERRNO.search(text) is None


def drop_closed_event_loop(previous):
  """sys.unraisablehook that drops what TensorStore's callbacks raise into Orbax's asyncio
  loop once it is closed (RuntimeError 'Event loop is closed', one traceback per pending
  write: dozens after a disk filled during a checkpoint write, while the command unwinds
  to its one line) and hands every other unraisable exception to `previous`. An
  unraisable exception is never the command's outcome; this one says nothing more."""
  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    previous(unraisable)
  return hook
