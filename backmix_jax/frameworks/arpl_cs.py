"""ARPL+CS: ARPL trained with confusing samples from a DCGAN (Chen et al., TPAMI 2021).

Facts from iCGY96/ARPL (`core/train.py` train_cs, `loss/ARPLoss.py`, `models/models.py`):
every step (1) updates the discriminator with BCE(D(real), 1) + BCE(D(G(z)), 0);
(2) updates the generator with BCE(D(G(z)), 1) + beta * F(G(z)); (3) updates the classifier
with the ARPL loss on the real batch + beta * F on fresh fakes G(z'), beta = 0.1. F is
`fake_loss`: exp(-mean entropy) of softmax over the squared-distance-to-reciprocal-point
logits ||f - P_k||^2 / D (no dot-product term). z ~ N(0,1) of size nz = 100; G and D are
DCGANs (ngf = ndf = 64) trained by Adam(2e-4, b1 0.5). The classifier sees fakes through a
second set of batch norms (classifier32ABN's MultiBatchNorm, bn_label 1: own running
statistics and own scale/bias), so fakes never touch the real images' statistics.

Here steps (1)-(3)'s GAN part is the framework's `auxiliary` (`ConfusingSamples`), run by
the train step before the classifier update; G, D, their optimisers and the second BN set
(its scale/bias, their optimiser state, its batch statistics) are the train state's `extra`,
the BN set swapped into the backbone for the fake forwards; the rest of the network (convs,
reciprocal points) is shared. G's images are in [0,1], like ARPL's
inputs: D sees real images in [0,1]; the classifier sees fakes normalised like real ones.
Inputs that are not 32 px are resized to and from the GAN's 32 px (ARPL's 32 px benchmarks
need none; for TinyImageNet ARPL uses 64 px variants of G and D, not built here).

Choices where ARPL has no counterpart or we differ: D's real images are the batch as loaded,
before BackMix and the on-device flip/crop. ARPL's D sees its loader's augmented batch, so
under the released BackMix (a dataset wrapper) it would see mixed images; here the mixing
is the classifier's regulariser only, and D learns what unmixed real images look like;
G and D compute in float32 whatever `config.dtype` is (they are small, and DCGAN training
is sensitive to precision). G and D are ARPL's `_netG32` / `_netD32` (models/gan.py, read
from a fork, DavidZha1994/ARPL-MRI, as iCGY96/ARPL's own copy was not available), with
D's final sigmoid folded into the loss.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import optax
from flax import traverse_util

from backmix_jax.frameworks.arpl import ARPL
from backmix_jax.frameworks.base import Auxiliary
from backmix_jax.parallel import DATA_AXIS
from backmix_jax.models import layers

GAN_SIZE = 32


def _bn(train: bool, axis_name):
  # PyTorch BatchNorm2d defaults, float32 like the rest of the GAN; DCGAN's N(1, 0.02) scales.
  return layers.batch_norm(train, momentum=0.9, axis_name=axis_name, dtype=jnp.float32,
                           scale_init=layers.normal(1.0, 0.02))


class Generator32(nn.Module):
  """DCGAN generator: z [B,1,1,nz] -> images [B,32,32,C] in [0,1] (sigmoid)."""
  channels: int
  ngf: int = 64
  bn_axis_name: Any = None

  @nn.compact
  def __call__(self, z, train: bool):
    init = layers.normal(0.0, 0.02)
    x = z
    # 1 -> 4 (kernel 4, no padding), then x2 per layer: 8, 16, 32.
    for i, mult in enumerate((8, 4, 2)):
      x = nn.ConvTranspose(self.ngf * mult, (4, 4), strides=(1, 1) if i == 0 else (2, 2),
                           padding="VALID" if i == 0 else "SAME", use_bias=False,
                           kernel_init=init)(x)
      x = nn.relu(_bn(train, self.bn_axis_name)(x))
    x = nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding="SAME", use_bias=False,
                         kernel_init=init)(x)
    return nn.sigmoid(x)


class Discriminator32(nn.Module):
  """ARPL's DCGAN discriminator: images [B,32,32,C] in [0,1] -> real/fake logits [B] (float32).

  Conv widths 2, 4, 8 x ndf (32 -> 16 -> 8 -> 4 px, batch norm from the second), a 4x4 conv
  to 16 x ndf channels and a sigmoid, then a linear layer to one logit.
  """
  ndf: int = 64
  bn_axis_name: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    init = layers.normal(0.0, 0.02)
    for i, mult in enumerate((2, 4, 8)):  # 32 -> 16 -> 8 -> 4
      x = nn.Conv(self.ndf * mult, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  use_bias=False, kernel_init=init)(x)
      if i:  # DCGAN: no batch norm on the first layer
        x = _bn(train, self.bn_axis_name)(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(self.ndf * 16, (4, 4), padding="VALID", use_bias=False, kernel_init=init)(x)
    x = nn.sigmoid(x).reshape(x.shape[0], -1)  # 4 -> 1 px: ARPL's average pool is a no-op
    # nn.Linear keeps PyTorch's default init (ARPL's weights_init touches convs and BN only).
    x = nn.Dense(1, kernel_init=layers.TORCH_DEFAULT,
                 bias_init=layers.torch_default_bias(x.shape[-1]))(x)
    # Logits: BCE on logits equals ARPL's final sigmoid + BCELoss, without its overflow.
    return x.reshape(x.shape[0]).astype(jnp.float32)


def fake_loss(features: jax.Array, points: jax.Array) -> jax.Array:
  """ARPL's confusing-sample term. features [B,D], points [K,D] -> scalar float32:
  exp(mean_b sum_k p_bk log p_bk), p = softmax(||f - P_k||^2 / D); 1/K at most entropy."""
  f = features.astype(jnp.float32)
  p = points.astype(jnp.float32)
  sq = jnp.sum(f * f, -1, keepdims=True) - 2.0 * f @ p.T + jnp.sum(p * p, -1)
  logp = jax.nn.log_softmax(sq / f.shape[-1], axis=-1)
  return jnp.exp(jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1)))


def bn_params(params: dict, batch_stats: dict) -> dict:
  """The scale/bias of every batch norm in `params` (those with entries in batch_stats)."""
  bn_paths = {k[:-1] for k in traverse_util.flatten_dict(batch_stats)}
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: v for k, v in flat.items() if k[:-1] in bn_paths})


def swap_bn_params(params: dict, bn: dict) -> dict:
  """params with the batch-norm scale/bias replaced by those in `bn` (differentiable)."""
  flat = traverse_util.flatten_dict(params)
  flat.update(traverse_util.flatten_dict(bn))
  return traverse_util.unflatten_dict(flat)


def _resize(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  if images.shape[1:3] == tuple(size):
    return images
  return jax.image.resize(images, (images.shape[0], *size, images.shape[-1]), "bilinear")


def _bce(logits: jax.Array, target: float) -> jax.Array:
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()


class ARPLCS(ARPL):
  """ARPL's head, loss and score; the GAN and the fake BN set are its `auxiliary`, their
  state TrainState.extra."""
  name = "arpl_cs"
  beta = 0.1
  nz = 100
  ngf = 64
  ndf = 64
  gan_learning_rate = 2e-4
  gan_b1 = 0.5

  def gan_tx(self) -> optax.GradientTransformation:
    return optax.adam(self.gan_learning_rate, b1=self.gan_b1)

  def gan(self, channels: int, axis_name=None) -> tuple[nn.Module, nn.Module]:
    return (Generator32(channels, self.ngf, bn_axis_name=axis_name),
            Discriminator32(self.ndf, bn_axis_name=axis_name))

  @property
  def auxiliary(self) -> "ConfusingSamples":
    return ConfusingSamples(self)


class ConfusingSamples(Auxiliary):
  """ARPL+CS's GAN steps, with the constants (beta, nz, G, D, their optimiser) of `fw`."""

  def __init__(self, fw: ARPLCS):
    self.fw = fw

  def init(self, rng, variables, sample_images, tx):
    fw = self.fw
    g, d = fw.gan(sample_images.shape[-1])
    k_g, k_d = jax.random.split(rng)
    g_vars = g.init(k_g, jnp.zeros((1, 1, 1, fw.nz), jnp.float32), train=False)
    d_vars = d.init(k_d, jnp.zeros((1, GAN_SIZE, GAN_SIZE, sample_images.shape[-1])), train=False)
    # The fake BN set starts as a copy of the real one (MultiBatchNorm initialises both alike).
    fake_bn = bn_params(variables["params"], variables.get("batch_stats", {}))
    gtx = fw.gan_tx()
    return dict(g_params=g_vars["params"], g_stats=g_vars["batch_stats"],
                g_opt=gtx.init(g_vars["params"]),
                d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
                d_opt=gtx.init(d_vars["params"]),
                fake_bn=fake_bn, fake_bn_opt=tx.init(fake_bn),
                fake_stats=variables.get("batch_stats", {}))

  def step(self, rng, extra, params, real_images, *, model, tx, normalize_fn):
    """Steps (1) D and (2) G of train_cs, and the gradient of (3)'s fake term.

    Runs on one device inside shard_map over 'data'. real_images uint8 [b,H,W,C];
    params: the classifier's parameters, device-varying (so returned gradients are this
    shard's own); normalize_fn: [0,1] float images -> the classifier's input scale.
    Returns (extra, gradient of beta * F w.r.t. params (not yet averaged), metrics).
    """
    fw = self.fw
    b, h, w, c = real_images.shape
    g, d = fw.gan(c, DATA_AXIS)
    gtx = fw.gan_tx()
    k_z1, k_z2, k_drop1, k_drop2 = jax.random.split(rng, 4)
    varying = lambda t: lax.pcast(t, DATA_AXIS, to="varying")
    real = _resize(real_images.astype(jnp.float32) / 255.0, (GAN_SIZE, GAN_SIZE))

    def generate(g_params, g_stats, key):
      z = jax.random.normal(key, (b, 1, 1, fw.nz), jnp.float32)
      fake, upd = g.apply({"params": g_params, "batch_stats": g_stats}, z, train=True,
                          mutable=["batch_stats"])
      return fake, upd["batch_stats"]

    def classify_fake(cls_params, fake_bn, fake_stats, fake, key):
      """beta-free F on fakes through the fake BN set; returns (F, new fake statistics)."""
      x = normalize_fn(_resize(fake, (h, w)))
      outputs, upd = model.apply({"params": swap_bn_params(cls_params, fake_bn),
                                  "batch_stats": fake_stats}, x, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": key})
      return fake_loss(outputs["features"], outputs["points"]), upd["batch_stats"]

    fake, g_stats = generate(extra["g_params"], extra["g_stats"], k_z1)

    # (1) D: real -> 1, detached fake -> 0, two separate batches as in train_cs.
    def d_loss_fn(d_params):
      out_r, upd = d.apply({"params": d_params, "batch_stats": extra["d_stats"]}, real,
                           train=True, mutable=["batch_stats"])
      out_f, upd = d.apply({"params": d_params, "batch_stats": upd["batch_stats"]},
                           lax.stop_gradient(fake), train=True, mutable=["batch_stats"])
      return _bce(out_r, 1.0) + _bce(out_f, 0.0), upd["batch_stats"]

    (loss_d, d_stats), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        varying(extra["d_params"]))
    d_grads = lax.pmean(d_grads, DATA_AXIS)
    d_upd, d_opt = gtx.update(d_grads, extra["d_opt"], extra["d_params"])
    d_params = optax.apply_updates(extra["d_params"], d_upd)

    # (2) G: fool the (just updated) D, and make fakes equidistant from every reciprocal
    # point. Same z and G as step (1), so G's statistics were already updated above.
    def g_loss_fn(g_params):
      fake_g, _ = generate(g_params, extra["g_stats"], k_z1)
      out, upd = d.apply({"params": d_params, "batch_stats": d_stats}, fake_g, train=True,
                         mutable=["batch_stats"])
      f, fake_stats = classify_fake(lax.stop_gradient(params), extra["fake_bn"],
                                    extra["fake_stats"], fake_g, k_drop1)
      return _bce(out, 1.0) + fw.beta * f, (upd["batch_stats"], fake_stats)

    (loss_g, (d_stats, fake_stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        varying(extra["g_params"]))
    g_grads = lax.pmean(g_grads, DATA_AXIS)
    g_upd, g_opt = gtx.update(g_grads, extra["g_opt"], extra["g_params"])
    g_params = optax.apply_updates(extra["g_params"], g_upd)

    # (3) the classifier's term on fresh fakes of the updated G; its gradient w.r.t. the
    # shared parameters joins the ARPL loss's, the fake BN set is stepped here.
    fake2, g_stats = generate(g_params, g_stats, k_z2)
    fake2 = lax.stop_gradient(fake2)

    def cls_fake_fn(cls_params, fake_bn):
      f, stats = classify_fake(cls_params, fake_bn, fake_stats, fake2, k_drop2)
      return fw.beta * f, (f, stats)

    (_, (f_cls, fake_stats)), (p_grads, bn_grads) = jax.value_and_grad(
        cls_fake_fn, argnums=(0, 1), has_aux=True)(params, varying(extra["fake_bn"]))
    bn_grads = lax.pmean(bn_grads, DATA_AXIS)
    bn_upd, fake_bn_opt = tx.update(bn_grads, extra["fake_bn_opt"], extra["fake_bn"])
    fake_bn = optax.apply_updates(extra["fake_bn"], bn_upd)

    new_extra = dict(g_params=g_params, g_stats=g_stats, g_opt=g_opt, d_params=d_params,
                     d_stats=d_stats, d_opt=d_opt, fake_bn=fake_bn, fake_bn_opt=fake_bn_opt,
                     fake_stats=fake_stats)
    metrics = dict(loss_d=loss_d, loss_g=loss_g, fake_loss=f_cls)
    return new_extra, p_grads, metrics
