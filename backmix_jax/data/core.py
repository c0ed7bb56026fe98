"""The data package's core types: what every source, split and pipeline hands around.

`ArraySplit` (images, labels, optional true-foreground masks in memory), `SourceData`
(a source's train and test splits), `OpenSetData` (known training and test sets, the
unknown test set and, for the diagnostic, its separately scored `Condition`s); the one
error type `DataError`; and the label / class-list checks every reader shares. This
module imports nothing of the project, so every other data module can import it.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


class DataError(ValueError):
  """A data source cannot be read (missing file, unknown source, bad layout)."""


class UndecodableImage(DataError):
  """Entry `index` of a list of encoded images cannot be decoded; callers that know where
  the bytes came from (a file, an array entry) name that instead."""

  def __init__(self, index: int, error: Exception):
    self.index = index
    self.reason = f"{type(error).__name__}: {error}"
    super().__init__(f"image {index} cannot be decoded ({self.reason})")


def check_labels(labels, where: str, num_classes: int | None = None) -> np.ndarray:
  """`labels` as int64 [N], or DataError naming `where` and the first bad entry: labels
  must be whole numbers (a float label would be truncated), >= 0 (NumPy would read -1 as
  the last class) and below `num_classes` when it is known."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise DataError(f"{where}: labels must be one class id per image, got shape {labels.shape}")
  if labels.dtype.kind == "f":
    with np.errstate(invalid="ignore"):
      bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
    if bad.size:
      raise DataError(f"{where}: labels must be integers; entry {bad[0]} is "
                      f"{labels[bad[0]].item()}")
  elif labels.dtype.kind not in "iu":
    raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
  labels = labels.astype(np.int64)
  bad = np.flatnonzero(labels < 0)
  if bad.size:
    raise DataError(f"{where}: labels must be class ids >= 0; entry {bad[0]} is {labels[bad[0]]}")
  if num_classes is not None:
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
      raise DataError(f"{where}: entry {bad[0]} is label {labels[bad[0]]}, outside the "
                      f"{num_classes} classes 0..{num_classes - 1} of class_names")
  return labels


def check_classes(known: Sequence[int], unknown: Sequence[int] | None, num_source_classes: int):
  """Raise DataError with one clear sentence when the class lists are unusable."""
  known = list(known)
  if not known:
    raise DataError("known_classes is empty")
  if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in known):
    raise DataError(f"known_classes must be integer class ids, got {known}")
  if len(known) < 2:  # one class: every prediction is right, the loss is 0, nothing is learned
    raise DataError(f"known_classes needs at least 2 classes, got {known}")
  if len(set(known)) != len(known):
    raise DataError(f"known_classes repeats a class: {known}")
  bad = [c for c in known if not 0 <= c < num_source_classes]
  if bad:
    raise DataError(f"known_classes {bad} out of range 0..{num_source_classes - 1}")
  if unknown is not None:
    unknown = list(unknown)
    if set(unknown) & set(known):
      raise DataError(f"classes {sorted(set(unknown) & set(known))} are both known and unknown")


def evenly_spaced(n: int, cap: int | None) -> np.ndarray:
  """int [min(n, cap)]: `cap` evenly spaced indices of range(n), all of them when cap is None
  or >= n. Evenly spaced, not a prefix, so every class of a class-sorted set is kept."""
  if cap is None or cap >= n:
    return np.arange(n)
  return np.arange(cap) * n // cap


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """One split held in memory.

  images: uint8 [N, H, W, C]; labels: int64 [N] (original class ids of the source);
  masks: optional bool [N, H, W], True on each image's true foreground pixels (only the
  composed diagnostic benchmark knows them; every other source leaves None).
  """
  images: np.ndarray
  labels: np.ndarray
  masks: np.ndarray | None = None

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise DataError(f"images must be uint8 [N,H,W,C], got {self.images.dtype} {self.images.shape}")
    if len(self.images) != len(self.labels):
      raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
    if self.masks is not None and (self.masks.dtype != np.bool_
                                   or self.masks.shape != self.images.shape[:3]):
      raise DataError(f"masks must be bool {self.images.shape[:3]}, got {self.masks.dtype} "
                      f"{self.masks.shape}")

  def __len__(self):
    return len(self.labels)

  def take(self, index: np.ndarray) -> "ArraySplit":
    masks = None if self.masks is None else self.masks[index]
    return ArraySplit(self.images[index], self.labels[index], masks)


@dataclasses.dataclass(frozen=True)
class SourceData:
  """A source's train and test splits (labels = the source's class ids) and class names."""
  train: ArraySplit
  test: ArraySplit
  class_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Condition:
  """One separately scored test condition of a diagnostic benchmark.

  split: labels 0..K-1 when the foreground is of a known class (`known`), -1 otherwise;
  split.masks holds the true foreground of every image.
  """
  name: str
  known: bool
  split: ArraySplit


@dataclasses.dataclass(frozen=True)
class OpenSetData:
  """train: known classes only, labels 0..K-1. test_known: same labelling. test_unknown: labels = -1.

  conditions: extra test sets scored one by one (the fore-/background diagnostic); empty
  for the ordinary benchmarks.
  unknown_groups: named subsets of test_unknown scored one by one, each (name, int64 [n]
  indices into test_unknown), e.g. the SSB's difficulties; empty for the other benchmarks.
  """
  train: ArraySplit
  test_known: ArraySplit
  test_unknown: ArraySplit
  known_classes: tuple[int, ...]
  conditions: tuple[Condition, ...] = ()
  unknown_groups: tuple[tuple[str, np.ndarray], ...] = ()

  @property
  def num_classes(self) -> int:
    return len(self.known_classes)
