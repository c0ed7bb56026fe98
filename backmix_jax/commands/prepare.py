"""Prepare a dataset for streaming: read a source spec once and write its train and test
splits as ArrayRecord shards with a manifest (format: data/shards.py), which
`data.source=arrayrecord:<dir>` reads and `data.backend=grain` streams.

The flags are in experiments/prepare.py. Images are written as the config's data pipeline
sees them (its data.image_size and data.channels, conformed as every source is), so a run
on the shards trains on the same pixels as a run on the source.
"""
from __future__ import annotations

import os
import time

import numpy as np

from backmix_jax.data import shards, sources, splits
from backmix_jax.data.core import DataError


def known_classes(config) -> tuple[int, ...]:
  """The known classes of the config's split (config.known_classes when set)."""
  if config.known_classes:
    return tuple(int(c) for c in config.known_classes)
  return tuple(splits.get_split(config.dataset, config.protocol, config.trial).known)


def prepare(config, source: str, out: str, *, known_only: bool = False,
            records_per_shard: int = 10_000, max_per_split: int | None = None,
            progress=print) -> dict:
  """Write `source` (a source spec; '' = config.data.source) into the new directory `out`;
  with known_only the training split keeps only the config's known classes (the test split
  is kept whole: it holds the unknowns). Returns the manifest written."""
  if not out:
    raise DataError("--out is required: the new directory to write the shards into")
  source = source or config.data.source
  if source.startswith("arrayrecord:") or source == "composite":
    raise DataError(f"--source={source}: prepare reads a source of images (digits, npz:, "
                    "tfds:, folder:), not {source.partition(':')[0]}")
  if records_per_shard < 1:
    raise DataError(f"--records_per_shard must be >= 1, got {records_per_shard}")
  if os.path.exists(os.path.join(out, shards.MANIFEST)):
    raise DataError(f"--out={out} already holds a prepared dataset ({shards.MANIFEST}); "
                    "choose another directory or remove it")
  if os.path.isdir(out) and os.listdir(out):
    raise DataError(f"--out={out} is not empty; prepare writes into a new or empty directory")
  known = known_classes(config) if known_only else None  # a bad split fails before reading
  d = config.data
  t0 = time.time()
  progress(f"read   {source} at {d.image_size} px"
           + (f", {d.channels} channel(s)" if d.get("channels") else ""))
  data = sources.load_source(source, data_dir=d.data_dir or None, image_size=d.image_size,
                             channels=d.get("channels") or None, max_per_split=max_per_split)
  rows = np.arange(len(data.train))
  if known is not None:
    rows = np.flatnonzero(np.isin(data.train.labels, np.asarray(known)))
  progress(f"write  train: {len(rows)} of {len(data.train)} images"
           + (f" (known classes {list(known)})" if known else "")
           + f"; test: {len(data.test)} images")
  parts = dict(train=(shards.split_examples(data.train, rows), len(rows)),
               test=(shards.split_examples(data.test, np.arange(len(data.test))), len(data.test)))
  manifest = shards.write_prepared(out, parts, source=source,
                                   image_shape=data.train.images.shape[1:],
                                   class_names=data.class_names, known_classes=known,
                                   records_per_shard=records_per_shard, progress=progress)
  entries = manifest["splits"]
  size = sum(s["bytes"] for e in entries.values() for s in e["shards"])
  progress(f"done   {out}: train {entries['train']['count']} and test "
           f"{entries['test']['count']} images, {len(data.class_names)} classes, "
           f"{sum(len(e['shards']) for e in entries.values())} shards, {size / 1e6:.1f} MB, "
           f"checksum {manifest['checksum'][:16]}, {time.time() - t0:.1f} s")
  return manifest
