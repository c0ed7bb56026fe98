"""What a trained run is, as flat dicts of plain values: one definition shared by the
workdir record (training/workdir.py), evaluate's check of a checkpoint against the config it
is evaluated with, and the `run` block of metrics.json.

`run_identity`: what the weights mean: the data and classes they were trained on, how
inputs are prepared, the network and its head. A checkpoint is only meaningful under a
config with the same run identity.
`schedule_identity`: how they were trained: batch, epochs, optimiser, seed, the BackMix
block, augmentation, label smoothing, compute dtype and the pretrained weights file it
started from. Continuing a workdir under another schedule trains a different model than
either schedule alone would.

Neither holds evaluation, logging or checkpoint settings (evals, score, eval_batch_size,
log_every_steps, checkpoint_every_steps, keep_checkpoints, nan_policy, ...): those may change
between runs of one workdir.

Both take a ConfigDict or the plain dict of a saved config.json, and leave out fields the
config lacks (a config.json of an older version), so that records of any age compare.
Keys are dotted field names ("optimizer.learning_rate"), values plain JSON values.
"""
from __future__ import annotations

import numbers

from backmix_jax.data import splits
from backmix_jax.data.core import DataError
from backmix_jax.training.fields import MISSING, lookup

# Fields of the run identity. data.composite (the fore-/background diagnostic's own block)
# appears only in configs that have it.
RUN_FIELDS = ("dataset", "protocol", "trial", "known_classes", "data.source",
              "data.unknown_source", "data.image_size", "data.channels", "data.normalize",
              "data.composite", "model", "framework", "backmix.enabled")

# Fields of the schedule.
SCHEDULE_FIELDS = ("batch_size", "num_epochs", "optimizer", "seed", "backmix", "data.flip",
                   "data.random_resized_crop", "data.crop_padding", "data.randaugment_n",
                   "data.randaugment_m", "data.randaugment_ops", "dtype", "label_smoothing",
                   "pretrained")


def _plain(value):
  """ConfigDicts, tuples and NumPy scalars as the JSON values config.json holds, so that a
  live config and its saved copy compare equal."""
  if hasattr(value, "items"):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return value
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  return value


def _flat(config, fields) -> dict:
  """Dotted key -> value; a block contributes each of its fields, so a difference is named
  to the field ("optimizer.momentum"), not the block."""
  out = {}

  def put(key, value):
    if isinstance(value, dict) and value:
      for k, v in value.items():
        put(f"{key}.{k}", v)
    else:
      out[key] = value

  for key in fields:
    value = lookup(config, key, MISSING)
    if value is not MISSING:
      put(key, _plain(value))
  return out


def _known_classes(config):
  """The known class list the run trains on: config.known_classes, or when that is empty
  the split's list, so a run spelled out with its split's classes is the same run."""
  given = lookup(config, "known_classes", MISSING)
  if given is not MISSING and given:
    return _plain(given)
  try:
    split = splits.get_split(lookup(config, "dataset", MISSING),
                             lookup(config, "protocol", MISSING), lookup(config, "trial", MISSING))
  except (DataError, TypeError):  # the config check names a bad split; here: unresolved
    return []
  return [int(c) for c in split.known]


def run_identity(config) -> dict:
  """Dotted field -> value of what the trained weights are (see the module docstring)."""
  out = _flat(config, RUN_FIELDS)
  if "known_classes" in out:
    out["known_classes"] = _known_classes(config)
  return out


def schedule_identity(config) -> dict:
  """Dotted field -> value of how the weights were trained (see the module docstring)."""
  return _flat(config, SCHEDULE_FIELDS)


def full_identity(config) -> dict:
  """run_identity and schedule_identity together: what one workdir must keep."""
  return {**run_identity(config), **schedule_identity(config)}


def differences(recorded: dict, current: dict) -> dict:
  """Field -> (recorded, current) for the fields both hold with different values, in
  `recorded`'s order. A field only one side has (a record of an older version) is not a
  difference. The one comparison of identities and records: workdir.py, run_differences,
  and commands/trials.py (a metrics.json run block against `run_record`)."""
  return {k: (recorded[k], current[k]) for k in recorded
          if k in current and recorded[k] != current[k]}


def run_differences(saved, config, *, ignore=()) -> dict:
  """Field -> (saved's, config's) where the run identities of `saved` (the config a run was
  trained with, e.g. its config.json) and `config` differ, less the fields in `ignore`:
  empty when weights trained under `saved` mean the same under `config` (evaluating a
  checkpoint, loading a teacher)."""
  return {k: v for k, v in differences(run_identity(saved), run_identity(config)).items()
          if k not in ignore}


def run_record(config, *, known_classes=None, total_steps=None, arpl_compat=False) -> dict:
  """The `run` block of metrics.json (what was evaluated), from the run identity: dataset,
  protocol, trial, known_classes, model, framework, backmix (on/off), num_epochs,
  total_steps, arpl_compat. known_classes and total_steps are left out when not given, which
  is how experiments.trials builds the record a finished trial's metrics.json must match."""
  ident = run_identity(config)
  record = dict(dataset=ident["dataset"], protocol=ident["protocol"], trial=ident["trial"])
  if known_classes is not None:
    record["known_classes"] = [int(c) for c in known_classes]
  record.update(model=ident["model"], framework=ident["framework"],
                backmix=bool(ident["backmix.enabled"]), num_epochs=int(config["num_epochs"]))
  if total_steps is not None:
    record["total_steps"] = int(total_steps)
  record["arpl_compat"] = bool(arpl_compat)
  return record
