"""A run built from its config: `build_run(config)` loads the data and derives, once, the
mesh, networks, optimiser, input stream, initial state and checkpoint signature. Training,
evaluation, trials, the mixing grid and the speed benchmark all start from one."""
from __future__ import annotations

import copy
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from backmix_jax import parallel
from backmix_jax.data import augment
from backmix_jax.data.openset import load_open_set
from backmix_jax.data.openset import OpenSetData
from backmix_jax.data.pipeline import TrainStream
from backmix_jax.data.core import ArraySplit
from backmix_jax.frameworks import Framework, get_framework
from backmix_jax.models import get_backbone
from backmix_jax.training import checkpointing, validate
from backmix_jax.training.optimizer import make_optimizer
from backmix_jax.training.records import log
from backmix_jax.training.state import TrainState, create_train_state, with_pretrained_backbone
from backmix_jax.training.teacher import load_teacher, teacher_config


@dataclasses.dataclass
class Run:
  """What one run is built from, derived from `config` and its data: what a train step, an
  evaluator or a checkpoint restore needs. It holds no training progress: trained states
  come from the loop or a checkpoint; `state` is the initial one, the template checkpoints
  are restored into."""
  config: object
  data: OpenSetData
  mesh: jax.sharding.Mesh
  framework: Framework
  train_model: nn.Module   # batch norm synchronised over the 'data' axis (inside shard_map)
  eval_model: nn.Module    # same parameters, no collective (plain jit)
  stream: TrainStream
  tx: optax.GradientTransformation
  state: TrainState     # freshly initialised (with the CAM teacher, if any), replicated
  signature: dict       # what a checkpoint must match (checkpointing.model_signature)
  fill: object = 0.0    # BackMix fill for make_train_step: float or float32 [C], backmix_fill

  @property
  def total_steps(self) -> int:
    return self.stream.steps_per_epoch * self.config.num_epochs

  def variables(self, state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def build_network(config, num_classes: int, framework: Framework, bn_axis_name) -> nn.Module:
  dtype = jnp.dtype(config.dtype)
  backbone = get_backbone(config.model, dtype=dtype, bn_axis_name=bn_axis_name)
  return framework.build_network(backbone, num_classes, dtype, bn_axis_name)


def backmix_fill(config, train: ArraySplit):
  """The value BackMix writes on masked pixels: config.backmix.fill (fill_mode='constant'), or
  with 'dataset_mean' the per-channel mean of the training images in normalised space,
  float32 [C], computed once on the host (normalisation is affine: the mean of the normalised
  images is the normalised mean pixel)."""
  b = config.backmix
  if b.fill_mode == "constant":
    return b.fill
  if b.fill_mode != "dataset_mean":
    raise validate.ConfigError(f"backmix.fill_mode={b.fill_mode!r} is unknown")
  mean = train.images.mean(axis=(0, 1, 2), dtype=np.float64)  # [C], on the 0..255 scale
  return np.asarray(augment.normalize(mean.astype(np.float32), config.data.normalize), np.float32)


def reader_config(config):
  """`config` as a reader of a run's checkpoints (evaluate, visualize, trials collecting)
  builds the run from: without the initial weights file, which the restored checkpoint
  replaces (its path is part of the schedule, which readers do not compare), so a trained
  run is read after that file has moved."""
  if not config.get("pretrained"):
    return config
  config = copy.deepcopy(config)
  config.pretrained = ""
  return config


def build_run(config, data: OpenSetData | None = None) -> Run:
  """The `Run` of `config`: its data (`data` given, or loaded per config.data), checked
  against the config, and every object derived from both. Raises DataError / ConfigError."""
  teacher = config.backmix.enabled and config.backmix.cam_source == "teacher"
  if teacher:
    teacher_config(config)  # a wrong teacher fails in a second, before the data is read
  data = load_open_set(config) if data is None else data
  validate.check_data(config, data)
  mesh = parallel.make_mesh(config.num_devices or None)
  framework = get_framework(config.framework)
  k = data.num_classes
  train_model = build_network(config, k, framework, parallel.DATA_AXIS)
  eval_model = build_network(config, k, framework, None)
  bank_mode = config.backmix.enabled and config.backmix.cam_source == "bank"
  stream = TrainStream(data.train, config.batch_size, config.seed, jax.process_index(),
                       jax.process_count(), partner_stream=bank_mode, backend=config.data.backend,
                       source=config.data.source, known_classes=data.known_classes,
                       workers=config.data.get("grain_workers", 0),
                       random_resized_crop=config.data.get("random_resized_crop", False),
                       cache_dir=config.data.get("cache_dir", ""))
  tx = make_optimizer(config.optimizer, stream.steps_per_epoch, config.num_epochs)
  sample = augment.normalize(jnp.asarray(data.train.images[:2]), config.data.normalize)
  bank_size = len(data.train) if bank_mode else 0
  init = jax.jit(lambda rng, x: create_train_state(eval_model, tx, rng, x, bank_size, framework),
                 out_shardings=parallel.replicated(mesh))
  state = init(jax.random.key(config.seed), sample)
  if config.get("pretrained"):
    state, report = with_pretrained_backbone(state, config.pretrained, tx)
    state = jax.device_put(state, parallel.replicated(mesh))
    log(f"weights {'; '.join(report)} (initial weights: a checkpoint, when resumed or "
        "evaluated, replaces them)")
  signature = checkpointing.model_signature(config, data.known_classes, data.train.images.shape[1:],
                                           bank_size)
  if teacher:
    state = state.replace(teacher=load_teacher(
        config, model=eval_model, framework=framework, mesh=mesh, sample=sample,
        signature=signature, train_size=len(data.train)))
  return Run(config, data, mesh, framework, train_model, eval_model, stream, tx, state, signature,
             backmix_fill(config, data.train))
