"""Type and range checks of the numeric, count and cadence fields of a config.

`validate.problems` reports these with every other problem, before any data is read. Each
row below names a field and the values that make sense for it; outside them a run fails
late (a division by zero at the first progress line, a traceback in the data pipeline or
at step 2) or trains something meaningless (a negative momentum or learning-rate decay).
Fields a config does not have are skipped, and fields that have their own check elsewhere
in validate.py (batch sizes, epochs, BackMix ratios, enums) are not repeated here.
"""
from __future__ import annotations

import math
import numbers

from backmix_jax.training.fields import MISSING, is_int, lookup
from backmix_jax.training.workdir import RESUME_MODES

# Integer fields: field -> (smallest allowed, largest allowed or None).
INTEGERS = {
    "seed": (0, 2**63 - 1),          # jax.random.key takes a C long
    "num_devices": (0, None),        # 0: every device
    "data.image_size": (1, None),
    "data.crop_padding": (0, None),  # 0: no pad-crop
    "data.randaugment_n": (0, None),  # 0: no RandAugment
    "data.randaugment_m": (0, 30),    # their magnitude scale
    "data.grain_workers": (0, None),  # 0: no worker processes
    "log_every_steps": (1, None),
    "checkpoint_every_steps": (1, None),
    "keep_checkpoints": (1, None),   # the final checkpoint is always kept
    "max_skipped_steps": (1, None),
    "optimizer.warmup_epochs": (0, None),
    "optimizer.restarts": (0, None),
    "backmix.warmup_epochs": (0, None),
    "backmix.cam_grid": (0, None),   # 0: the network's grid
}

# Real fields: field -> (low, low included, high, high included); every value must be finite.
REALS = {
    "optimizer.learning_rate": (-math.inf, False, math.inf, False),  # > 0: validate.py
    "optimizer.momentum": (0.0, True, 1.0, False),
    "optimizer.weight_decay": (0.0, True, math.inf, False),
    "optimizer.decay": (0.0, False, math.inf, False),
    "optimizer.min_lr_ratio": (0.0, True, 1.0, True),
    "backmix.bank_momentum": (0.0, False, 1.0, True),
    "backmix.fill": (-math.inf, False, math.inf, False),
    "label_smoothing": (0.0, True, 1.0, False),  # with K classes < (K-1)/K: validate.py
}

BOOLS = ("data.flip", "data.random_resized_crop", "optimizer.nesterov", "backmix.enabled",
         "backmix.cam_batch_stats")

def _is_real(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low, low_in, high, high_in) -> str:
  if high == math.inf:
    return f">= {low}" if low_in else f"> {low}"
  return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def field_problems(config) -> list[str]:
  """One sentence per field of INTEGERS, REALS, BOOLS, known_classes, optimizer.milestones,
  data.channels and resume whose value is of the wrong type or out of range."""
  out = []
  for key, (low, high) in INTEGERS.items():
    value = lookup(config, key, MISSING)
    if value is MISSING:
      continue
    if not is_int(value) or value < low or (high is not None and value > high):
      bound = f">= {low}" if high is None else f"in {low}..{high}"
      out.append(f"{key} must be an integer {bound}, got {value!r}")
  for key, (low, low_in, high, high_in) in REALS.items():
    value = lookup(config, key, MISSING)
    if value is MISSING:
      continue
    if not _is_real(value) or not math.isfinite(value):
      out.append(f"{key} must be a finite number, got {value!r}")
    elif not ((low < value or (low_in and value == low))
              and (value < high or (high_in and value == high))):
      out.append(f"{key} must be {_interval(low, low_in, high, high_in)}, got {value!r}")
  for key in BOOLS:
    value = lookup(config, key, MISSING)
    if value is not MISSING and not isinstance(value, bool):
      out.append(f"{key} must be True or False, got {value!r}")
  channels = lookup(config, "data.channels", MISSING)
  if channels is not MISSING and (not is_int(channels) or channels not in (0, 1, 3)):
    out.append(f"data.channels must be 0 (keep the source's), 1 or 3, got {channels!r}")
  milestones = lookup(config, "optimizer.milestones", MISSING)
  if milestones is not MISSING and (
      not isinstance(milestones, (list, tuple))
      or not all(_is_real(m) and math.isfinite(m) and m >= 0 for m in milestones)):
    out.append(f"optimizer.milestones must be a list of epochs >= 0, got {milestones!r}")
  known = lookup(config, "known_classes", MISSING)
  if known is not MISSING and known:
    if isinstance(known, str) or not all(is_int(c) and c >= 0 for c in known):
      out.append(f"known_classes must be class ids (integers >= 0), got {known!r}")
    elif len(known) < 2:
      out.append(f"known_classes needs at least 2 classes (with one, every sample is that "
                 f"class: the loss is 0 and nothing is learned), got {list(known)}")
  resume = lookup(config, "resume", MISSING)
  if resume is not MISSING and resume not in RESUME_MODES:
    out.append(f"resume={resume!r} is not one of {', '.join(RESUME_MODES)}")
  return out
