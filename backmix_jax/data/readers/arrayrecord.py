"""`arrayrecord:<dir>`: a directory written by `python -m experiments.prepare` (ArrayRecord
shards and a manifest, data/shards.py), decoded into memory here.

This is what every in-memory backend trains on and what the test splits always are; with
data.backend=grain the training images are read from the same shards batch by batch
instead (data/streaming.py), in the same order, so both give the same batches.
"""
from __future__ import annotations

from backmix_jax.data import shards
from backmix_jax.data.core import evenly_spaced
from backmix_jax.data.readers import ReadRequest, Reader


def read(directory: str, request: ReadRequest):
  """The requested splits, at most max_per_split evenly spaced records each."""
  manifest = shards.read_manifest(directory)
  out = {}
  for name in request.splits:
    if name in manifest["splits"]:
      n = manifest["splits"][name]["count"]
      out[name] = shards.load_split(directory, name, evenly_spaced(n, request.max_per_split))
  return out, tuple(manifest["class_names"])


READER = Reader("arrayrecord", "<dir>", read)
