"""Data sources: each turns a source spec into in-memory uint8 image arrays.

Every source returns the same thing (`SourceData`), so the open-set split, the
pipelines and the trainer never know where the images came from. Specs:

  digits                      scikit-learn's bundled 8x8 digits, upscaled (ships offline)
"""
from __future__ import annotations

import dataclasses

import numpy as np


class DataError(ValueError):
  """A data source cannot be read (missing file, unknown source, bad layout)."""


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """One split held in memory.

  images: uint8 [N, H, W, C]; labels: int64 [N] (original class ids of the source).
  """
  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise DataError(f"images must be uint8 [N,H,W,C], got {self.images.dtype} {self.images.shape}")
    if len(self.images) != len(self.labels):
      raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

  def __len__(self):
    return len(self.labels)

  def take(self, index: np.ndarray) -> "ArraySplit":
    return ArraySplit(self.images[index], self.labels[index])


@dataclasses.dataclass(frozen=True)
class SourceData:
  train: ArraySplit
  test: ArraySplit
  class_names: tuple[str, ...]


def resize_nearest(images: np.ndarray, size: int) -> np.ndarray:
  """[N,h,w,C] -> [N,size,size,C] by nearest-neighbour index mapping (exact for integer scales)."""
  n, h, w, c = images.shape
  rows = (np.arange(size) * h) // size
  cols = (np.arange(size) * w) // size
  return images[:, rows][:, :, cols]


def load_digits(image_size: int = 32, test_fraction: float = 0.3, seed: int = 0) -> SourceData:
  """scikit-learn's 1,797 8x8 digits (16 grey levels), split train/test per class.

  sklearn ships no train/test split: a seeded stratified split is used so every class
  keeps `test_fraction` of its images for testing. Images are scaled to 0..255 and
  upscaled to `image_size` so the same backbones as MNIST apply.
  """
  from sklearn.datasets import load_digits as sk_load_digits
  d = sk_load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  if image_size % 8:
    raise DataError(f"digits image_size must be a multiple of 8, got {image_size}")
  images = resize_nearest(images, image_size)
  labels = d.target.astype(np.int64)
  rng = np.random.default_rng(seed)
  test_idx = []
  for c in range(10):
    idx = np.flatnonzero(labels == c)
    test_idx.append(rng.permutation(idx)[: int(round(test_fraction * len(idx)))])
  is_test = np.zeros(len(labels), bool)
  is_test[np.concatenate(test_idx)] = True
  return SourceData(
      train=ArraySplit(images[~is_test], labels[~is_test]),
      test=ArraySplit(images[is_test], labels[is_test]),
      class_names=tuple(str(i) for i in range(10)))


def load_source(spec: str, *, data_dir: str | None = None, image_size: int = 32) -> SourceData:
  """Dispatch a source spec ('digits', ...) to its loader."""
  kind, _, arg = spec.partition(":")
  if kind == "digits":
    return load_digits(image_size=image_size)
  raise DataError(f"unknown data source {spec!r}; known: digits")
