"""How a command ends: each error class maps to the exit code the docstring of
`backmix_jax/commands/exit_codes.py` documents (2 a bad input before work started, 1 a
failure after training started, 130 Ctrl-C, 0 a clean stop), and its tables agree."""
import errno

import pytest

from backmix_jax.commands import exit_codes
from backmix_jax.data.core import DataError
from backmix_jax.evaluation.evaluators import EvaluatorError
from backmix_jax.training.checkpointing import CheckpointError
from backmix_jax.training.train import NonFiniteError, Preempted
from backmix_jax.training.validate import ConfigError
from backmix_jax.training.workdir import RunFailed, WorkdirError


@pytest.mark.parametrize("error, code", [
    (ConfigError("bad"), 2),
    (DataError("bad"), 2),
    (CheckpointError("bad"), 2),
    (EvaluatorError("bad"), 2),
    (WorkdirError("bad"), 2),
    (OSError(errno.ENOSPC, "No space left on device", "/x"), 2),
    (NonFiniteError("nan"), 1),
    (RunFailed("disk full"), 1),
    (KeyboardInterrupt(), 130),
    (Preempted("stopped", 0), 0),
    (Preempted("stopped", 130), 130),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_each_error_class_exits_with_its_documented_code(error, code):
  """The code and one line of each class a command may end with; failures print 'error: '."""
  got, line = exit_codes.exit_status(error)
  assert got == code, f"{type(error).__name__} exits {got}, documented {code}"
  if not isinstance(error, Preempted):
    assert line.startswith("error: "), line


def test_the_tables_agree_with_the_codes():
  """Every class in USER_ERRORS exits 2 and every class in RUN_FAILURES 1; no class is in
  both (NonFiniteError once sat in USER_ERRORS while exiting 1)."""
  for cls in exit_codes.USER_ERRORS:
    assert exit_codes.exit_status(cls("x"))[0] == 2, cls.__name__
  assert not set(exit_codes.USER_ERRORS) & set(exit_codes.RUN_FAILURES)
  for cls in exit_codes.RUN_FAILURES:
    assert exit_codes.exit_status(cls("x"))[0] == 1, cls.__name__


def test_bugs_keep_their_traceback():
  """An error of no documented kind (a bug) and absl's SystemExit get no exit status."""
  assert exit_codes.exit_status(ValueError("bug")) is None
  assert exit_codes.exit_status(OSError("no errno")) is None
  assert exit_codes.exit_status(SystemExit(3)) is None
