"""Backbones: images [B,H,W,C] (already normalised) -> last feature map [B,g,g,D].

Every backbone is a Flax Linen module called as `model.apply(variables, x, train=...)`:
  * fields `dtype` (compute dtype; parameters and batch statistics stay float32, the output
    has dtype `dtype`) and `bn_axis_name` (given to every BatchNorm, so that inside
    `jax.shard_map` over that axis batch statistics are averaged across devices; the axis must
    be bound whenever train=True);
  * returns the map after the final BN + activation: no pooling, no classifier head;
  * train=True uses batch statistics (collection 'batch_stats' must be mutable) and, where the
    model has dropout, the 'dropout' RNG stream; train=False needs neither;
  * `feature_dim` (property) = D.

Registry names and map sizes (g for 28 / 32 / 64 px input; 224 / 448 px for the ImageNet ones):
  classifier32     ARPL's classifier32, D=128, g=4 / 4 / 8
  classifier32_64  same network: ARPL runs classifier32 unchanged on 64 px TinyImageNet
  wrn40_4          CSSR's pre-activation WRN-40-4, D=256, g=7 / 8 / 16
  resnet18         CSSR's ResNet-18, D=512, g=4 / 4 / 8
  resnet34         CIFAR-style ResNet-34 (ReLU), D=512, g=4 / 4 / 8
  cnn_small        4-conv CNN for tests and quick runs, D=96, g=7 / 8 / 16
  resnet50         torchvision's ResNet-50 (v1.5), D=2048, g=1 / 1 / 2; 7 / 14
  vit_b16          timm's ViT-B/16 (patch tokens), D=768, g=1 / 2 / 4; 14 / 28

resnet50 and vit_b16 take pretrained weights from a local file (`pretrained.py`,
config.pretrained); their fields shrink them for tests (stage_sizes/planes/stem_width,
width/depth/num_heads/patch_size/image_size).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from backmix_jax.models.bottleneck_resnet import BottleneckResNet
from backmix_jax.models.classifier32 import Classifier32, CnnSmall
from backmix_jax.models.resnet import ResNet
from backmix_jax.models.vit import VisionTransformer
from backmix_jax.models.wrn import WideResNet

# config.dtype: the compute dtype (parameters and batch statistics stay float32).
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "classifier32": Classifier32,
    "classifier32_64": Classifier32,
    "wrn40_4": functools.partial(WideResNet, depth=40, widen=4),
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), negative_slope=0.0),
    "cnn_small": CnnSmall,
    "resnet50": BottleneckResNet,
    "vit_b16": VisionTransformer,
}


def get_backbone(name: str, *, dtype: Any = jnp.float32, bn_axis_name: str | None = None,
                 **overrides) -> nn.Module:
  """Build backbone `name`; `overrides` replace any of its fields (e.g. dropout_rate=0.3)."""
  if name not in BACKBONES:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(BACKBONES))}")
  return BACKBONES[name](dtype=dtype, bn_axis_name=bn_axis_name, **overrides)


__all__ = ["BACKBONES", "COMPUTE_DTYPES", "get_backbone", "BottleneckResNet", "Classifier32",
           "CnnSmall", "ResNet", "VisionTransformer", "WideResNet"]
