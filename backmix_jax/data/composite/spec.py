"""The fore-/background diagnostic's definition: its test conditions and the data.composite
block of a config (`CompositeSpec`) with the checks that say what is unusable in it."""
from __future__ import annotations

import dataclasses
import os

from backmix_jax.data import splits
from backmix_jax.data.core import DataError

TEXTURES = "textures"
NUM_TEXTURE_CLASSES = 10
CONDITIONS = ("known_correlated", "known_swapped", "known_unrelated", "unknown_known_bg",
              "unknown_unknown_bg")
KNOWN_CONDITIONS = CONDITIONS[:3]
UNKNOWN_CONDITIONS = CONDITIONS[3:]


@dataclasses.dataclass(frozen=True)
class CompositeSpec:
  """The data.composite block of a config (every field optional; these are the defaults).

  foreground: source spec of the digits (grey; RGB sources are converted by luma).
  background: 'textures' or a source spec of photos with >= K+1 classes.
  rho: probability that a training image shows its class's paired background.
  fg_size: side of the pasted digit in px (<= image_size).
  copies: compositions of each training digit (independent backgrounds and positions).
  test_copies: the same for the test digits of every condition.
  max_train_per_class: training digits kept per known class (0 = all).
  max_test_per_condition: images kept per test condition (0 = all).
  bg_known: background class paired with each known class, in known-class order
    (() = 0..K-1).
  bg_per_split: photo backgrounds read per split, evenly spaced (0 = all): decoding all
    50,000 CIFAR-10 training JPEGs takes ~6 s, 20,000 ~2.5 s.
  bg_dim: backgrounds are multiplied by this before the digit goes on (visibility).
  seed: seed of every random draw.
  """
  foreground: str = "digits"
  background: str = TEXTURES
  rho: float = 0.9
  fg_size: int = 18
  copies: int = 1
  test_copies: int = 1
  max_train_per_class: int = 0
  max_test_per_condition: int = 0
  bg_known: tuple[int, ...] = ()
  bg_per_split: int = 0
  bg_dim: float = 0.6
  seed: int = 0

  @classmethod
  def from_config(cls, block) -> "CompositeSpec":
    """From a ConfigDict or dict; an unknown field is a DataError."""
    given = dict(block.items())
    names = [f.name for f in dataclasses.fields(cls)]
    stray = sorted(set(given) - set(names))
    if stray:
      raise DataError(f"data.composite has unknown fields {', '.join(stray)}; known: "
                      f"{', '.join(names)}")
    if "bg_known" in given:
      given["bg_known"] = tuple(int(c) for c in given["bg_known"])
    return cls(**given)

  def problems(self, image_size: int, num_known: int | None) -> list[str]:
    """One sentence per unusable field; num_known=None skips the checks that need K."""
    out = []
    p = "data.composite."
    if not self.foreground or self.foreground == TEXTURES:
      out.append(f"{p}foreground must be a digit source spec (digits, mnist, npz:<path>), "
                 f"got {self.foreground!r}")
    if not self.background:
      out.append(f"{p}background must be 'textures' or a source spec, got ''")
    if not 0 <= self.rho <= 1:
      out.append(f"{p}rho must be in [0, 1], got {self.rho}")
    if not 2 <= self.fg_size <= image_size:
      out.append(f"{p}fg_size must be in 2..data.image_size={image_size}, got {self.fg_size}")
    for name in ("copies", "test_copies"):
      if getattr(self, name) < 1:
        out.append(f"{p}{name} must be >= 1, got {getattr(self, name)}")
    for name in ("max_train_per_class", "max_test_per_condition", "bg_per_split"):
      if getattr(self, name) < 0:
        out.append(f"{p}{name} must be >= 0 (0 = all), got {getattr(self, name)}")
    if not 0 < self.bg_dim <= 1:
      out.append(f"{p}bg_dim must be in (0, 1], got {self.bg_dim}")
    for name in ("foreground", "background"):
      kind, _, path = getattr(self, name).partition(":")
      if kind in ("npz", "folder") and not os.path.exists(path):
        out.append(f"{p}{name} path {path!r} does not exist")
    if num_known is not None:
      out.extend(self._pairing_problems(num_known))
    return out

  def _pairing_problems(self, k: int) -> list[str]:
    p = "data.composite."
    if k < 2:
      return [f"the composite benchmark needs at least 2 known classes (for known_swapped), "
              f"got {k}"]
    out = []
    if self.bg_known:
      if len(self.bg_known) != k:
        out.append(f"{p}bg_known lists {len(self.bg_known)} background classes for {k} known "
                   "classes")
      if len(set(self.bg_known)) != len(self.bg_known) or min(self.bg_known) < 0:
        out.append(f"{p}bg_known must be distinct class ids >= 0, got {self.bg_known}")
    if self.background == TEXTURES:
      top = max(self.bg_known) if self.bg_known else k - 1
      if k + 1 > NUM_TEXTURE_CLASSES or top >= NUM_TEXTURE_CLASSES:
        out.append(f"textures have {NUM_TEXTURE_CLASSES} classes: {k} known classes need "
                   f"{k} paired backgrounds plus at least one unknown one, ids 0..9")
    return out


def config_problems(config) -> list[str]:
  """Problems of a data.source='composite' config, one sentence each (for validate)."""
  block = config.data.get("composite")
  if block is None:
    return ["data.source='composite' needs a data.composite block (see configs/fgbg_digits.py)"]
  try:
    spec = CompositeSpec.from_config(block)
  except (DataError, TypeError) as e:
    return [str(e)]
  num_known = len(config.known_classes) if config.known_classes else None
  if num_known is None:
    try:
      num_known = len(splits.get_split(config.dataset, config.protocol, config.trial).known)
    except DataError:
      pass  # validate reports the split itself
  return spec.problems(config.data.image_size, num_known)
