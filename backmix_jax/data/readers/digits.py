"""`digits`: scikit-learn's bundled 8x8 digits (1,797 images, 16 grey levels), upscaled.

It ships with scikit-learn, so it works offline: the CPU demo and the tests use it.
"""
from __future__ import annotations

import numpy as np

from backmix_jax.data.core import ArraySplit, DataError, SourceData, evenly_spaced
from backmix_jax.data.images import resize_nearest
from backmix_jax.data.readers import ReadRequest, Reader


def load_digits(image_size: int = 32, test_fraction: float = 0.3, seed: int = 0) -> SourceData:
  """scikit-learn's 1,797 8x8 digits (16 grey levels), split train/test per class.

  sklearn ships no train/test split: a seeded stratified split is used so every class
  keeps `test_fraction` of its images for testing. Images are scaled to 0..255 and
  upscaled to `image_size` so the same backbones as MNIST apply.
  """
  # scikit-learn is imported on use: it is slow to import and only this demo source needs it.
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


def read(argument: str, request: ReadRequest):
  """Both splits (the split is seeded and fixed); None as image_size keeps the 8 px."""
  del argument  # a bare spec
  d = load_digits(image_size=8 if request.image_size is None else request.image_size)
  out = {name: s.take(evenly_spaced(len(s), request.max_per_split))
         for name, s in (("train", d.train), ("test", d.test))}
  return out, d.class_names


READER = Reader("digits", "", read)
