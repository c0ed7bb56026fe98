"""The streaming backend (data.backend='grain'): training batches read from prepared
ArrayRecord shards (data/shards.py) by Grain, so the training images need not fit in memory.

One Grain element is one step's batch of this process: `StepReader(step)` takes the rows of
that step from the order function (data/order.py: a pure function of seed, epoch and step,
the in-memory backends' too), keeps this process's slice of the global batch, reads and
decodes only those records, conforms them to the run's image shape (data/images.py, as
every source is) and stacks them:

  grain.MapDataset.range(start, end).map(StepReader)   # 1:1, one batch per step
    .to_iter_dataset(ReadOptions)                       # threads, a few batches ahead
    .mp_prefetch(MultiprocessingOptions(workers))       # worker processes, when workers > 0

Grain's worker processes take whole steps in turn and hand them back in step order; a map
with no filter or state gives the same elements for any worker count (grain's mp_prefetch
docs), so the batches are the in-memory backends' batches whatever `workers` is. A resumed
run starts the dataset at its step: no iterator state is saved, none is needed.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
from absl import flags

from backmix_jax.data import shards, staging
from backmix_jax.data.core import DataError
from backmix_jax.data.images import conform, random_resized_crop
from backmix_jax.data.order import PARTNER_SEED_OFFSET, epoch_batches

SOURCE_PREFIX = "arrayrecord:"


def known_records(labels: np.ndarray, known_classes) -> tuple[np.ndarray, np.ndarray]:
  """(records int64 [n], labels int32 [n]): the positions of the records whose source label
  is a known class, in record order, and their labels 0..K-1 (position in known_classes):
  the training split `openset.relabel` makes from the same records."""
  known = np.asarray(known_classes, np.int64)
  if not len(known):
    raise DataError("the grain backend needs the run's known classes")
  lut = np.full(max(int(labels.max(initial=0)), int(known.max())) + 1, -1, np.int64)
  lut[known] = np.arange(len(known))
  new = lut[labels]
  records = np.flatnonzero(new >= 0)
  return records, new[records].astype(np.int32)


@dataclasses.dataclass
class StepReader:
  """step -> this process's batch of that step (the TrainStream contract, data/pipeline.py):
  image uint8 [b, H, W, C], label int32 [b], index int32 [b], fg_mask bool [b, H, W] with
  `masks`, partner_image / partner_index with `partner`; b = rows[1] - rows[0].

  paths: shard files of the training split; records: int64 [N], the record of each
  training row; labels: int32 [N] their labels 0..K-1; rows: (lo, hi) of the global batch
  this process takes. random_resized_crop: each image is a random-resized crop of the
  stored image (images.random_resized_crop) drawn from a generator seeded by (seed of the
  stream, step, position in the global batch), a pure function of those, instead of the
  stored image conformed to image_shape. The shard reader and the current epoch's order are
  opened on first use in each process (Grain pickles the reader into its workers).
  """
  paths: tuple[str, ...]
  records: np.ndarray
  labels: np.ndarray
  seed: int
  global_batch: int
  rows: tuple[int, int]
  partner: bool
  image_shape: tuple[int, int, int]
  masks: bool
  random_resized_crop: bool = False
  _source: object = dataclasses.field(default=None, repr=False)
  _orders: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def open(cls, source: str, known_classes, *, seed: int, global_batch: int,
           rows: tuple[int, int], partner: bool, image_shape, masks: bool,
           random_resized_crop: bool = False, cache_dir: str = "") -> "StepReader":
    """The reader of the training split of `source` (arrayrecord:<dir>), checked against its
    manifest, for a run with these known classes; a remote <dir> is read from its copy in
    `cache_dir` (data/staging.py)."""
    directory = staging.local_directory(source[len(SOURCE_PREFIX):], cache_dir)
    split = shards.open_split(directory, "train")
    prepared_for = shards.read_manifest(directory).get("known_classes")
    missing = sorted(set(known_classes) - set(prepared_for or known_classes))
    if missing:
      raise DataError(f"{source} was prepared with --known_only for classes {prepared_for}: "
                      f"its training split holds no images of the run's known classes {missing}")
    if masks and not split.masks:
      raise DataError(f"{source}: the training split has masks but the shards hold none")
    if masks and random_resized_crop:
      raise DataError("data.random_resized_crop with true-foreground masks: the masks would "
                      "not follow the crops")
    records, labels = known_records(split.labels, known_classes)
    return cls(split.paths, records, labels, seed, global_batch, tuple(rows), partner,
               tuple(image_shape), masks, random_resized_crop)

  def __getstate__(self):  # what goes to a worker: no open reader, no cached order
    return dict(self.__dict__, _source=None, _orders={})

  def _step_rows(self, seed: int, step: int) -> np.ndarray:
    """int64 [b]: this process's training rows of global step `step` under `seed`."""
    spe = len(self.records) // self.global_batch
    epoch = step // spe
    if self._orders.get(seed, (None,))[0] != epoch:  # one epoch's order per seed is kept
      self._orders[seed] = (epoch, epoch_batches(seed, epoch, len(self.records),
                                                 self.global_batch))
    return self._orders[seed][1][step - epoch * spe, self.rows[0]:self.rows[1]]

  def _read(self, rows: np.ndarray) -> list[dict]:
    if self._source is None:
      self._source = shards.data_source(self.paths)
    return shards.read_records(self._source, self.records[rows])

  def _images(self, records: list[dict], seed: int, step: int) -> np.ndarray:
    size, _, channels = self.image_shape
    if self.random_resized_crop:
      images = np.stack([
          random_resized_crop(r["image"], size,
                              np.random.default_rng([seed, step, self.rows[0] + i]))
          for i, r in enumerate(records)])
      images = conform(images, None, channels)
    else:
      images = conform(np.stack([r["image"] for r in records]), size, channels)
    if images.shape[1:] != self.image_shape:
      raise DataError(f"shard images are {images.shape[1:]}, the run's {self.image_shape}")
    return images

  def __call__(self, step: int) -> dict:
    rows = self._step_rows(self.seed, int(step))
    records = self._read(rows)
    batch = dict(image=self._images(records, self.seed, int(step)), label=self.labels[rows],
                 index=rows.astype(np.int32))
    if self.masks:
      batch["fg_mask"] = np.stack([r["mask"] for r in records])
    if self.partner:
      pseed = self.seed + PARTNER_SEED_OFFSET
      prows = self._step_rows(pseed, int(step))
      batch.update(partner_image=self._images(self._read(prows), pseed, int(step)),
                   partner_index=prows.astype(np.int32))
    return batch


def grain_batches(reader: StepReader, start_step: int, end_step: int,
                  workers: int) -> Iterator[dict]:
  """The batches of steps start_step .. end_step - 1 through Grain, `workers` processes
  (0: threads of this process), each a few batches ahead."""
  import grain  # optional dependency, 1.4 s to import: only this backend needs it
  ds = grain.MapDataset.range(start_step, end_step).map(reader)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1 if workers else 2,
                                            prefetch_buffer_size=2))
  if workers:
    if not flags.FLAGS.is_parsed():  # Grain's worker options are absl flags; a library caller
      flags.FLAGS.mark_as_parsed()   # (not a command) may not have parsed any: the defaults
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                     per_worker_buffer_size=2))
  return _plain(iter(it))


def _plain(it) -> Iterator[dict]:
  """Batches as plain NumPy arrays: Grain hands worker output over in shared memory
  (SharedMemoryArray), freed here at once rather than whenever the caller drops its batch;
  the workers are stopped when the stream ends or is dropped."""
  try:
    for batch in it:
      yield {k: np.array(v) for k, v in batch.items()}
  finally:
    if hasattr(it, "close"):
      it.close()
