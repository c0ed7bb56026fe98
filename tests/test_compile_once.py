"""The train step is traced and compiled once per run: no recompilation from step to step
or at an epoch boundary, in live and bank BackMix modes.

A new trace (changed shapes, dtypes or weak types in the state) or a new executable
(changed shardings) would cost a full XLA compile, minutes for WRN-40-4 on an accelerator.
"""
import jax
import pytest

from backmix_jax import parallel
from backmix_jax.training import step as step_lib
from backmix_jax.training.run import build_run
from tests.helpers import quick_config

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cam_source", ["live", "bank"])
def test_step_compiles_once_across_steps_and_epochs(cam_source, monkeypatch):
  """Runs one epoch plus two steps through the real pipeline; the per-device program is
  traced once and the jitted step holds one executable."""
  traces = []
  original = step_lib.per_device_step

  def counting(*args, **kwargs):
    traces.append(1)  # runs only while JAX traces, never when the executable is reused
    return original(*args, **kwargs)

  monkeypatch.setattr(step_lib, "per_device_step", counting)
  # 16 px digits, batch 128: 5 steps per epoch, so 7 steps cross one epoch boundary.
  config = quick_config(**{"data.image_size": 16, "batch_size": 128,
                           "backmix.cam_source": cam_source})
  run = build_run(config)
  spe = run.stream.steps_per_epoch
  step_fn = step_lib.make_train_step(run.mesh, model=run.train_model, framework=run.framework,
                                     tx=run.tx, config=config, steps_per_epoch=spe)
  state = run.state
  for batch in run.stream.batches(0, spe + 2):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
  jax.block_until_ready(metrics)
  assert int(state.step) == spe + 2 > spe
  assert len(traces) == 1
  # Shardings are not part of the trace: a changed one shows up as a second executable.
  if hasattr(step_fn, "_cache_size"):  # private jit API, present in jax 0.10
    assert step_fn._cache_size() == 1
