"""Backbones: parameter counts, map sizes, dtypes, BN and dropout modes, SyncBN under shard_map.

Large models are only traced (`jax.eval_shape`, `jax.make_jaxpr`); real forwards use
cnn_small, classifier32 and shrunken WRN/ResNet variants on tiny batches.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from backmix_jax.models import BACKBONES, get_backbone


def _key(seed):
  # RBG keys: same distributions as the default threefry keys, but XLA compiles their random
  # bits several times faster on CPU, and init compile time dominates these tests.
  return jax.random.key(seed, impl="rbg")


def _abstract_variables(model, size, channels=3, batch=2):
  x = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)
  return jax.eval_shape(lambda x: model.init(_key(0), x, train=False), x), x


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _init(model, x):
  return jax.jit(model.init, static_argnames="train")(_key(0), x, train=False)


def _apply(model, variables, x, **kwargs):
  """model.apply under jit (eager op-by-op dispatch is slow on CPU)."""
  return jax.jit(lambda v, x: model.apply(v, x, **kwargs))(variables, x)


def _images(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.fixture(scope="module")
def classifier32_variables():
  """Parameters do not depend on the input size: one init serves every classifier32 test."""
  return _init(get_backbone("classifier32"), jnp.zeros((1, 8, 8, 3)))


@pytest.fixture(scope="module")
def cnn_small_variables():
  return _init(get_backbone("cnn_small"), jnp.zeros((1, 8, 8, 3)))


# Exact backbone parameter counts (no fc), checked against the PyTorch originals:
#   classifier32: 997,056 conv + 2,048 BN. ARPL's PyTorch model also holds an unused bn10
#     (256) and a bias-free fc 128*K: 999,104 + 256 + 1,280 = 1,000,640 at K=10 (~1.0M).
#   wrn40_4: + 384 for the two BNs PyTorch evaluates and discards (see wrn.py) + fc 256*10+10
#     = 8,949,210 (~8.9M, the WRN paper's WRN-40-4).
#   resnet18: + fc 512*10+10 = 11,173,962, the usual CIFAR ResNet-18 count (~11.2M).
#   resnet34: + fc 5,130 = 21,282,122, the usual CIFAR ResNet-34 count (~21.3M).
#   resnet50: + fc 2048*1000+1000 = 25,557,032, torchvision's resnet50 count.
#   vit_b16: + head 768*1000+1000 = 86,567,656, timm's vit_base_patch16_224 count (its
#     pos_embed holds the 224 px grid at every input size).
PARAM_COUNTS = {
    "classifier32": 999_104,
    "classifier32_64": 999_104,
    "wrn40_4": 8_946_256,
    "resnet18": 11_168_832,
    "resnet34": 21_276_992,
    "cnn_small": 111_968,
    "resnet50": 23_508_032,
    "vit_b16": 85_798_656,
}

# (name, input px) -> (g, D) of the [B,g,g,D] feature map.
MAP_SHAPES = {
    ("classifier32", 28): (4, 128), ("classifier32", 32): (4, 128),
    ("classifier32", 64): (8, 128), ("classifier32_64", 64): (8, 128),
    ("wrn40_4", 28): (7, 256), ("wrn40_4", 32): (8, 256), ("wrn40_4", 64): (16, 256),
    ("resnet18", 32): (4, 512), ("resnet18", 64): (8, 512),
    ("resnet34", 32): (4, 512),
    ("cnn_small", 28): (7, 96), ("cnn_small", 32): (8, 96),
    ("resnet50", 64): (2, 2048), ("vit_b16", 32): (2, 768),
}


def test_registry_holds_exactly_the_documented_names():
  assert set(BACKBONES) == set(PARAM_COUNTS)


def test_unknown_name_raises_value_error_listing_known_names():
  with pytest.raises(ValueError, match=r"unknown model 'vgg16'; known: .*wrn40_4"):
    get_backbone("vgg16")


def test_overrides_reach_the_module():
  model = get_backbone("wrn40_4", dropout_rate=0.3, bn_axis_name="data")
  assert (model.depth, model.widen, model.dropout_rate, model.bn_axis_name) == (40, 4, 0.3, "data")


def test_invalid_wrn_depth_rejected():
  with pytest.raises(ValueError, match="6n\\+4"):
    get_backbone("wrn40_4", depth=41)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_matches_pytorch_original(name):
  variables, _ = _abstract_variables(get_backbone(name), 32)
  assert _count(variables["params"]) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name,size", sorted(MAP_SHAPES))
def test_feature_map_shape(name, size):
  model = get_backbone(name)
  variables, x = _abstract_variables(model, size)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  g, d = MAP_SHAPES[(name, size)]
  assert out.shape == (2, g, g, d)
  assert model.feature_dim == d


def test_single_channel_input_accepted():
  """Grey-scale digits/MNIST go in as [B,H,W,1]; only the stem's input width changes."""
  model = get_backbone("classifier32")
  variables, x = _abstract_variables(model, 28, channels=1)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out.shape == (2, 4, 4, 128)
  assert _count(variables["params"]) == PARAM_COUNTS["classifier32"] - 2 * 64 * 9


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_bfloat16_compute_keeps_float32_variables_and_returns_bfloat16(name):
  model = get_backbone(name, dtype=jnp.bfloat16)
  variables, x = _abstract_variables(model, 32)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                               rngs={"dropout": _key(1)}), variables, x)
  assert out.dtype == jnp.bfloat16
  # A backbone without batch norm (vit_b16) has no statistics to update.
  stats = {jnp.dtype(jnp.float32)} if "batch_stats" in variables else set()
  assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == stats


def test_bfloat16_forward_close_to_float32(cnn_small_variables):
  x = _images((4, 32, 32, 3))
  full = _apply(get_backbone("cnn_small"), cnn_small_variables, x, train=False)
  half = _apply(get_backbone("cnn_small", dtype=jnp.bfloat16), cnn_small_variables, x,
                train=False)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=0.1, rtol=0.05)


def test_train_mode_updates_batch_stats_with_pytorch_momentum(cnn_small_variables):
  """First BN after one step: running = 0.9 * init + 0.1 * batch statistic (PyTorch m=0.1)."""
  x = _images((8, 16, 16, 3))
  _, state = _apply(get_backbone("cnn_small"), cnn_small_variables, x, train=True,
                    mutable=["batch_stats", "intermediates"],
                    capture_intermediates=lambda mdl, _: mdl.name == "conv1")
  conv1 = np.asarray(state["intermediates"]["conv1"]["__call__"][0])
  stats = state["batch_stats"]["bn1"]
  np.testing.assert_allclose(stats["mean"], 0.1 * conv1.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv1.var((0, 1, 2)), rtol=1e-4)


def test_eval_mode_uses_running_stats_and_mutates_nothing(cnn_small_variables):
  model = get_backbone("cnn_small")
  variables = cnn_small_variables
  x = _images((8, 16, 16, 3))
  out, updates = _apply(model, variables, x, train=False, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])
  # Per-sample outputs in eval mode, batch-dependent outputs in train mode.
  np.testing.assert_allclose(out[:2], _apply(model, variables, x[:2], train=False),
                             rtol=1e-5, atol=1e-6)
  train_full, _ = _apply(model, variables, x, train=True, mutable=["batch_stats"])
  train_alone, _ = _apply(model, variables, x[:2], train=True, mutable=["batch_stats"])
  assert not np.allclose(train_full[:2], train_alone, atol=1e-3)


def test_classifier32_dropout_only_in_train(classifier32_variables):
  model, variables = get_backbone("classifier32"), classifier32_variables
  x = _images((2, 16, 16, 3))
  # Eval needs no dropout RNG and is deterministic.
  np.testing.assert_array_equal(_apply(model, variables, x, train=False),
                                _apply(model, variables, x, train=False))

  @functools.partial(jax.jit, static_argnums=1)
  def train(key, rate):
    out, _ = model.clone(dropout_rate=rate).apply(variables, x, train=True,
                                                  mutable=["batch_stats"], rngs={"dropout": key})
    return out

  same, other = _key(1), _key(2)
  np.testing.assert_array_equal(train(same, 0.2), train(same, 0.2))
  assert not np.allclose(train(same, 0.2), train(other, 0.2))
  assert not np.allclose(train(same, 0.2), train(same, 0.0))


def test_classifier32_dropout_drops_whole_channels(classifier32_variables):
  """Dropout2d: each (sample, channel) plane is all zero or all scaled by 1/(1-p)."""
  x = jnp.ones((16, 8, 8, 3))
  _, state = _apply(get_backbone("classifier32"), classifier32_variables, x, train=True,
                    rngs={"dropout": _key(3)}, mutable=["batch_stats", "intermediates"],
                    capture_intermediates=lambda mdl, _: isinstance(mdl, nn.Dropout))
  dropped = state["intermediates"]
  assert sorted(dropped) == ["dropout0", "dropout3", "dropout6"]
  planes = np.asarray(dropped["dropout0"]["__call__"][0]).transpose(0, 3, 1, 2).reshape(48, -1)
  kept = planes[:, 0] != 0
  np.testing.assert_allclose(planes[kept], 1.25)
  np.testing.assert_array_equal(planes[~kept], 0.0)
  assert 0 < (~kept).sum() < 48
  # Inside the network: LeakyReLU outputs are never exactly 0, so zeros mean dropped planes.
  zeros = np.asarray(dropped["dropout3"]["__call__"][0]) == 0
  assert np.all(zeros.all((1, 2)) | ~zeros.any((1, 2)))
  assert zeros.all((1, 2)).any()


@pytest.mark.slow
def test_wrn_dropout_runs_only_in_train():
  model = get_backbone("wrn40_4", depth=10, widen=1, dropout_rate=0.3)
  x = _images((2, 8, 8, 3))
  variables = _init(model, x)
  np.testing.assert_array_equal(_apply(model, variables, x, train=False),
                                _apply(model, variables, x, train=False))
  with pytest.raises(flax.errors.InvalidRngError):
    _apply(model, variables, x, train=True, mutable=["batch_stats"])
  train = jax.jit(lambda key: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": key})[0])
  assert not np.allclose(train(_key(1)), train(_key(2)))


def _kernels(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in flat
          if path[-1].key == "kernel"]


def _bn(params, field):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return np.concatenate([np.asarray(leaf) for path, leaf in flat if path[-1].key == field])


def test_classifier32_init_matches_arpl_weights_init(classifier32_variables):
  """ARPL: conv ~ N(0, 0.05), BN scale ~ N(1, 0.02), BN bias = 0."""
  params = classifier32_variables["params"]
  weights = np.concatenate([k.ravel() for _, k in _kernels(params)])
  assert abs(weights.std() - 0.05) < 0.001 and abs(weights.mean()) < 0.001
  scale = _bn(params, "scale")
  assert abs(scale.mean() - 1.0) < 0.003 and abs(scale.std() - 0.02) < 0.003
  np.testing.assert_array_equal(_bn(params, "bias"), 0.0)


def test_wrn_init_is_he_normal_fan_out():
  """CSSR's WRN: conv ~ N(0, 2 / (k*k*out_channels)), BN scale 1, bias 0."""
  params = _init(get_backbone("wrn40_4", depth=10, widen=2), jnp.zeros((1, 8, 8, 3)))["params"]
  for path, k in _kernels(params):
    expected = np.sqrt(2.0 / (k.shape[0] * k.shape[1] * k.shape[3]))
    if k.size > 2000:
      assert abs(k.std() / expected - 1) < 0.1, path
  np.testing.assert_array_equal(_bn(params, "scale"), 1.0)
  np.testing.assert_array_equal(_bn(params, "bias"), 0.0)


def test_resnet_init_is_pytorch_default_uniform():
  """CSSR's ResNet keeps PyTorch's default conv init: U(-b, b), b = 1/sqrt(fan_in)."""
  model = get_backbone("resnet18", stage_sizes=(1, 1), widths=(16, 32))
  params = _init(model, jnp.zeros((1, 8, 8, 3)))["params"]
  for path, k in _kernels(params):
    bound = 1.0 / np.sqrt(np.prod(k.shape[:3]))
    assert np.abs(k).max() <= bound, path
    if k.size > 2000:
      assert abs(k.std() / (bound / np.sqrt(3)) - 1) < 0.1, path
  np.testing.assert_array_equal(_bn(params, "scale"), 1.0)


def test_wrn_first_block_of_later_stages_feeds_raw_input_to_conv_and_shortcut():
  """CSSR's WRN quirk: stage 2/3 first blocks have no used pre-activation BN."""
  variables, _ = _abstract_variables(get_backbone("wrn40_4"), 32)
  params = variables["params"]
  assert "bn1" in params["stage1_block1"] and "shortcut" in params["stage1_block1"]
  assert "bn1" not in params["stage2_block1"] and "shortcut" in params["stage2_block1"]
  assert "bn1" in params["stage2_block2"] and "shortcut" not in params["stage2_block2"]


def _psum_axes(jaxpr):
  """Axes of every psum-like collective in a jaxpr, nested jaxprs included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name.startswith("psum"):
      yield tuple(eqn.params["axes"])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _psum_axes(inner)


def _mesh():
  return jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("name", ["classifier32", "wrn40_4", "resnet18", "resnet34", "cnn_small",
                                  "resnet50"])
def test_every_batchnorm_averages_over_bn_axis(name):
  """One cross-device mean per BN layer in the traced train step: none is left local."""
  model = get_backbone(name, bn_axis_name="data")
  variables, _ = _abstract_variables(model, 16)
  x = jax.ShapeDtypeStruct((8, 16, 16, 3), jnp.float32)

  def step(v, x):
    out, upd = model.apply(v, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": _key(0)})
    return out, upd["batch_stats"]

  sharded = jax.shard_map(step, mesh=_mesh(), in_specs=(P(), P("data")),
                          out_specs=(P("data"), P()))
  axes = list(_psum_axes(jax.make_jaxpr(sharded)(variables, x).jaxpr))
  n_bn = len(jax.tree.leaves(variables["batch_stats"])) // 2
  assert len(axes) == n_bn and set(axes) == {("data",)}


def test_syncbn_under_shard_map_equals_single_device_whole_batch(cnn_small_variables):
  x = _images((8, 8, 8, 3), seed=5) * 2.0 + 0.5
  x = x.at[:2].add(3.0)  # Shards differ, so per-device statistics would differ.
  single = get_backbone("cnn_small")
  variables = cnn_small_variables
  ref_out, ref = _apply(single, variables, x, train=True, mutable=["batch_stats"])

  def run(model, stats_spec):
    def step(v, x):
      out, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
      stats = upd["batch_stats"]
      if stats_spec == P("data"):
        stats = jax.tree.map(lambda a: a[None], stats)
      return out, stats
    return jax.jit(jax.shard_map(step, mesh=_mesh(), in_specs=(P(), P("data")),
                                 out_specs=(P("data"), stats_spec)))(variables, x)

  out, stats = run(get_backbone("cnn_small", bn_axis_name="data"), P())
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               stats, ref["batch_stats"])
  np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-4)
  # Control: without the axis name each device keeps its own, different, statistics.
  _, local = run(single, P("data"))
  assert not np.allclose(local["bn1"]["mean"][0], ref["batch_stats"]["bn1"]["mean"], atol=1e-3)
