"""Optimiser and learning-rate schedule from config.optimizer (epochs converted to steps)."""
from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "adam")                       # config.optimizer.name
SCHEDULES = ("multistep", "cosine", "constant")    # config.optimizer.schedule


def learning_rate_schedule(cfg, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
  """Step -> learning rate. multistep decays by cfg.decay at each epoch in cfg.milestones."""
  lr = cfg.learning_rate
  total = steps_per_epoch * num_epochs
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
