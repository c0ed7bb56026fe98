"""ImageNet ResNets of Bottleneck blocks in torchvision's layout: ResNet-50 and smaller kin.

torchvision's `models/resnet.py` (v1.5, facts read from it): stem = bias-free 7x7 conv,
stride 2, padding 3, to 64 channels, BN, ReLU, 3x3 max-pool stride 2 padding 1; four stages
(`layer1`..`layer4`) of Bottleneck blocks, planes 64/128/256/512, expansion 4 (outputs
256..2048), strides 1/2/2/2. A block is conv1x1-BN-ReLU, conv3x3(stride)-BN-ReLU (the stride
on the 3x3 conv: "v1.5"), conv1x1-BN, plus a shortcut (`downsample`: 1x1 conv with the
stride + BN, when the stride or the width changes), ReLU after the sum. BN at PyTorch
defaults (momentum 0.1 -> Flax 0.9, eps 1e-5). Init: Kaiming-normal fan-out convs, BN
scale 1, bias 0 (zero_init_residual=False). Maps: 224 px -> 7x7, 448 px -> 14x14,
32 px -> 1x1 (the stem and four stages divide by 32).

Module names mirror torchvision's state-dict names (`layer1_0` = `layer1.0`,
`downsample_0` = `downsample.0`), so `models/pretrained.py` maps weights by name alone.
`stage_sizes`, `planes`, `stem_width` and `expansion` shrink it for tests.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.models import layers


class _Bottleneck(nn.Module):
  """[B,H,W,Cin] -> [B,ceil(H/stride),ceil(W/stride),planes*expansion]."""
  planes: int
  expansion: int
  stride: int
  bn_axis_name: str | None
  dtype: Any

  def _conv_bn(self, x, train, width, kernel, stride, names):
    return layers.conv_bn(x, train, width, kernel, stride, init=layers.HE_FAN_OUT,
                          momentum=0.9, axis_name=self.bn_axis_name, dtype=self.dtype,
                          names=names)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out_width = self.planes * self.expansion
    out = jax.nn.relu(self._conv_bn(x, train, self.planes, 1, 1, ("conv1", "bn1")))
    out = jax.nn.relu(self._conv_bn(out, train, self.planes, 3, self.stride, ("conv2", "bn2")))
    out = self._conv_bn(out, train, out_width, 1, 1, ("conv3", "bn3"))
    if self.stride != 1 or x.shape[-1] != out_width:
      x = self._conv_bn(x, train, out_width, 1, self.stride, ("downsample_0", "downsample_1"))
    return jax.nn.relu(out + x)


class BottleneckResNet(nn.Module):
  """x [B,H,W,C] -> [B,ceil(H/32),ceil(W/32),planes[-1]*expansion], dtype `dtype`.

  Defaults are torchvision's ResNet-50 (D=2048).
  """
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  planes: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 64
  expansion: int = 4

  @property
  def feature_dim(self) -> int:
    return self.planes[-1] * self.expansion

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = layers.conv_bn(x.astype(self.dtype), train, self.stem_width, 7, 2,
                       init=layers.HE_FAN_OUT, momentum=0.9, axis_name=self.bn_axis_name,
                       dtype=self.dtype, names=("conv1", "bn1"))
    # Max-pooling pads with -inf, as torch's MaxPool2d(padding=1).
    x = nn.max_pool(jax.nn.relu(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (blocks, planes) in enumerate(zip(self.stage_sizes, self.planes)):
      for i in range(blocks):
        x = _Bottleneck(planes=planes, expansion=self.expansion,
                        stride=2 if stage > 0 and i == 0 else 1,
                        bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                        name=f"layer{stage + 1}_{i}")(x, train)
    return x
