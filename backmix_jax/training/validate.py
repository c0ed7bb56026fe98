"""Config checks that run before any data is read or anything compiles.

Each problem becomes one sentence; all problems are reported together.
"""
from __future__ import annotations

import os

import jax


class ConfigError(ValueError):
  """The config cannot describe a valid run."""


CHOICES = {
    "backmix.cam_source": ("live", "bank"),
    "backmix.partner": ("permutation", "uniform"),
    "backmix.train_on": ("mix", "mix+clean"),
    "backmix.cam_norm": ("minmax", "relu", "softmax"),
    "data.normalize": ("cssr", "unit"),
    "data.backend": ("auto", "tf", "numpy"),
    "optimizer.name": ("sgd", "adam"),
    "optimizer.schedule": ("multistep", "cosine", "constant"),
    "nan_policy": ("stop", "skip_step"),
    "dtype": ("float32", "bfloat16", "float16"),
}


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def problems(config) -> list[str]:
  """Every problem found in `config` (empty when it is usable)."""
  from backmix_jax.frameworks import FRAMEWORKS
  from backmix_jax.models import BACKBONES
  out = []
  for key, allowed in CHOICES.items():
    if _get(config, key) not in allowed:
      out.append(f"{key}={_get(config, key)!r} is not one of {', '.join(allowed)}")
  if config.framework not in FRAMEWORKS:
    out.append(f"framework={config.framework!r} is unknown; known: {', '.join(sorted(FRAMEWORKS))}")
  elif config.score:
    scores = FRAMEWORKS[config.framework]().scores
    if config.score not in scores:
      out.append(f"score={config.score!r} is not a score of {config.framework}; choose from "
                 f"{', '.join(scores)}")
  if config.model not in BACKBONES:
    out.append(f"model={config.model!r} is unknown; known: {', '.join(sorted(BACKBONES))}")
  if not config.optimizer.learning_rate > 0:
    out.append(f"optimizer.learning_rate must be > 0, got {config.optimizer.learning_rate}")
  if config.num_epochs < 1:
    out.append(f"num_epochs must be >= 1, got {config.num_epochs}")
  b = config.backmix
  if not 0 < b.fg_ratio <= 1:
    out.append(f"backmix.fg_ratio must be in (0, 1], got {b.fg_ratio}")
  if not 0 < b.patch_frac <= 1:
    out.append(f"backmix.patch_frac must be in (0, 1], got {b.patch_frac}")
  if not 0 <= b.mix_prob <= 1:
    out.append(f"backmix.mix_prob must be in [0, 1], got {b.mix_prob}")
  n_dev = config.num_devices or jax.device_count()
  if n_dev > jax.device_count():
    out.append(f"num_devices={n_dev} but only {jax.device_count()} devices exist")
  for key in ("batch_size", "eval_batch_size"):
    if config[key] < 1 or config[key] % n_dev:
      out.append(f"{key}={config[key]} must be a positive multiple of the {n_dev} devices")
  if not config.known_classes:
    from backmix_jax.data import splits
    from backmix_jax.data.sources import DataError
    try:
      splits.get_split(config.dataset, config.protocol, config.trial)
    except DataError as e:
      out.append(str(e))
  if b.enabled and config.model in BACKBONES:
    out.extend(_backmix_geometry_problems(config))
  for key in ("source", "unknown_source"):
    kind, _, path = config.data.get(key, "").partition(":")
    if kind in ("npz", "folder") and not os.path.exists(path):
      out.append(f"data.{key} path {path!r} does not exist")
  return out


def _backmix_geometry_problems(config) -> list[str]:
  """The CAM grid must tile the image and the patch must fit: checked on shapes only
  (jax.eval_shape traces the backbone without compiling or running it)."""
  import jax.numpy as jnp
  from backmix_jax.models import get_backbone
  size = config.data.image_size
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  backbone = get_backbone(config.model)
  fmap = jax.eval_shape(lambda x: backbone.init_with_output(
      {"params": jax.random.key(0), "dropout": jax.random.key(0)}, x, train=False)[0], x)
  grid = fmap.shape[1]
  out = []
  if size % grid:
    out.append(f"the {config.model} CAM grid {grid}x{grid} does not divide the image side {size}")
  patch = round(config.backmix.patch_frac * size)
  if not 1 <= patch <= size:
    out.append(f"backmix patch side {patch} px does not fit a {size} px image")
  return out


def check_config(config):
  found = problems(config)
  if found:
    raise ConfigError("invalid config: " + "; ".join(found))
