"""Reading config fields: a dotted-name lookup and the integer test their checks share.

One definition for the config checks (validate.py, field_checks.py), the run identity
(identity.py) and the run records (records.py). A leaf module (no project imports), so any
of them can import it at the top without a cycle.
"""
from __future__ import annotations

import numbers

# What `lookup` returns for a field the config lacks, when asked to (a config.json of an
# older version, a config with an unusable value where a block should be).
MISSING = object()
_REQUIRED = object()


def lookup(tree, dotted: str, default=_REQUIRED):
  """The value of field `dotted` ("optimizer.learning_rate") of a ConfigDict or of the plain
  nested dict of a saved config.json. When a part is missing (or the value on the way is no
  block): `default` if given (e.g. MISSING), else KeyError naming the dotted field."""
  for part in dotted.split("."):
    try:
      tree = tree[part]
    except (KeyError, AttributeError, TypeError, IndexError):
      if default is _REQUIRED:
        raise KeyError(dotted) from None
      return default
  return tree


def is_int(value) -> bool:
  """An integer (Python or NumPy) that is not a bool (True would pass for 1)."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)
