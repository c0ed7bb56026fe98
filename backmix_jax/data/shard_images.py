"""A prepared split's images as a lazy uint8 [N, H, W, C] array: nothing is decoded until
pixels are asked for, so a training split far larger than host memory can stand where an
in-memory array does (`ArraySplit.images`).

Indexing along the first axis with a slice, an integer array or a boolean mask gives
another lazy array (a view on fewer records: `openset.relabel` keeps the known classes this
way); an integer gives one decoded image [H, W, C]; `np.asarray` (and `__iter__`) decode.
`mean` over the pixels streams the records: integer sums, exact, so the value is the one
NumPy computes on the decoded array. Any other NumPy method is absent and fails loudly.
"""
from __future__ import annotations

import numpy as np

from backmix_jax.data import shards
from backmix_jax.data.core import DataError
from backmix_jax.data.images import resize_bilinear

_CHUNK = 1024  # records decoded at a time by __array__ and mean


class ShardImages:
  """uint8 [len(records), size, size, C]: records `records` (int64 positions) of the shard
  files `paths`, whose images are `stored_shape` [h, w, C], decoded on use and resized to
  `size` (None: as stored) with `images.resize_bilinear`, as `images.conform` resizes every
  source. Views share one opened random-access source."""

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, paths, records: np.ndarray, stored_shape, size: int | None = None,
               _holder: dict | None = None):
    self.paths = tuple(paths)
    self.records = np.asarray(records, np.int64)
    self.stored_shape = tuple(int(s) for s in stored_shape)
    same = size is None or (size, size) == self.stored_shape[:2]
    self.size = None if same else int(size)
    self.image_shape = (self.stored_shape if same
                        else (self.size, self.size, self.stored_shape[2]))
    self._holder = {} if _holder is None else _holder

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (len(self.records),) + self.image_shape

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape))

  def __len__(self) -> int:
    return len(self.records)

  def _decode(self, records: np.ndarray) -> np.ndarray:
    if "source" not in self._holder:
      self._holder["source"] = shards.data_source(self.paths)
    out = np.empty((len(records),) + self.stored_shape, np.uint8)
    for i, r in enumerate(shards.read_records(self._holder["source"], records)):
      if r["image"].shape != self.stored_shape:
        raise DataError(f"record {records[i]} is {r['image'].shape}, the manifest "
                        f"says {self.stored_shape}")
      out[i] = r["image"]
    return out if self.size is None else resize_bilinear(out, self.size)

  def __getitem__(self, key):
    if isinstance(key, tuple):  # images[rows, ...]: the rows' pixels, then the rest
      rows, rest = key[0], key[1:]
      if isinstance(rows, (int, np.integer)):
        return self[rows][rest]
      return np.asarray(self[rows])[(slice(None),) + rest]
    if isinstance(key, (int, np.integer)):
      return self._decode(self.records[[key]])[0]
    return ShardImages(self.paths, self.records[key], self.stored_shape, self.size,
                       self._holder)

  def __array__(self, dtype=None, copy=None):
    parts = [self._decode(self.records[i:i + _CHUNK]) for i in range(0, len(self), _CHUNK)]
    out = np.concatenate(parts) if parts else np.zeros(self.shape, np.uint8)
    return out if dtype is None else out.astype(dtype)

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]

  def mean(self, axis=None, dtype=None):
    """Per-channel mean over axis (0, 1, 2), streamed (any other axis decodes everything).
    uint8 sums in int64 are exact, and so is NumPy's float64 pairwise sum of integers below
    2**53: both end in the same division, so the values are NumPy's bit for bit."""
    if tuple(axis or ()) != (0, 1, 2):
      return np.asarray(self).mean(axis=axis, dtype=dtype)
    total = np.zeros(self.image_shape[-1], np.int64)
    for i in range(0, len(self), _CHUNK):
      total += self._decode(self.records[i:i + _CHUNK]).sum(axis=(0, 1, 2), dtype=np.int64)
    count = len(self) * self.image_shape[0] * self.image_shape[1]
    return (total.astype(np.float64) / count).astype(dtype or np.float64)
