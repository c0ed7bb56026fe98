"""ARPL+CS: the confusing-sample term against NumPy, the DCGAN's shapes, the fake batch-norm
set, and the real data-parallel train step on 2 devices (GAN trained, losses reported, the
extra state checkpointed exactly); frameworks without a GAN keep an empty extra state."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax import parallel
from backmix_jax.frameworks import arpl_cs, get_framework
from backmix_jax.training.run import build_run
from tests.helpers import (build_with_step, checkpoint_round_trip, fresh_state, quick_config,
                           release_memory, train_step_for)


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.serialization.to_state_dict(tree))


def _np_fake_loss(f, p):
  """ARPLoss.fake_loss, directly: softmax of mean squared distances, exp(-mean entropy)."""
  logits = ((f[:, None, :] - p) ** 2).mean(-1)
  z = logits - logits.max(-1, keepdims=True)
  prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  return np.exp((prob * np.log(prob)).sum(1).mean())


def test_fake_loss_matches_numpy_and_is_largest_for_equidistant_features():
  """fake_loss equals ARPL's formula; it is 1/K when every point is equally far (features
  at the origin, points on a sphere) and 1 when one point is overwhelmingly closest."""
  rng = np.random.default_rng(0)
  f, p = rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
  np.testing.assert_allclose(float(arpl_cs.fake_loss(jnp.asarray(f), jnp.asarray(p))),
                             _np_fake_loss(f, p), rtol=1e-5)
  sphere = p / np.linalg.norm(p, axis=1, keepdims=True)
  np.testing.assert_allclose(float(arpl_cs.fake_loss(jnp.zeros((3, 5)), jnp.asarray(sphere))),
                             0.25, rtol=1e-6)
  far = np.zeros((2, 5)); far[1, 0] = 100.0
  assert float(arpl_cs.fake_loss(jnp.zeros((1, 5)), jnp.asarray(far))) > 0.999


@pytest.mark.slow
def test_dcgan_shapes_output_range_and_init():
  """G maps z [B,1,1,100] to [B,32,32,C] images in [0,1]; D maps them to one logit each;
  both have ARPL's parameter counts; conv kernels start ~N(0, 0.02) and BN scales
  ~N(1, 0.02)."""
  g, d = get_framework("arpl_cs").gan(channels=3)
  z = jax.random.normal(jax.random.key(0), (2, 1, 1, 100))
  g_vars = g.init(jax.random.key(1), z, train=False)
  images = g.apply(g_vars, z, train=False)
  assert images.shape == (2, 32, 32, 3)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  d_vars = d.init(jax.random.key(2), images, train=False)
  assert d.apply(d_vars, images, train=False).shape == (2,)
  # ARPL's _netG32 / _netD32 (nz 100, ngf = ndf = 64, nc 3), counted from its layer list:
  # G: convT 100->512, 512->256, 256->128, 128->3 (4x4, no bias) + 3 BNs (scale, bias);
  # D: conv 3->128, 128->256, 256->512, 512->1024 (4x4, no bias) + 2 BNs + linear 1024->1.
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert count(g_vars["params"]) == 16 * (100 * 512 + 512 * 256 + 256 * 128 + 128 * 3) + 2 * (
      512 + 256 + 128) == 3_448_576
  assert count(d_vars["params"]) == 16 * (3 * 128 + 128 * 256 + 256 * 512 + 512 * 1024) + 2 * (
      256 + 512) + 1024 + 1 == 11_018_753
  flat = flax.traverse_util.flatten_dict(g_vars["params"])
  kernels = np.concatenate([np.ravel(v) for k, v in flat.items() if k[-1] == "kernel"])
  scales = np.concatenate([np.ravel(v) for k, v in flat.items() if k[-1] == "scale"])
  assert abs(kernels.std() - 0.02) < 0.002 and abs(scales.mean() - 1.0) < 0.005


@pytest.mark.slow
def test_bn_param_swap_replaces_only_batch_norm_scale_and_bias():
  """bn_params picks exactly the BN layers' scale/bias; swapping in a changed set changes
  those leaves and no other, and swapping the original back is the identity."""
  run = _built()[0]
  params, stats = run.state.params, run.state.batch_stats
  bn = arpl_cs.bn_params(params, stats)
  keys = flax.traverse_util.flatten_dict(bn).keys()
  assert keys and all(k[-1] in ("scale", "bias") for k in keys)
  assert {k[:-1] for k in keys} == {k[:-1] for k in flax.traverse_util.flatten_dict(stats)}
  changed = arpl_cs.swap_bn_params(params, jax.tree.map(lambda x: x + 1.0, bn))
  before, after = flax.traverse_util.flatten_dict(params), flax.traverse_util.flatten_dict(changed)
  for k in before:
    assert np.array_equal(before[k], after[k]) == (k not in keys), k
  same = flax.traverse_util.flatten_dict(arpl_cs.swap_bn_params(params, bn))
  assert all(np.array_equal(before[k], same[k]) for k in before)


# Two devices: the data-parallel path at half the memory of four, since every device holds a
# replica of the GAN and its optimiser (0.17 GB) and of the step's buffers (0.15 GB).
DEVICES = 2


@functools.lru_cache(maxsize=None)
def _built():
  return build_with_step(quick_config(framework="arpl_cs", score="", num_devices=DEVICES))


@pytest.mark.slow
def test_train_step_trains_the_gan_and_checkpoints_it_exactly(tmp_path):
  """Three real shard_map steps on 2 devices: every loss (classifier, D, G, fake term) is
  reported and finite; G, D, their optimisers, the fake BN set and its statistics all change
  and the fake statistics differ from the real ones; an Orbax save/restore gives back every
  array of the state, the extra state included, exactly."""
  run, step_fn = _built()
  assert run.mesh.size == DEVICES
  state = fresh_state(run)
  for batch in run.stream.batches(0, 3):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
    metrics = jax.device_get(metrics)
    assert bool(metrics["finite"]), metrics
    for name in ("loss", "loss_d", "loss_g", "fake_loss"):
      assert np.isfinite(metrics[name]), (name, metrics)
  assert 0.0 < metrics["fake_loss"] <= 1.0 and metrics["loss_d"] > 0.0
  init, trained = _flat(run.state.extra), _flat(state.extra)
  assert init.keys() == trained.keys()
  for part in ("g_params", "d_params", "g_opt", "d_opt", "fake_bn", "fake_bn_opt", "fake_stats",
               "g_stats", "d_stats"):
    keys = [k for k in init if k[0] == part]
    assert keys and any(not np.array_equal(init[k], trained[k]) for k in keys), part
  real_stats = flax.traverse_util.flatten_dict(state.batch_stats)
  fake_stats = flax.traverse_util.flatten_dict(state.extra["fake_stats"])
  assert any(not np.allclose(real_stats[k], fake_stats[k]) for k in real_stats)

  restored, step = checkpoint_round_trip(run, state, tmp_path, 3)
  assert step == 3
  want, got = _flat(state), _flat(restored)
  assert want.keys() == got.keys() and any(k[0] == "extra" for k in want)
  for key in want:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=str(key))


@pytest.mark.slow
def test_frameworks_without_a_gan_have_an_empty_extra_state():
  """Softmax (like every framework without auxiliary networks) has no auxiliary, so the step
  trains nothing beside the classifier, and starts with extra == {}; ARPL+CS has one."""
  from backmix_jax.frameworks import FRAMEWORKS, Auxiliary
  for name in FRAMEWORKS:
    aux = get_framework(name).auxiliary
    assert (aux is None) == (name != "arpl_cs"), name
  assert isinstance(get_framework("arpl_cs").auxiliary, Auxiliary)
  run = build_run(quick_config(framework="softmax"))
  assert run.state.extra == {}


def test_empty_extra_keeps_the_checkpoint_layout_of_older_states():
  """A state with an empty extra serialises to the six fields checkpoints had before extra
  existed (so those still restore) and deserialises back; a non-empty extra is kept."""
  from backmix_jax.training.state import TrainState
  old = dict(step=np.int32(3), params={"w": np.ones(2)}, batch_stats={}, opt_state={},
             rng=np.zeros(2, np.uint32), bank=np.zeros((1, 2, 2)))
  template = TrainState(**{k: np.zeros_like(v) if isinstance(v, np.ndarray) else v
                           for k, v in old.items()})
  assert set(flax.serialization.to_state_dict(template)) == set(old)
  restored = flax.serialization.from_state_dict(template, old)
  assert restored.extra == {} and int(restored.step) == 3
  with_extra = template.replace(extra={"g": np.ones(1)})
  assert flax.serialization.to_state_dict(with_extra)["extra"] == {"g": np.ones(1)}


@pytest.mark.slow
def test_fake_term_gradient_reaches_the_shared_classifier_weights_only():
  """Step (3)'s beta * F trains the classifier. One SGD step (no momentum, no weight decay)
  from the same state and batch with beta = 0.1 and with beta = 0: the discriminator (updated
  before any beta enters) ends identical; the convolutions and the reciprocal points end
  different (the fake term's gradient reached them); the real batch-norm scale/bias and the
  real running statistics end identical (fakes go through their own BN set)."""
  _built.cache_clear()  # this test builds its own ARPL+CS run: one in memory at a time
  release_memory()
  config = quick_config(framework="arpl_cs", score="", num_devices=DEVICES, **{
      "optimizer.name": "sgd", "optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0,
      "optimizer.learning_rate": 0.1, "optimizer.schedule": "constant"})
  run = build_run(config)
  batch = parallel.to_global(next(iter(run.stream.batches(0, 1))), run.mesh)
  ends = {}
  for beta in (0.1, 0.0):
    fw = get_framework("arpl_cs")
    fw.beta = beta
    state, metrics = train_step_for(run, fw)(fresh_state(run), batch)
    assert bool(jax.device_get(metrics["finite"]))
    ends[beta] = _flat(state)
  with_f, without = ends[0.1], ends[0.0]
  bn = set(flax.traverse_util.flatten_dict(
      arpl_cs.bn_params(run.state.params, run.state.batch_stats)))
  differs = lambda k: not np.array_equal(with_f[k], without[k])
  for key in with_f:
    if key[0] == "params":
      if key[1:] in bn:
        assert not differs(key), key
      elif key[-1] in ("kernel", "points"):
        assert differs(key), key
    elif key[0] in ("batch_stats",) or key[:2] == ("extra", "d_params"):
      assert not differs(key), key
  assert any(differs(k) for k in with_f if k[:2] == ("extra", "g_params"))
