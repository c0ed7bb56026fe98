"""CSSR: class-specific semantic reconstruction (Huang et al., TPAMI 2022), three variants.

Facts from xyzedd/CSSR (`methods/cssr.py`, `configs/{linear,pcssr,rcssr}.json`):

* `cssr` (linear): a bias-free 1x1 convolution D -> K times gamma = 1 gives the logit maps;
  the loss is CE on their spatial mean ("avg_softmax"); the score is the max softmax
  probability (config score R[4], no standardisation).
* `pcssr` / `rcssr`: one auto-encoder per class on the feature map, each two bias-free 1x1
  convolutions D -> 64 (tanh) -> D (the released configs have no hidden layers);
  reconstruction error e_k = sum over channels |AE_k(x) - x| (L1) at every location;
  logit map_k = -gamma * e_k (pcssr) or +gamma * e_k (rcssr, reciprocal), gamma = 0.1,
  clipped to [-100, 100]. Probabilities are the spatial mean of the per-location softmax
  ("softmax_avg") and the loss is -log p_y; `logits` here is log p, so plain CE on it is
  exactly that loss and argmax/MSP are CSSR's prediction and max probability.
* The score ('cssr', pcssr/rcssr only) is the sum of three raw scores, each standardised
  with its mean and (population) std over the training set:
    S0  pcssr: spatial mean of map_pred / r^2, rcssr: spatial mean of map_pred, where r is
        the channel mean of |x| at each location (configs' "R[0]/R[1]/R[1]" and "R[0]");
    S1  mean over channels and locations of proto[pred, c] * x (class prototypes: the mean
        of |x| over training images predicted as that class, normalised over classes per
        channel);
    S2  sum over channel pairs of G(x) * gram[pred], G(x)[c,c'] = (sum_s x_cs^8 x_c's^8)^(1/8)
        over locations s, gram[k] its mean over training images predicted k.
  CSSR computes prototypes on un-augmented training images but the standardising mean and
  std on augmented ones; here both come from un-augmented training images (`fit_score`).

Initialisers follow PyTorch's Conv2d default, U(+-1/sqrt(fan_in)) (models/layers.py). CAM
source: the logit map of each class, [B,g,g,K].
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from backmix_jax.frameworks.base import Framework
from backmix_jax.frameworks.losses import cross_entropy
from backmix_jax.frameworks.scores import get_score
from backmix_jax.models import layers

CLIP = 100.0   # CSSRClassifier.clip_len
GRAM_POWER = 8  # CSSRModel.powers
STD_EPS = 1e-8


def reconstruction_logit_maps(fmap, w_enc, w_dec, sign: float, gamma: float, dtype=jnp.float32):
  """Per-class auto-encoder logit maps.

  fmap [B,g,g,D], w_enc [K,D,L], w_dec [K,L,D] -> float32 [B,g,g,K]:
  clip(sign * gamma * sum_d |W_dec,k tanh(W_enc,k x) - x|_d, -CLIP, CLIP).
  """
  x = fmap.astype(dtype)
  latent = jnp.tanh(jnp.einsum("bhwd,kdl->bhwkl", x, w_enc.astype(dtype)))
  recon = jnp.einsum("bhwkl,kld->bhwkd", latent, w_dec.astype(dtype))
  # The error is a sum over D channels: float32 keeps low-precision compute from rounding it.
  err = jnp.sum(jnp.abs(recon.astype(jnp.float32) - fmap.astype(jnp.float32)[..., None, :]), -1)
  return jnp.clip(sign * gamma * err, -CLIP, CLIP)


def softmax_avg_logits(maps):
  """maps [B,g,g,K] -> [B,K] log of the spatial mean of the per-location softmax."""
  log_p = jax.nn.log_softmax(maps.astype(jnp.float32), axis=-1)
  g = maps.shape[1] * maps.shape[2]
  return jax.nn.logsumexp(log_p, axis=(1, 2)) - jnp.log(float(g))


class CSSRHead(nn.Module):
  """feature map [B,g,g,D] -> logits [B,K], class_maps [B,g,g,K], features [B,D] and
  feature_map [B,g,g,D] (all float32; the score needs the map).

  variant: 'linear' | 'pcssr' | 'rcssr'.
  """
  num_classes: int
  variant: str = "pcssr"
  gamma: float = 0.1
  latent: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fmap, train: bool):
    d, k = fmap.shape[-1], self.num_classes
    if self.variant == "linear":
      w = self.param("cls", layers.TORCH_DEFAULT, (d, k))
      maps = self.gamma * jnp.einsum("bhwd,dk->bhwk", fmap.astype(self.dtype),
                                     w.astype(self.dtype)).astype(jnp.float32)
      logits = maps.mean(axis=(1, 2))  # avg_softmax: CE on the mean of the logit maps
    else:
      # One auto-encoder per class: fan_in is each matrix's input side.
      w_enc = self.param("encoder", layers.TORCH_DEFAULT_STACKED, (k, d, self.latent))
      w_dec = self.param("decoder", layers.TORCH_DEFAULT_STACKED, (k, self.latent, d))
      sign = -1.0 if self.variant == "pcssr" else 1.0
      maps = reconstruction_logit_maps(fmap, w_enc, w_dec, sign, self.gamma, self.dtype)
      logits = softmax_avg_logits(maps)
    fmap32 = fmap.astype(jnp.float32)
    return dict(logits=logits, class_maps=maps, features=fmap32.mean(axis=(1, 2)),
                feature_map=fmap32)


def gram_features(fmap, power: int = GRAM_POWER):
  """fmap [B,g,g,D] -> float32 [B,D,D]: (sum_s x_cs^p x_c's^p)^(1/p), p even.

  Computed on x / max|x| and rescaled by max|x|^2 (exact for even p): x^16 alone overflows
  float32 once |x| exceeds ~250.
  """
  x = fmap.astype(jnp.float32).reshape(fmap.shape[0], -1, fmap.shape[-1])  # [B,S,D]
  scale = jnp.max(jnp.abs(x), axis=(1, 2), keepdims=True)
  safe = jnp.where(scale > 0, scale, 1.0)
  xp = (x / safe) ** power
  g = jnp.einsum("bsc,bsd->bcd", xp, xp) ** (1.0 / power)
  return g * jnp.square(safe)


def cssr_raw_scores(outputs: dict, variant: str, proto, gram):
  """The three un-standardised CSSR scores, float32 [B,3] (see module docstring).

  proto [K,D] class prototypes, gram [K,D,D] class Gram means.
  """
  maps, x = outputs["class_maps"], outputs["feature_map"]
  pred = jnp.argmax(outputs["logits"], axis=-1)
  cls_map = jnp.take_along_axis(maps, pred[:, None, None, None], axis=-1)[..., 0]  # [B,g,g]
  if variant == "pcssr":
    rep = jnp.mean(jnp.abs(x), axis=-1)
    # An all-zero feature (possible after ReLU) is reconstructed exactly, so its map is 0
    # too: count 0 for that 0/0, where CSSR (dividing as is) would get NaN.
    s0 = jnp.mean(jnp.where(rep > 0, cls_map / jnp.where(rep > 0, rep * rep, 1.0), 0.0),
                  axis=(1, 2))
  else:
    s0 = jnp.mean(cls_map, axis=(1, 2))
  s1 = jnp.mean(x * proto[pred][:, None, None, :], axis=(1, 2, 3))
  s2 = jnp.sum(gram_features(x) * gram[pred], axis=(1, 2))
  return jnp.stack([s0, s1, s2], axis=-1)


class CSSR(Framework):
  """CSSR family; `variant` picks linear, pcssr or rcssr (see module docstring)."""

  def __init__(self, variant: str = "pcssr"):
    if variant not in ("linear", "pcssr", "rcssr"):
      raise ValueError(f"unknown CSSR variant {variant!r}; choose linear, pcssr or rcssr")
    self.variant = variant
    self.name = "cssr" if variant == "linear" else variant
    self.gamma = 1.0 if variant == "linear" else 0.1
    if variant == "linear":
      self.default_score = "msp"
    else:
      # No 'energy': these logits are log-probabilities, whose logsumexp is 0 for every
      # input. ('mls' = log of 'msp': same ranking, kept for comparison tables.)
      self.default_score = "cssr"
      self.own_scores, self.excluded_scores = ("cssr",), frozenset({"energy"})

  def make_head(self, num_classes: int, dtype: Any) -> nn.Module:
    return CSSRHead(num_classes, variant=self.variant, gamma=self.gamma, dtype=dtype)

  def loss(self, outputs, labels, label_smoothing=0.0):
    # linear: CE of the mean logit map; pcssr/rcssr: -log of the mean softmax (logits = log p,
    # so log_softmax leaves them as they are and smoothing weighs log p of every class).
    return cross_entropy(outputs["logits"], labels, label_smoothing).mean(), {}

  def score(self, outputs, name="", state=None):
    name = self.check_score(name)
    if name != "cssr":
      return get_score(name)(outputs["logits"])
    if state is None:
      raise ValueError("the 'cssr' score needs training-set statistics: run fit_score first")
    raw = cssr_raw_scores(outputs, self.variant, state["proto"], state["gram"])
    return jnp.sum((raw - state["mean"]) / (state["std"] + STD_EPS), axis=-1)

  def fit_score(self, name, reduce_train):
    """Three inference passes over the training set: prototypes and Gram means per
    predicted class, then the mean and the std of the three raw scores.

    Returns dict(proto [K,D], gram [K,D,D], mean [3], std [3]) of float32 arrays.
    """
    if self.check_score(name) != "cssr":
      return None

    def class_sums(outputs, mask):
      x = outputs["feature_map"]
      onehot = jax.nn.one_hot(jnp.argmax(outputs["logits"], -1), outputs["logits"].shape[-1])
      onehot = onehot * mask[:, None]
      return dict(count=onehot.sum(0),
                  abs_feature=onehot.T @ jnp.mean(jnp.abs(x), axis=(1, 2)),
                  gram=jnp.einsum("bk,bcd->kcd", onehot, gram_features(jnp.abs(x))))

    sums = reduce_train(class_sums)
    count = sums["count"]
    seen = count > 0
    abs_feature = np.where(seen[:, None], sums["abs_feature"] / np.maximum(count, 1)[:, None], 0.0)
    total = abs_feature.sum(axis=0, keepdims=True)
    proto = np.divide(abs_feature, total, out=np.zeros_like(abs_feature), where=total > 0)
    gram = np.where(seen[:, None, None], sums["gram"] / np.maximum(count, 1)[:, None, None], 0.0)
    proto, gram = jnp.asarray(proto, jnp.float32), jnp.asarray(gram, jnp.float32)

    def raw_sums(outputs, mask):
      raw = cssr_raw_scores(outputs, self.variant, proto, gram)
      return dict(n=mask.sum(), s=jnp.where(mask[:, None], raw, 0.0).sum(0))

    first = reduce_train(raw_sums)
    mean = jnp.asarray(first["s"] / first["n"], jnp.float32)

    def squared_deviations(outputs, mask):
      # A separate pass around the mean: E[x^2] - E[x]^2 cancels badly for large scores.
      dev = cssr_raw_scores(outputs, self.variant, proto, gram) - mean
      return dict(ss=jnp.where(mask[:, None], jnp.square(dev), 0.0).sum(0))

    std = np.sqrt(reduce_train(squared_deviations)["ss"] / first["n"])
    return dict(proto=proto, gram=gram, mean=mean, std=jnp.asarray(std, jnp.float32))
