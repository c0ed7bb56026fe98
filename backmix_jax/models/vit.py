"""Vision Transformer in timm's layout: ViT-B/16 and smaller kin.

timm's `models/vision_transformer.py` (`VisionTransformer`, class token, no registers,
facts read from it): `patch_embed.proj` = p x p conv with stride p and bias to D channels;
a learned `cls_token` [1,1,D] is prepended and a learned `pos_embed` [1,1+N,D] added;
`depth` pre-norm blocks, each x + attn(norm1(x)) then x + mlp(norm2(x)), with LayerNorm
eps 1e-6, fused `attn.qkv` (Linear D -> 3D with bias; output laid out as (3, heads,
head_dim)), softmax(q k^T / sqrt(head_dim)) v, `attn.proj` Linear D -> D, and `mlp.fc1`
(D -> mlp_ratio*D), exact (erf) GELU, `mlp.fc2`; a final `norm`. ViT-B/16: D=768, 12 blocks,
12 heads, MLP 3072, 224 px -> 14x14 patches.

The backbone contract asks for a map [B,g,g,D]: the output is the final-normed *patch*
tokens on their g x g grid (the class token is computed, and attends, but is not returned).
The framework heads pool that map, so the logits are those of timm's `global_pool='avg'`
over the patch tokens, and the CAM is the class map over patch tokens: the linear head
applied to every patch token, whose mean is the logit vector (docs/backbones.md).

`pos_embed` holds the grid of `image_size` (224: 14x14), as timm's: weights load unchanged,
and another input size resamples the grid's embeddings bicubically at every forward (as
timm's dynamic_img_size; jax.image.resize's Keys cubic, a=-0.5, where torch's has
a=-0.75). Module names mirror timm's state-dict names (`blocks_0` = `blocks.0`) so that
`models/pretrained.py` maps weights by name alone. Init as timm's default: Linear weights
truncated N(0, 0.02) and zero bias, pos_embed truncated N(0, 0.02), cls_token N(0, 1e-6).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.models import layers

_TRUNC = nn.initializers.truncated_normal(0.02)


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=_TRUNC, dtype=dtype, param_dtype=jnp.float32, name=name)


def _layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, name=name)


class _PatchEmbed(nn.Module):
  """[B,H,W,C] -> [B,H//patch,W//patch,width]: timm's `patch_embed.proj`, with bias."""
  width: int
  patch: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding="VALID",
                   kernel_init=layers.TORCH_DEFAULT, dtype=self.dtype, param_dtype=jnp.float32,
                   name="proj")(x)


class _Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection: [B,N,D] -> [B,N,D]."""
  num_heads: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, n, d = x.shape
    head_dim = d // self.num_heads
    qkv = _dense(3 * d, self.dtype, "qkv")(x).reshape(b, n, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]               # [B,N,H,hd]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * head_dim ** -0.5
    # Softmax in float32: bfloat16 logits lose the small differences between tokens.
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d)
    return _dense(d, self.dtype, "proj")(out)


class _Mlp(nn.Module):
  hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = jax.nn.gelu(_dense(self.hidden, self.dtype, "fc1")(x), approximate=False)
    return _dense(x.shape[-1], self.dtype, "fc2")(h)


class _Block(nn.Module):
  num_heads: int
  mlp_hidden: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + _Attention(self.num_heads, self.dtype, name="attn")(_layer_norm(self.dtype, "norm1")(x))
    return x + _Mlp(self.mlp_hidden, self.dtype, name="mlp")(_layer_norm(self.dtype, "norm2")(x))


class VisionTransformer(nn.Module):
  """x [B,H,W,C] -> patch tokens [B,H//patch_size,W//patch_size,width], dtype `dtype`.

  Defaults are ViT-B/16 at 224 px. No batch norm (`bn_axis_name` is accepted and unused)
  and no dropout, so train and eval forwards are the same.
  """
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  image_size: int = 224  # the grid pos_embed holds; other inputs resample it

  def __post_init__(self):
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not a multiple of num_heads {self.num_heads}")
    super().__post_init__()

  @property
  def feature_dim(self) -> int:
    return self.width

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    del train  # no batch norm, no dropout
    p = self.patch_size
    x = _PatchEmbed(self.width, p, self.dtype, name="patch_embed")(x.astype(self.dtype))
    b, gh, gw, d = x.shape
    cls = self.param("cls_token", layers.normal(0.0, 1e-6), (1, 1, d))
    g0 = self.image_size // p
    pos = self.param("pos_embed", _TRUNC, (1, 1 + g0 * g0, d))
    grid_pos = pos[:, 1:]
    if (gh, gw) != (g0, g0):
      grid_pos = jax.image.resize(grid_pos.reshape(1, g0, g0, d), (1, gh, gw, d), "bicubic",
                                  antialias=False).reshape(1, gh * gw, d)
    tokens = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(self.dtype),
                              x.reshape(b, gh * gw, d)], axis=1)
    tokens = tokens + jnp.concatenate([pos[:, :1], grid_pos], axis=1).astype(self.dtype)
    hidden = int(self.width * self.mlp_ratio)
    for i in range(self.depth):
      tokens = _Block(self.num_heads, hidden, self.dtype, name=f"blocks_{i}")(tokens)
    tokens = _layer_norm(self.dtype, "norm")(tokens)
    return tokens[:, 1:].reshape(b, gh, gw, d).astype(self.dtype)
