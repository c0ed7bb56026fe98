"""ARPL: adversarial reciprocal points (Chen et al., TPAMI 2021), scored by the max logit.

Facts from iCGY96/ARPL (`loss/ARPLoss.py`, `loss/Dist.py`, `core/test.py`): one learnable
reciprocal point per class, P [K,D], initialised 0.1 * N(0,1); for the pooled feature f,
logit_k = ||f - P_k||^2 / D - f.P_k (squared distance averaged over the D dimensions, minus
the dot product); loss = CE(logits / T) + 0.1 * max(0, d_y - R + 1), the margin-ranking term
between the feature's distance to its own class's point, d_y = mean_d (f - P_y)^2, and a
learnable radius R (initialised 0); T = 1. Points and radius are trained by the same
optimiser as the network. The open-set score is the largest logit.

CAM source: the same logit formula applied to the feature at every location of the map
(`arpl_logits` broadcasts over leading axes), [B,g,g,K]. Its spatial mean is not the
pooled-feature logit (the distance is quadratic), but both rank classes per location alike.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from backmix_jax.frameworks.base import Framework
from backmix_jax.frameworks.losses import cross_entropy


def arpl_logits(features: jax.Array, points: jax.Array) -> jax.Array:
  """features [..., D], points [K,D] -> float32 [..., K]: ||f - p||^2 / D - f.p."""
  f = features.astype(jnp.float32)
  p = points.astype(jnp.float32)
  dot = f @ p.T
  # Expanded form, as Dist.py: one matmul instead of a [..., K, D] difference tensor.
  sq_dist = jnp.sum(f * f, axis=-1, keepdims=True) - 2.0 * dot + jnp.sum(p * p, axis=-1)
  return sq_dist / f.shape[-1] - dot


def arpl_loss(logits: jax.Array, features: jax.Array, points: jax.Array, radius: jax.Array,
              labels: jax.Array, *, temperature: float = 1.0, weight_pl: float = 0.1,
              margin: float = 1.0, label_smoothing: float = 0.0) -> tuple[jax.Array, dict]:
  """ARPL's loss. logits [B,K], features [B,D], points [K,D], radius [], labels int [B].

  Returns (CE(logits/T) + weight_pl * mean(max(0, d_y - R + margin)), extras); the CE term
  smoothed by `label_smoothing` (as Vaze et al.'s ARPLoss; the margin term is unchanged).
  """
  ce = cross_entropy(logits / temperature, labels, label_smoothing).mean()
  own = points[labels].astype(jnp.float32)
  d_known = jnp.mean(jnp.square(features.astype(jnp.float32) - own), axis=-1)
  # torch MarginRankingLoss(x1=R, x2=d, y=1): max(0, -(R - d) + margin), mean over the batch.
  margin_loss = jnp.mean(jnp.maximum(0.0, d_known - radius + margin))
  return ce + weight_pl * margin_loss, dict(ce=ce, margin_loss=margin_loss)


class ARPLHead(nn.Module):
  """feature map [B,g,g,D] -> logits [B,K], class_maps [B,g,g,K], features [B,D] (float32),
  plus the head's own points [K,D] and radius [] (the loss needs them)."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fmap, train: bool):
    d = fmap.shape[-1]
    points = self.param("points", lambda k, s: 0.1 * jax.random.normal(k, s, jnp.float32),
                        (self.num_classes, d))
    radius = self.param("radius", nn.initializers.zeros, (), jnp.float32)
    features = fmap.astype(jnp.float32).mean(axis=(1, 2))
    return dict(logits=arpl_logits(features, points), class_maps=arpl_logits(fmap, points),
                features=features, points=points, radius=radius)


class ARPL(Framework):
  name = "arpl"
  default_score = "mls"
  temperature = 1.0
  weight_pl = 0.1

  def make_head(self, num_classes: int, dtype: Any) -> nn.Module:
    return ARPLHead(num_classes, dtype=dtype)

  def loss(self, outputs, labels, label_smoothing=0.0):
    return arpl_loss(outputs["logits"], outputs["features"], outputs["points"], outputs["radius"],
                     labels, temperature=self.temperature, weight_pl=self.weight_pl,
                     label_smoothing=label_smoothing)
