"""Host input pipelines: index permutations in, uint8 batches out.

The order is a pure function of (seed, epoch) (data/order.py): the data position after
step s is simply s, so a resumed run sees exactly the batches an uninterrupted one would,
and each host of a pod slice takes its own contiguous slice of every global batch (the
global batch is identical for any number of hosts).

Interchangeable backends feed the same batches. In memory (the dataset held as uint8
arrays, a batch a gather of rows): tf.data (parallel gather and prefetch, the path tfds
datasets use on TPU VMs) and plain NumPy with a prefetch thread (for JAX images without
TensorFlow); 'auto' picks tf.data when importable. Streaming: 'grain' reads each batch's
images from prepared ArrayRecord shards (data.source=arrayrecord:<dir>) in Grain worker
processes (data/streaming.py).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import queue
import threading
from typing import Iterator

import numpy as np

from backmix_jax.data import streaming
from backmix_jax.data.core import ArraySplit, DataError
# epoch_permutation: the order's home is data/order.py; importable from here as before.
from backmix_jax.data.order import (PARTNER_SEED_OFFSET, epoch_batches,  # noqa: F401
                                    epoch_permutation)


# data.backend: 'auto' picks tf.data when TensorFlow imports, else NumPy; 'grain' streams
# prepared shards.
BACKENDS = ("auto", "tf", "numpy", "grain")


def tensorflow_available() -> bool:
  try:
    import tensorflow  # noqa: F401
  except ImportError:
    return False
  return True


def resolve_backend(backend: str) -> str:
  if backend == "auto":
    return "tf" if tensorflow_available() else "numpy"
  if backend not in BACKENDS:
    raise DataError(f"unknown data backend {backend!r}; use {', '.join(BACKENDS)}")
  if backend == "tf" and not tensorflow_available():
    raise DataError("data.backend='tf' but TensorFlow is not importable; use 'numpy' or 'auto'")
  return backend


def backend_problems(backend: str, source: str, random_resized_crop: bool = False) -> list[str]:
  """The sentence for a backend that cannot read the source or apply the host crop (config
  checks and TrainStream)."""
  if backend != "grain":
    return (["data.random_resized_crop needs data.backend='grain' (it crops the stored images "
             "while streaming them)"] if random_resized_crop else [])
  if importlib.util.find_spec("grain") is None:
    return ["data.backend='grain' but grain is not installed (pip install -r requirements.txt);"
            " use 'auto' to train from memory"]
  if not source.startswith(streaming.SOURCE_PREFIX):
    return [f"data.backend='grain' streams prepared shards: set data.source="
            f"{streaming.SOURCE_PREFIX}<dir> (python -m experiments.prepare writes them), "
            f"got {source!r}"]
  return []


@dataclasses.dataclass(frozen=True)
class TrainStream:
  """Training batches of one process: `batches(start_step, end_step)` yields the batches of
  global steps start_step, ..., end_step - 1 (an end step, not a count).

  Each batch is a dict of NumPy arrays of this process's local share:
    image uint8 [b,H,W,C], label int32 [b], index int32 [b] (row in the training set);
    fg_mask bool [b,H,W] (true foreground) when the split has masks;
    with `partner_stream=True` also partner_image, partner_index: a second,
    independently shuffled pass over the whole training set (BackMix bank mode).

  With backend 'grain', `source` (arrayrecord:<dir>) and `known_classes` say which records
  are the rows of `data` (the known classes' records, in order); `workers` Grain worker
  processes decode them (0: in this process). The batches do not depend on `workers`.
  `random_resized_crop` (grain only): each image a random-resized crop of the stored one
  (data/streaming.py), a pure function of (seed, step, position in the global batch).
  `cache_dir`: where a remote `source` directory is staged (data/staging.py).
  """
  data: ArraySplit
  global_batch: int
  seed: int
  process_index: int = 0
  process_count: int = 1
  partner_stream: bool = False
  backend: str = "auto"
  source: str = ""
  known_classes: tuple = ()
  workers: int = 0
  random_resized_crop: bool = False
  cache_dir: str = ""

  def __post_init__(self):
    problems = backend_problems(self.backend, self.source, self.random_resized_crop)
    if problems:
      raise DataError(problems[0])
    if self.global_batch % self.process_count:
      raise DataError(f"batch_size {self.global_batch} is not divisible by {self.process_count} processes")
    if self.steps_per_epoch == 0:
      raise DataError(f"batch_size {self.global_batch} exceeds the {len(self.data)} training samples")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.data) // self.global_batch

  @property
  def local_batch(self) -> int:
    return self.global_batch // self.process_count

  def _indices(self, seed: int, start_step: int, end_step: int) -> np.ndarray:
    """[end_step - start_step, local_batch] rows of the training set, this process's slice."""
    spe = self.steps_per_epoch
    first_epoch, last_epoch = start_step // spe, (end_step - 1) // spe
    rows = np.concatenate([epoch_batches(seed, epoch, len(self.data), self.global_batch)
                           for epoch in range(first_epoch, last_epoch + 1)])
    rows = rows[start_step - first_epoch * spe: end_step - first_epoch * spe]
    lo = self.process_index * self.local_batch
    return rows[:, lo: lo + self.local_batch]

  def batches(self, start_step: int, end_step: int) -> Iterator[dict]:
    """The batches of steps start_step .. end_step - 1 (end_step - start_step of them; none
    when end_step <= start_step): a resumed run passes (its step, the run's total steps)."""
    if start_step >= end_step:
      return iter(())
    backend = resolve_backend(self.backend)
    if backend == "grain":
      lo = self.process_index * self.local_batch
      reader = streaming.StepReader.open(
          self.source, self.known_classes, seed=self.seed, global_batch=self.global_batch,
          rows=(lo, lo + self.local_batch), partner=self.partner_stream,
          image_shape=self.data.images.shape[1:], masks=self.data.masks is not None,
          random_resized_crop=self.random_resized_crop, cache_dir=self.cache_dir)
      if len(reader.records) != len(self.data):
        raise DataError(f"{self.source} holds {len(reader.records)} training images of the "
                        f"known classes, the training split {len(self.data)}")
      return streaming.grain_batches(reader, start_step, end_step, self.workers)
    idx = self._indices(self.seed, start_step, end_step)
    pidx = (self._indices(self.seed + PARTNER_SEED_OFFSET, start_step, end_step)
            if self.partner_stream else None)
    if backend == "tf":
      return _tf_batches(self.data, idx, pidx)
    return _prefetch(_numpy_batches(self.data, idx, pidx), size=4)


def _gather(data: ArraySplit, idx: np.ndarray, pidx: np.ndarray | None) -> dict:
  # np.asarray: a lazy split (data/shard_images.py) decodes here, in the prefetch thread.
  batch = dict(image=np.asarray(data.images[idx]), label=data.labels[idx].astype(np.int32),
               index=idx.astype(np.int32))
  if data.masks is not None:
    batch["fg_mask"] = data.masks[idx]
  if pidx is not None:
    batch.update(partner_image=np.asarray(data.images[pidx]),
                 partner_index=pidx.astype(np.int32))
  return batch


def _numpy_batches(data, idx, pidx) -> Iterator[dict]:
  for i in range(len(idx)):
    yield _gather(data, idx[i], None if pidx is None else pidx[i])


def _prefetch(it: Iterator, size: int) -> Iterator:
  """Run `it` in a background thread, `size` items ahead (NumPy gathers release the GIL)."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def worker():
    try:
      for item in it:
        q.put(item)
    except BaseException as e:  # surfaced in the consumer, not lost in the thread
      q.put(e)
    q.put(done)

  threading.Thread(target=worker, daemon=True).start()
  while True:
    item = q.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item


def _tf_batches(data, idx, pidx) -> Iterator[dict]:
  import tensorflow as tf
  images = tf.constant(np.asarray(data.images))  # a lazy split (shard_images) decodes
  labels = tf.constant(data.labels.astype(np.int32))
  masks = None if data.masks is None else tf.constant(data.masks)
  slices = {"index": idx.astype(np.int32)}
  if pidx is not None:
    slices["partner_index"] = pidx.astype(np.int32)

  def gather(d):
    out = dict(image=tf.gather(images, d["index"]), label=tf.gather(labels, d["index"]),
               index=d["index"])
    if masks is not None:
      out["fg_mask"] = tf.gather(masks, d["index"])
    if "partner_index" in d:
      out.update(partner_image=tf.gather(images, d["partner_index"]),
                 partner_index=d["partner_index"])
    return out

  ds = tf.data.Dataset.from_tensor_slices(slices).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def eval_batches(data: ArraySplit, global_batch: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
  """Every sample exactly once, in order; the last batch padded and masked.

  Yields image uint8 [b,H,W,C], label int32 [b], mask bool [b] (False on padding), with
  b = global_batch // process_count: this process's slice of each padded global batch.
  """
  if global_batch % process_count:
    raise DataError(f"eval_batch_size {global_batch} is not divisible by {process_count} processes")
  n = len(data)
  num_batches = -(-n // global_batch)
  local = global_batch // process_count
  for b in range(num_batches):
    rows = np.arange(b * global_batch, (b + 1) * global_batch)[process_index * local:(process_index + 1) * local]
    mask = rows < n
    rows = np.where(mask, rows, 0)
    yield dict(image=np.asarray(data.images[rows]), label=data.labels[rows].astype(np.int32),
               mask=mask)
