"""Softmax / cross-entropy: the plain classifier, scored by MSP, max logit or energy.

The class maps are the linear classifier applied at every location; their spatial mean
equals the classifier applied to the pooled feature, so logits and CAMs share weights.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from backmix_jax.frameworks.base import Framework
from backmix_jax.frameworks.losses import cross_entropy


class LinearClassMapHead(nn.Module):
  """feature map [B,g,g,D] -> logits [B,K], class_maps [B,g,g,K], features [B,D] (float32).

  Bias-free, as ARPL's classifier32 fc: a bias would add the same constant to every
  location and carry no spatial evidence.
  """
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fmap, train: bool):
    class_maps = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                          param_dtype=jnp.float32, name="fc")(fmap).astype(jnp.float32)
    return dict(logits=class_maps.mean(axis=(1, 2)), class_maps=class_maps,
                features=fmap.astype(jnp.float32).mean(axis=(1, 2)))


class Softmax(Framework):
  name = "softmax"
  default_score = "mls"

  def make_head(self, num_classes: int, dtype: Any) -> nn.Module:
    return LinearClassMapHead(num_classes, dtype=dtype)

  def loss(self, outputs, labels, label_smoothing=0.0):
    ce = cross_entropy(outputs["logits"], labels, label_smoothing).mean()
    return ce, {}
