"""The fore-/background diagnostic's example picture (docs/fgbg_examples.png): training
images and each test condition of one or two composite configs, side by side.

The flags are in experiments/fgbg_examples.py; the picture is
`evaluation.plots.plot_fgbg_examples`.
"""
from __future__ import annotations

import os
from typing import Sequence

from backmix_jax.data.openset import load_open_set
from backmix_jax.evaluation import plots


def short_name(spec: str) -> str:
  """'npz:/path/to/mnist.npz' -> 'mnist'; 'tfds:cifar10' -> 'cifar10'."""
  return os.path.splitext(os.path.basename(spec.partition(":")[2] or spec))[0]


def panel_title(config) -> str:
  """'<foreground> on <background>, rho <rho>' of a composite config."""
  comp = config.data.composite
  return f"{short_name(comp.foreground)} on {short_name(comp.background)}, rho {comp.rho}"


def fgbg_examples(configs: Sequence, out: str, num: int = 6) -> str:
  """Compose each config's benchmark and draw `num` examples per row of each into `out`
  (one panel per config, titled by `panel_title`); returns the PNG path."""
  panels = [(panel_title(c), load_open_set(c)) for c in configs]
  return plots.plot_fgbg_examples(out, panels, num)
