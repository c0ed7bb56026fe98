"""`arrayrecord:<dir>`: a directory written by `python -m experiments.prepare` (ArrayRecord
shards and a manifest, data/shards.py); a URL (`gs://bucket/dir`) is first staged into a
local cache (data/staging.py) and read from there.

The test split is decoded into memory here. The training split is a lazy array
(data/shard_images.py): decoded where pixels are used, so it need not fit in memory. With
data.backend=grain, Grain workers decode each batch (data/streaming.py); the in-memory
backends decode their gathers from the same records, in the same order, so all give the
same batches.
"""
from __future__ import annotations

from backmix_jax.data import shards, staging
from backmix_jax.data.core import ArraySplit, evenly_spaced
from backmix_jax.data.shard_images import ShardImages
from backmix_jax.data.readers import ReadRequest, Reader


def read(directory: str, request: ReadRequest):
  """The requested splits, at most max_per_split evenly spaced records each."""
  directory = staging.local_directory(directory, request.cache_dir)
  manifest = shards.read_manifest(directory)
  out = {}
  for name in request.splits:
    if name in manifest["splits"]:
      rows = evenly_spaced(manifest["splits"][name]["count"], request.max_per_split)
      if name == "train":
        split = shards.open_split(directory, name)
        shape = (split.image_size, split.image_size, split.channels)
        out[name] = ArraySplit(ShardImages(split.paths, rows, shape, request.image_size),
                               split.labels[rows])
      else:
        out[name] = shards.load_split(directory, name, rows)
  return out, tuple(manifest["class_names"])


READER = Reader("arrayrecord", "<dir>", read)
