"""The conv and batch-norm layers every backbone is built from, with PyTorch's conventions.

Bias-free convolutions with symmetric padding (k-1)//2 as nn.Conv2d(padding=k//2), float32
parameters whatever the compute dtype, and BatchNorm with eps 1e-5 whose statistics are
averaged over `axis_name` (SyncBN inside shard_map).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Conv2d's default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The same for a stack of weight matrices [n, in, out] (one per class): fan_in = in.
TORCH_DEFAULT_STACKED = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform",
                                                         batch_axis=0)


def torch_default_bias(fan_in: int):
  """torch.nn.Linear/Conv2d's default bias init: U(+-1/sqrt(fan_in)) of the layer's input."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def normal(mean: float, std: float):
  """Initializer drawing N(mean, std^2) in the requested dtype."""
  def init(key, shape, dtype=jnp.float32):
    return mean + std * jax.random.normal(key, shape, dtype)
  return init


def conv(width: int, kernel: int, stride: int, *, init, dtype: Any, name: str) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(width, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                 use_bias=False, kernel_init=init, dtype=dtype, param_dtype=jnp.float32,
                 name=name)


def batch_norm(train: bool, *, momentum: float, axis_name: str | None, dtype: Any,
               name: str | None = None, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  """PyTorch's BatchNorm2d (eps 1e-5) with flax's `momentum` (= 1 - torch's); name None lets
  a compact module number it (BatchNorm_0, ...)."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      scale_init=scale_init, axis_name=axis_name, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


def conv_bn(x: jax.Array, train: bool, width: int, kernel: int, stride: int, *, init,
            momentum: float, axis_name: str | None, dtype: Any, names: tuple[str, str],
            scale_init=nn.initializers.ones) -> jax.Array:
  """batch_norm(conv(x)), the pair the backbones stack: x [B,H,W,C] ->
  [B,ceil(H/stride),ceil(W/stride),width]. Call it inside a compact module's method: both
  layers become that module's submodules, named names = (conv's, batch norm's)."""
  x = conv(width, kernel, stride, init=init, dtype=dtype, name=names[0])(x)
  return batch_norm(train, momentum=momentum, axis_name=axis_name, dtype=dtype, name=names[1],
                    scale_init=scale_init)(x)
