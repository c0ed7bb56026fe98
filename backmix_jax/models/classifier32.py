"""Plain conv-BN-activation stacks: ARPL's classifier32 and a small CNN for quick runs.

classifier32 follows ARPL's `models/models.py` (facts read from it): nine bias-free 3x3
convolutions 64-64-128s2 / 128-128-128s2 / 128-128-128s2, all padding 1, each followed by
BatchNorm (PyTorch defaults: momentum 0.1, eps 1e-5) and LeakyReLU(0.2); Dropout2d(0.2) on
the input and before the second and third stages. Init (`weights_init`): conv weights
N(0, 0.05), BN scale N(1, 0.02), BN bias 0. Maps: 32 px -> 4x4, 64 px -> 8x8 (ARPL uses this
same network for 64 px TinyImageNet; its adaptive average pool absorbs the larger map),
28 px -> 4x4. ARPL also builds a `bn10` that its forward never uses: it is left out here.

PyTorch BN momentum m is Flax momentum 1-m. Flax keeps the biased batch variance in the
running average where PyTorch keeps the unbiased one: the factor n/(n-1) is negligible for
n = batch x height x width.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.models import layers


class _ConvStack(nn.Module):
  """3x3 conv-BN-activation layers in a row, the i-th of width widths[i] and stride
  strides[i]: x [B,H,W,C] -> [B,ceil(H/prod(strides)),ceil(W/prod(strides)),widths[-1]].

  Channel dropout (Dropout2d) before the layers in `dropout_before`; activation
  LeakyReLU(negative_slope), ReLU at slope 0. Output has dtype `dtype` (the compute dtype);
  parameters and batch statistics are float32. Subclasses set the layout and `inits`.
  """
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  widths: Sequence[int] = ()
  strides: Sequence[int] = ()
  dropout_rate: float = 0.0
  dropout_before: Sequence[int] = ()
  negative_slope: float = 0.0
  bn_momentum: float = 0.9

  @property
  def feature_dim(self) -> int:
    return self.widths[-1]

  def inits(self):
    """(conv kernel initializer, batch-norm scale initializer)."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    conv_init, scale_init = self.inits()
    for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
      if i in self.dropout_before:
        # Dropout2d: one Bernoulli draw per (sample, channel), shared over H and W.
        x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train,
                       name=f"dropout{i}")(x)
      x = layers.conv_bn(x, train, width, 3, stride, init=conv_init, momentum=self.bn_momentum,
                         axis_name=self.bn_axis_name, dtype=self.dtype,
                         names=(f"conv{i + 1}", f"bn{i + 1}"), scale_init=scale_init)
      x = jax.nn.leaky_relu(x, self.negative_slope) if self.negative_slope else jax.nn.relu(x)
    return x


class Classifier32(_ConvStack):
  """ARPL's classifier32 without its pooling and fc: x [B,H,W,C] -> [B,ceil(H/8),ceil(W/8),128].

  Output has dtype `dtype` (the compute dtype); parameters and batch statistics are float32.
  """
  widths: Sequence[int] = (64, 64, 128, 128, 128, 128, 128, 128, 128)
  strides: Sequence[int] = (1, 1, 2, 1, 1, 2, 1, 1, 2)
  dropout_rate: float = 0.2
  # ARPL drops channels on the input and right before convs 4 and 7.
  dropout_before: Sequence[int] = (0, 3, 6)
  negative_slope: float = 0.2
  conv_std: float = 0.05

  def inits(self):
    return layers.normal(0.0, self.conv_std), layers.normal(1.0, 0.02)


class CnnSmall(_ConvStack):
  """A four-conv CNN (~112k parameters) for CPU tests and quick runs.

  x [B,H,W,C] -> [B,ceil(H/4),ceil(W/4),96]: 32 px -> 8x8, the BackMix bank's grid.
  Same conventions as Classifier32 (explicit padding 1, BN momentum 0.9) with ReLU, no
  dropout; He-normal fan-out conv init.
  """
  widths: Sequence[int] = (32, 64, 64, 96)
  strides: Sequence[int] = (1, 2, 1, 2)

  def inits(self):
    return layers.HE_FAN_OUT, nn.initializers.ones
