"""Open-set frameworks: head + loss + score + CAM source. `get_framework(name)` picks one."""
import functools
import types

from backmix_jax.frameworks.arpl import ARPL
from backmix_jax.frameworks.arpl_cs import ARPLCS
from backmix_jax.frameworks.base import Auxiliary, Framework, OSRNet
from backmix_jax.frameworks.cssr import CSSR
from backmix_jax.frameworks.medaf import MEDAF
from backmix_jax.frameworks.softmax import Softmax

# Read-only: a registry that callers could mutate would be global state.
FRAMEWORKS = types.MappingProxyType({
    "softmax": Softmax,
    "arpl": ARPL,
    "arpl_cs": ARPLCS,
    "cssr": functools.partial(CSSR, "linear"),
    "pcssr": functools.partial(CSSR, "pcssr"),
    "rcssr": functools.partial(CSSR, "rcssr"),
    "medaf": MEDAF,
})


def get_framework(name: str) -> Framework:
  if name not in FRAMEWORKS:
    raise ValueError(f"unknown framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}")
  return FRAMEWORKS[name]()
