"""Optimiser and learning-rate schedule from config.optimizer (epochs converted to steps)."""
from __future__ import annotations

import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam")                       # config.optimizer.name
# config.optimizer.schedule. cosine_restarts: Vaze et al.'s cosine with warm restarts, one
# rate per epoch (see `cosine_restarts_schedule`).
SCHEDULES = ("multistep", "cosine", "constant", "cosine_restarts")


def cosine_restarts_schedule(learning_rate: float, steps_per_epoch: int, num_epochs: int, *,
                             restarts: int, min_lr_ratio: float,
                             warmup_epochs: int) -> optax.Schedule:
  """Step -> rate: cosine annealing with warm restarts and a linear warm-up, constant within
  an epoch (Vaze et al., sgvaze/osr_closed_set_all_you_need `utils/schedulers.py`
  CosineAnnealingWarmupRestarts_New, stepped once per epoch).

  With lo = min_lr_ratio * lr and cycles of T = num_epochs // (restarts + 1) epochs, epoch e
  trains at cos(e mod T), cos(t) = lo + (lr - lo)(1 + cos(pi t / T)) / 2, except that the
  first `warmup_epochs` W epochs ramp linearly from lo: lo + (e / W)(cos(W) - lo); the
  warm-up belongs to the first cycle. (Their loop steps the PyTorch scheduler with the
  finished epoch's index, so from epoch W + 1 on their rate is this one of the epoch before.)
  """
  lo = learning_rate * min_lr_ratio
  cycle = max(num_epochs // (restarts + 1), 1)

  def cos(t):
    return lo + (learning_rate - lo) * (1.0 + jnp.cos(jnp.pi * t / cycle)) / 2.0

  def schedule(step):
    epoch = jnp.asarray(step) // steps_per_epoch
    rate = cos((epoch % cycle).astype(jnp.float32))
    if warmup_epochs:
      ramp = lo + (cos(float(warmup_epochs)) - lo) * epoch.astype(jnp.float32) / warmup_epochs
      rate = jnp.where(epoch < warmup_epochs, ramp, rate)
    return rate

  return schedule


def learning_rate_schedule(cfg, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
  """Step -> learning rate. multistep decays by cfg.decay at each epoch in cfg.milestones."""
  lr = cfg.learning_rate
  total = steps_per_epoch * num_epochs
  if cfg.schedule == "cosine_restarts":
    # Its warm-up is part of the schedule (from the floor to the cycle's rate), not the
    # generic 0 -> lr ramp joined in front below.
    return cosine_restarts_schedule(lr, steps_per_epoch, num_epochs, restarts=cfg.restarts,
                                    min_lr_ratio=cfg.min_lr_ratio,
                                    warmup_epochs=int(cfg.warmup_epochs))
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "multistep":
    boundaries = {int(m * steps_per_epoch): cfg.decay for m in cfg.milestones if m < num_epochs}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total - cfg.warmup_epochs * steps_per_epoch, 1))
  else:
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
  warm = int(cfg.warmup_epochs * steps_per_epoch)
  if warm:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])
  return main


def make_optimizer(cfg, steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
  """SGD (PyTorch-style coupled weight decay) or Adam."""
  schedule = learning_rate_schedule(cfg, steps_per_epoch, num_epochs)
  decay = [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []
  if cfg.name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
  elif cfg.name == "adam":
    opt = optax.adam(schedule)
  else:
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose from {', '.join(OPTIMIZERS)}")
  return optax.chain(*decay, opt)
