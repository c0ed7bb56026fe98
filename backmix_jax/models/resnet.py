"""CIFAR-style ResNets (3x3 stem, no max-pool): CSSR's ResNet-18 and a ResNet-34.

CSSR's `methods/resnet.py` (facts read from it): stem = bias-free 3x3 conv to 64 channels,
stride 1, BN, LeakyReLU (PyTorch default slope 0.01); four stages of basic blocks, widths
64/128/256/512, strides 1/2/2/2; a block is conv3x3(stride)-BN-LeakyReLU(0.01)-conv3x3-BN plus
a shortcut (1x1 conv + BN when the shape changes) followed by ReLU after the sum; BN at PyTorch
defaults (momentum 0.1 -> Flax 0.9, eps 1e-5). CSSR's configs set projection_dim = -1, so the
optional 1x1 projection is absent and the map has 512 channels: 64 px -> 8x8, 32 px -> 4x4.
No custom init: PyTorch's default conv init, U(+-1/sqrt(fan_in)) = variance scaling 1/3,
fan-in, uniform; BN scale 1, bias 0.

ResNet-34 (OOD benchmark) is the usual CIFAR ResNet-34: same layout with (3,4,6,3) blocks and
plain ReLU everywhere (slope 0). Any field can be overridden through the registry, e.g.
`conv_init='he_fan_out'` for torchvision's Kaiming-normal fan-out init.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.models import layers

CONV_INITS = {"torch_default": layers.TORCH_DEFAULT, "he_fan_out": layers.HE_FAN_OUT}


class _BasicBlock(nn.Module):
  """[B,H,W,Cin] -> [B,H/stride,W/stride,width]."""
  width: int
  stride: int
  negative_slope: float
  conv_init: str
  bn_momentum: float
  bn_axis_name: str | None
  dtype: Any

  def _conv_bn(self, x, train, kernel, stride, names):
    return layers.conv_bn(x, train, self.width, kernel, stride,
                          init=CONV_INITS[self.conv_init], momentum=self.bn_momentum,
                          axis_name=self.bn_axis_name, dtype=self.dtype, names=names)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = self._conv_bn(x, train, 3, self.stride, ("conv1", "bn1"))
    out = jax.nn.leaky_relu(out, self.negative_slope)
    out = self._conv_bn(out, train, 3, 1, ("conv2", "bn2"))
    if self.stride != 1 or x.shape[-1] != self.width:
      x = self._conv_bn(x, train, 1, self.stride, ("shortcut_conv", "shortcut_bn"))
    return jax.nn.relu(out + x)


class ResNet(nn.Module):
  """x [B,H,W,C] -> [B,H/(stem_stride*first_stride*8),...,512], dtype `dtype`.

  Defaults are CSSR's ResNet-18. stage_sizes=() gives the stem alone; stem=False the
  stages alone (input: a stem's output [B,H/stem_stride,...,widths[0]]).
  """
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  stem_stride: int = 1
  first_stride: int = 1
  negative_slope: float = 0.01
  conv_init: str = "torch_default"
  bn_momentum: float = 0.9
  stem: bool = True  # False: the input is already a stem's output (MEDAF's branches)

  def __post_init__(self):
    if self.conv_init not in CONV_INITS:
      raise ValueError(f"unknown conv_init {self.conv_init!r}; known: {sorted(CONV_INITS)}")
    super().__post_init__()

  @property
  def feature_dim(self) -> int:
    return self.widths[-1]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    if self.stem:
      x = layers.conv_bn(x, train, self.widths[0], 3, self.stem_stride,
                         init=CONV_INITS[self.conv_init], momentum=self.bn_momentum,
                         axis_name=self.bn_axis_name, dtype=self.dtype,
                         names=("stem_conv", "stem_bn"))
      x = jax.nn.leaky_relu(x, self.negative_slope)
    for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for i in range(blocks):
        stride = (self.first_stride if stage == 0 else 2) if i == 0 else 1
        x = _BasicBlock(width=width, stride=stride, negative_slope=self.negative_slope,
                        conv_init=self.conv_init, bn_momentum=self.bn_momentum,
                        bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                        name=f"stage{stage + 1}_block{i + 1}")(x, train)
    return x
