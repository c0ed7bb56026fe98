"""The order of the training data: a pure function of (seed, epoch), nothing else.

Epoch e visits `epoch_permutation(seed, e, N)` in consecutive global batches, the last
partial batch dropped; the second stream of BackMix's bank mode is the same function under
seed + PARTNER_SEED_OFFSET. Every backend (data/pipeline.py in memory, data/streaming.py
from shards) reads these rows, so they all give the same batches, for any number of hosts
and workers, and the data position after step s is s: a resumed run needs no saved input
state to see exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import numpy as np

# The partner stream's seed is the run's seed plus this (any fixed offset: another order).
PARTNER_SEED_OFFSET = 1_000_003


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """[n] int64: the visiting order of epoch `epoch` (independent of hosts and devices)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batches(seed: int, epoch: int, n: int, global_batch: int) -> np.ndarray:
  """int64 [n // global_batch, global_batch]: row j holds the training rows of the epoch's
  j-th global batch (the last partial batch dropped)."""
  steps = n // global_batch
  return epoch_permutation(seed, epoch, n)[:steps * global_batch].reshape(steps, global_batch)
