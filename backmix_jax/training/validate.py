"""Config checks that run before any data is read or anything compiles.

Each problem becomes one sentence; all problems are reported together.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from backmix_jax import backmix, models
from backmix_jax.data import augment, composite, pipeline, randaugment, splits, staging
from backmix_jax.data.core import DataError
from backmix_jax.evaluation.evaluators import config_problems
from backmix_jax.frameworks import FRAMEWORKS
from backmix_jax.frameworks.losses import smoothing_problems
from backmix_jax.models import BACKBONES, get_backbone
from backmix_jax.training import optimizer, step
from backmix_jax.training.errors import ConfigError  # raised here; callers name validate's
from backmix_jax.training.field_checks import field_problems
from backmix_jax.training.fields import is_int, lookup


# Allowed values of the enum fields, each owned by the module that reads the field.
CHOICES = {
    "backmix.cam_source": backmix.CAM_SOURCES,
    "backmix.partner": backmix.PARTNERS,
    "backmix.placement": backmix.PLACEMENTS,
    "backmix.replace": backmix.REPLACES,
    "backmix.fill_mode": backmix.FILL_MODES,
    "backmix.train_on": step.TRAIN_ON,
    "backmix.cam_norm": backmix.CAM_NORMS,
    "data.normalize": augment.NORMALIZATIONS,
    "data.backend": pipeline.BACKENDS,
    "data.randaugment_ops": tuple(randaugment.OP_SETS),
    "optimizer.name": optimizer.OPTIMIZERS,
    "optimizer.schedule": optimizer.SCHEDULES,
    "nan_policy": step.NAN_POLICIES,
    "dtype": models.COMPUTE_DTYPES,
}


def problems(config) -> list[str]:
  """Every problem found in `config` (empty when it is usable)."""
  out = field_problems(config)
  for key, allowed in CHOICES.items():
    if lookup(config, key) not in allowed:
      out.append(f"{key}={lookup(config, key)!r} is not one of {', '.join(allowed)}")
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
  out.extend(config_problems(config))
  out.extend(pipeline.backend_problems(config.data.backend, config.data.source,
                                       config.data.get("random_resized_crop", False)))
  out.extend(staging.cache_problems(config.data.get("cache_dir", "")))
  if config.get("profile_steps", 0) < 0:
    out.append(f"profile_steps must be >= 0, got {config.profile_steps}")
  if config.num_epochs < 1:
    out.append(f"num_epochs must be >= 1, got {config.num_epochs}")
  out.extend(_restart_problems(config))
  b = config.backmix
  out.extend(f"backmix.{p}" for p in backmix.fraction_problems(b.fg_ratio, b.patch_frac,
                                                                b.mix_prob))
  out.extend(_backmix_mode_problems(b))
  if b.enabled and b.cam_source == "oracle" and config.data.get("randaugment_n", 0):
    out.append("data.randaugment_n > 0 with backmix.cam_source='oracle': the true masks would "
               "not follow RandAugment's rotations, shears, translations and cutouts; leave it 0")
  n_dev = config.num_devices or jax.device_count()
  if n_dev > jax.device_count():
    out.append(f"num_devices={n_dev} but only {jax.device_count()} devices exist")
  for key in ("batch_size", "eval_batch_size"):
    if config[key] < 1 or config[key] % n_dev:
      out.append(f"{key}={config[key]} must be a positive multiple of the {n_dev} devices")
  if not config.known_classes:
    try:
      splits.get_split(config.dataset, config.protocol, config.trial)
    except DataError as e:
      out.append(str(e))
  out.extend(_label_smoothing_problems(config))
  # The CAM-localisation evaluator reads cam_grid with BackMix off too.
  size = config.data.image_size
  if is_int(b.cam_grid) and b.cam_grid > 0 and is_int(size) and size >= 1 and size % b.cam_grid:
    out.append(f"backmix.cam_grid={b.cam_grid} does not divide the image side {size}")
  # Tracing the backbone needs a usable image side (field_problems names a bad one).
  if b.enabled and config.model in BACKBONES and is_int(config.data.image_size) \
     and config.data.image_size >= 1:
    out.extend(_backmix_geometry_problems(config))
  for key in ("source", "unknown_source"):
    kind, _, path = config.data.get(key, "").partition(":")
    if kind in ("npz", "folder") and not os.path.exists(path):
      out.append(f"data.{key} path {path!r} does not exist")
  pretrained = config.get("pretrained", "")
  if not isinstance(pretrained, str):
    out.append(f"pretrained must be the path of a weights file or '', got {pretrained!r}")
  elif pretrained and not os.path.isfile(pretrained):
    out.append(f"pretrained weights file {pretrained!r} does not exist (weights are never "
               "downloaded: give the path of a local file)")
  if config.data.get("source") == "composite":
    out.extend(composite.config_problems(config))
  return out


def _restart_problems(config) -> list[str]:
  """cosine_restarts needs cycles of at least one epoch, and its warm-up inside the first."""
  o = config.optimizer
  restarts, warm, epochs = o.get("restarts"), o.get("warmup_epochs"), config.num_epochs
  if o.schedule != "cosine_restarts" or not all(
      is_int(v) and v >= 0 for v in (restarts, warm, epochs)) or epochs < 1:
    return []  # field_problems and the num_epochs check name bad values
  cycle = epochs // (restarts + 1)
  if cycle < 1:
    return [f"optimizer.restarts={restarts} with num_epochs={epochs} leaves cycles of 0 epochs; "
            f"use at most {epochs - 1}"]
  if warm >= cycle:
    return [f"optimizer.warmup_epochs={warm} must be shorter than one cosine_restarts cycle "
            f"({cycle} epochs = num_epochs {epochs} // (restarts {restarts} + 1))"]
  return []


def _label_smoothing_problems(config) -> list[str]:
  """label_smoothing must leave the label the largest target weight with the run's K known
  classes (a value out of [0, 1) is named by field_problems; an unresolved split elsewhere)."""
  eps = config.get("label_smoothing", 0.0)
  if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
    return []
  known = config.known_classes
  if not known:
    try:
      known = splits.get_split(config.dataset, config.protocol, config.trial).known
    except DataError:
      return []
  if isinstance(known, str) or len(known) < 2:  # field_problems names it
    return []
  return smoothing_problems(eps, len(known))


def _backmix_geometry_problems(config) -> list[str]:
  """The CAM grid must tile the image and the patch must fit: checked on shapes only
  (jax.eval_shape traces the backbone without compiling or running it)."""
  size = config.data.image_size
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  backbone = get_backbone(config.model)
  fmap = jax.eval_shape(lambda x: backbone.init_with_output(
      {"params": jax.random.key(0), "dropout": jax.random.key(0)}, x, train=False)[0], x)
  grid = fmap.shape[1]
  out = []
  if size % grid:
    out.append(f"the {config.model} CAM grid {grid}x{grid} does not divide the image side {size}")
  out.extend(f"backmix {p}" for p in backmix.patch_problems(size, config.backmix.patch_frac))
  return out


def _backmix_mode_problems(b) -> list[str]:
  """Settings a BackMix mode would silently ignore are refused (the first value of each
  allowed tuple in backmix.py is the released default)."""
  out = [f"backmix.{p}" for p in backmix.mode_problems(b.placement, b.replace, b.num_patches)]
  if b.cam_source == "bank" and b.cam_grid:
    out.append(f"backmix.cam_grid={b.cam_grid!r} is not available with cam_source='bank' (the "
               "bank holds the network's grid); leave it 0")
  if b.cam_source == "bank" and b.partner != backmix.PARTNERS[0]:
    out.append(f"backmix.partner={b.partner!r} has no effect with cam_source='bank' (partners "
               f"come from the second data stream); leave it {backmix.PARTNERS[0]!r}")
  if b.cam_source == "oracle":
    if b.cam_norm != backmix.CAM_NORMS[0]:
      out.append(f"backmix.cam_norm={b.cam_norm!r} has no effect with cam_source='oracle'; "
                 f"leave it {backmix.CAM_NORMS[0]!r}")
    if b.cam_batch_stats:
      out.append("backmix.cam_batch_stats=True has no effect with cam_source='oracle'")
  if b.cam_source == "teacher":
    if not isinstance(b.teacher, str) or not b.teacher:
      out.append("backmix.cam_source='teacher' needs backmix.teacher, the workdir of a finished "
                 "run of the same data and network (e.g. this config with backmix.enabled=False)")
  elif b.teacher:
    out.append(f"backmix.teacher={b.teacher!r} has no effect unless cam_source='teacher'; "
               "leave it ''")
  if b.fill_mode == "dataset_mean" and b.fill != 0.0:
    out.append(f"backmix.fill={b.fill!r} has no effect with fill_mode='dataset_mean'; leave it 0")
  return out


def data_problems(config, data) -> list[str]:
  """Problems only the loaded data reveal (`data`: an OpenSetData)."""
  b = config.backmix
  if b.enabled and b.cam_source == "oracle" and data.train.masks is None:
    return [f"backmix.cam_source='oracle' needs true foreground masks, but the training data "
            f"of data.source={config.data.source!r} has none"]
  return []


def check_data(config, data):
  found = data_problems(config, data)
  if found:
    raise ConfigError("invalid config: " + "; ".join(found))


def check_config(config):
  found = problems(config)
  if found:
    raise ConfigError("invalid config: " + "; ".join(found))
