"""Open-set frameworks: head + loss + score + CAM source. `get_framework(name)` picks one."""
from backmix_jax.frameworks.base import Framework, OSRNet
from backmix_jax.frameworks.softmax import Softmax

FRAMEWORKS = {"softmax": Softmax}


def get_framework(name: str) -> Framework:
  if name not in FRAMEWORKS:
    raise ValueError(f"unknown framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}")
  return FRAMEWORKS[name]()
