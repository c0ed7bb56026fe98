"""optimizer.schedule='cosine_restarts' (Vaze et al.'s cosine with warm restarts and warm-up):
its rate per epoch against a transcription of their PyTorch scheduler, constant within an
epoch, and the config checks of its cycle."""
import math

import numpy as np

from backmix_jax.training.optimizer import learning_rate_schedule
from backmix_jax.training.validate import problems
from tests.helpers import quick_config

LR, LO_RATIO, SPE = 0.1, 1e-3, 3


def vaze_rates(num_epochs, restarts, warmup):
  """Rate each epoch trains at in Vaze et al.'s loop: CosineAnnealingWarmupRestarts_New with
  T_0 = int(epochs / (restarts + 1)), eta_min = lr * 1e-3; the first epoch at eta_min, the
  warm-up rates, then scheduler.step(epoch=e) after epoch e sets the rate of epoch e + 1."""
  lo, t0 = LR * LO_RATIO, int(num_epochs / (restarts + 1))
  cos = lambda t: lo + (LR - lo) * (1 + math.cos(math.pi * t / t0)) / 2
  target = cos(warmup)
  warm = [lo + (target - lo) / warmup * (n + 1) for n in range(warmup)]
  rates = [lo]
  for e in range(num_epochs - 1):
    rates.append(warm[e] if e < warmup else cos(e % t0))
  return np.array(rates)


def rates_per_step(num_epochs, restarts, warmup):
  c = quick_config(**{"optimizer.schedule": "cosine_restarts", "optimizer.learning_rate": LR,
                      "optimizer.restarts": restarts, "optimizer.warmup_epochs": warmup,
                      "optimizer.min_lr_ratio": LO_RATIO})
  schedule = learning_rate_schedule(c.optimizer, SPE, num_epochs)
  return np.array([float(schedule(s)) for s in range(SPE * num_epochs)]).reshape(num_epochs, SPE)


def test_rates_at_the_warm_up_and_the_restart_boundaries():
  """24 epochs, 2 restarts: cycles of 8; warm-up over 3 epochs from lr/1000 to cos(3);
  full rate again at epochs 8 and 16; one rate per epoch."""
  r = rates_per_step(24, 2, 3)
  assert np.all(r == r[:, :1])  # constant within each epoch
  lo = LR * LO_RATIO
  cos = lambda t: lo + (LR - lo) * (1 + math.cos(math.pi * t / 8)) / 2
  np.testing.assert_allclose(r[:, 0], [lo, lo + (cos(3) - lo) / 3, lo + 2 * (cos(3) - lo) / 3]
                             + [cos(e % 8) for e in range(3, 24)], rtol=1e-5, atol=1e-8)
  assert r[8, 0] == r[16, 0] and abs(r[8, 0] - LR) < 1e-7 and r[7, 0] < 0.05 * LR


def test_matches_vaze_up_to_the_warm_up_then_lags_one_epoch():
  """Equal to their loop's rates for epochs 0..W; from W + 1 on theirs is ours of the epoch
  before (their scheduler is stepped with the finished epoch's index)."""
  ours = rates_per_step(30, 2, 4)[:, 0]
  theirs = vaze_rates(30, 2, 4)
  np.testing.assert_allclose(ours[:5], theirs[:5], rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(ours[4:-1], theirs[5:], rtol=1e-5, atol=1e-8)


def test_cycle_checks():
  """Cycles of >= 1 epoch; the warm-up inside the first cycle; other schedules unaffected."""
  bad = problems(quick_config(num_epochs=2, **{"optimizer.schedule": "cosine_restarts",
                                               "optimizer.restarts": 2}))
  assert any("leaves cycles of 0 epochs; use at most 1" in p for p in bad)
  bad = problems(quick_config(num_epochs=6, **{"optimizer.schedule": "cosine_restarts",
                                               "optimizer.warmup_epochs": 2}))
  assert any("warmup_epochs=2 must be shorter than one cosine_restarts cycle (2 epochs" in p
             for p in bad)
  assert problems(quick_config(num_epochs=6, **{"optimizer.warmup_epochs": 2})) == []
  assert any("optimizer.min_lr_ratio must be in [0.0, 1.0]" in p
             for p in problems(quick_config(**{"optimizer.min_lr_ratio": 2.0})))
