"""Small shared helpers for tests: quick configs and running a few train steps."""
from __future__ import annotations

import ctypes
import gc
import os

import jax
import numpy as np

from configs import digits


def quick_config(**overrides):
  """The digits config shrunk for tests: cnn_small, 1 epoch, small batches, no TensorBoard cost."""
  c = digits.get_config()
  c.model = "cnn_small"
  c.num_epochs = 1
  c.batch_size = 32
  c.eval_batch_size = 64
  c.log_every_steps = 5
  c.checkpoint_every_steps = 1000
  c.data.backend = "numpy"
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def train_step_for(run, framework=None):
  """The data-parallel train step of `run` (built from run.config); `framework` replaces the
  run's (e.g. one with changed constants)."""
  from backmix_jax.training.step import make_run_step
  return make_run_step(run, framework)


def build_with_step(config):
  """build_run(config) and its train step: (run, step_fn)."""
  from backmix_jax.training.run import build_run
  run = build_run(config)
  return run, train_step_for(run)


def fresh_state(run, step: int | None = None):
  """A copy of run.state (the train step donates its input state: never hand it the run's
  own buffers), at `step` when given."""
  import jax.numpy as jnp
  from backmix_jax.training.state import donatable_copy
  state = donatable_copy(run.state)
  return state if step is None else state.replace(step=jnp.full_like(state.step, step))


def run_steps(config, num_steps: int):
  """Build the run and apply `num_steps` train steps from the start; returns (run, state, metrics)."""
  from backmix_jax import parallel
  run, step_fn = build_with_step(config)
  state, history = run.state, []
  for batch in run.stream.batches(0, num_steps):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
    history.append(jax.device_get(metrics))
  return run, state, history


def flat_params(state) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(state.params)])


def checkpoint_round_trip(run, state, directory, step: int):
  """Save `state` at `step` with the project's Checkpointer, restore it into run.state's
  structure; returns (restored state, restored step)."""
  from backmix_jax.training import checkpointing
  ckpt = checkpointing.Checkpointer(str(directory))
  ckpt.save(step, state, run.signature, force=True)
  ckpt.wait()
  try:
    return ckpt.restore(run.state, run.signature)
  finally:
    ckpt.close()


def release_memory():
  """Drop every compiled program and unreachable array, and hand freed heap back to the OS
  (glibc keeps freed memory in its arenas until asked)."""
  jax.clear_caches()
  gc.collect()
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc
    pass


def resident_gib() -> float:
  """This process's resident memory in GiB (Linux /proc; 0 where that is not available)."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
  except (OSError, ValueError):
    return 0.0
