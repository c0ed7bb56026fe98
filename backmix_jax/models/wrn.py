"""Pre-activation WideResNet as CSSR ships it (`methods/wideresnet.py`, the FixMatch-PyTorch port).

Facts read from the original: 3x3 stem conv to 16 channels; three stages of (depth-4)/6 basic
blocks with widths 16k, 32k, 64k and strides 1, 2, 2; BN momentum 0.001 in PyTorch terms (0.999
in Flax), eps 1e-5; LeakyReLU(0.1); bias-free convs initialised N(0, 2/(3*3*out_channels))
(He normal, fan-out); BN scale 1, bias 0; a final BN + LeakyReLU; no pooling in the backbone.
CSSR's configs set projection_dim = -1, so no 1x1 projection follows. WRN-40-4: 256 channels,
8x8 map at 32 px.

Block data flow, kept exactly (it changes what the first conv of stages 2 and 3 sees):
  same width:            y = x + conv2(act(bn2(conv1(act(bn1(x))))))
  width change, stage 1: a = act(bn1(x));  y = shortcut(a) + conv2(act(bn2(conv1(a))))
  width change, stage 2+: y = shortcut(x) + conv2(act(bn2(conv1(x))))
In the last case PyTorch still evaluates bn1 and discards its output; that BN (parameters and
running statistics that nothing reads) is not built here.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.models import layers



class _Block(nn.Module):
  """One pre-activation basic block: [B,H,W,Cin] -> [B,H/stride,W/stride,width]."""
  width: int
  stride: int
  activate_before_residual: bool
  dropout_rate: float
  negative_slope: float
  bn_momentum: float
  bn_axis_name: str | None
  dtype: Any

  def _conv(self, width, kernel, stride, name):
    return layers.conv(width, kernel, stride, init=layers.HE_FAN_OUT, dtype=self.dtype,
                       name=name)

  def _bn(self, train, name):
    return layers.batch_norm(train, momentum=self.bn_momentum, axis_name=self.bn_axis_name,
                             dtype=self.dtype, name=name)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act = lambda v: jax.nn.leaky_relu(v, self.negative_slope)
    same_width = x.shape[-1] == self.width
    if same_width or self.activate_before_residual:
      pre = act(self._bn(train, "bn1")(x))
    else:
      pre = x
    if not same_width and self.activate_before_residual:
      x = pre
    out = self._conv(self.width, 3, self.stride, "conv1")(pre)
    out = act(self._bn(train, "bn2")(out))
    if self.dropout_rate > 0:
      out = nn.Dropout(self.dropout_rate, deterministic=not train)(out)
    out = self._conv(self.width, 3, 1, "conv2")(out)
    shortcut = x if same_width else self._conv(self.width, 1, self.stride, "shortcut")(x)
    return shortcut + out


class WideResNet(nn.Module):
  """WRN-depth-widen backbone: x [B,H,W,C] -> [B,ceil(H/4),ceil(W/4),64*widen], dtype `dtype`."""
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  depth: int = 40
  widen: int = 4
  dropout_rate: float = 0.0
  negative_slope: float = 0.1
  bn_momentum: float = 0.999

  def __post_init__(self):
    if (self.depth - 4) % 6 != 0 or self.depth < 10:
      raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {self.depth}")
    super().__post_init__()

  @property
  def feature_dim(self) -> int:
    return 64 * self.widen

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    blocks_per_stage = (self.depth - 4) // 6
    x = x.astype(self.dtype)
    x = layers.conv(16, 3, 1, init=layers.HE_FAN_OUT, dtype=self.dtype, name="conv1")(x)
    for stage, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2))):
      for i in range(blocks_per_stage):
        x = _Block(width=width * self.widen, stride=stride if i == 0 else 1,
                   activate_before_residual=stage == 0, dropout_rate=self.dropout_rate,
                   negative_slope=self.negative_slope, bn_momentum=self.bn_momentum,
                   bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                   name=f"stage{stage + 1}_block{i + 1}")(x, train)
    x = layers.batch_norm(train, momentum=self.bn_momentum, axis_name=self.bn_axis_name,
                          dtype=self.dtype, name="bn_final")(x)
    return jax.nn.leaky_relu(x, self.negative_slope)
