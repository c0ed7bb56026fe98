"""The data-parallel step: 4 devices train the same model as 1 device on the same global batch."""
import jax
import numpy as np
import pytest

from tests.helpers import flat_params, quick_config, run_steps

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow


def test_four_devices_equal_one_device():
  """Gradients and batch-norm statistics averaged with pmean: parameters after 4 steps on 4
  CPU devices equal the 1-device result. Per-device random draws (BackMix partners, crops)
  are switched off: they legitimately differ with the number of devices."""
  assert jax.device_count() >= 4
  results = {}
  for n in (1, 4):
    cfg = quick_config(num_devices=n, **{"backmix.enabled": False, "data.crop_padding": 0,
                                                 # Adam's g/sqrt(v) would amplify float noise
                                                 # in near-zero gradients; SGD does not.
                                                 "optimizer.name": "sgd",
                                                 "optimizer.learning_rate": 0.05})
    _, state, hist = run_steps(cfg, 4)
    results[n] = (flat_params(state), jax.tree.map(np.asarray, state.batch_stats), hist)
  p1, bs1, h1 = results[1]
  p4, bs4, h4 = results[4]
  _, init_state, _ = run_steps(quick_config(num_devices=1), 0)
  moved = np.abs(p1 - flat_params(init_state)).max()
  assert moved > 1e-2  # equality below is not the trivial one of an untrained model
  # Float32 reductions in another order: differences stay far below the updates themselves.
  np.testing.assert_allclose(p4, p1, rtol=1e-3, atol=5e-4)
  assert np.abs(p4 - p1).max() < 0.01 * moved
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), bs4, bs1)
  np.testing.assert_allclose([h["loss"] for h in h4], [h["loss"] for h in h1], rtol=1e-4)


@pytest.mark.parametrize("cam_source", ["live", "bank"])
def test_backmix_step_runs_on_four_devices(cam_source):
  """With BackMix on, the per-device program mixes within each shard and keeps the replicated
  state consistent; in bank mode every device's CAMs reach the (replicated) bank."""
  cfg = quick_config(num_devices=4, **{"backmix.cam_source": cam_source})
  run, state, hist = run_steps(cfg, 3)
  assert all(np.isfinite(h["loss"]) and h["finite"] for h in hist)
  if cam_source == "bank":
    bank = np.asarray(state.bank)
    touched = np.any(bank != 0.5, axis=(1, 2))
    # 3 steps x 32 samples, all distinct rows within an epoch
    assert touched.sum() == 3 * 32
