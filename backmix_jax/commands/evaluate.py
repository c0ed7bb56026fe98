"""Evaluate a saved checkpoint of a training run: open-set metrics, a markdown table, plots.

`evaluate_checkpoint` restores the newest checkpoint (or a given step) into the model the
config describes, checks that the config is the run the workdir trained, and runs the
evaluators training runs (`train.evaluate_run`), writing metrics.json, metrics.md,
eval_outputs.npz, roc.png, score_histogram.png and oscr.png. Only the final checkpoint's
default evaluation uses those names (it reproduces training's own record); any other adds a
suffix (`output_tag`: _step<N>, _arpl, _unknown) so it never overwrites it.
`python -m experiments.evaluate` is this function behind flags; trials use it too.
"""
from __future__ import annotations

import json
import os

from backmix_jax.evaluation import report
from backmix_jax.evaluation.evaluators import build_evaluators, other_tables
from backmix_jax.training import identity, validate
from backmix_jax.training.checkpointing import Checkpointer, CheckpointError
from backmix_jax.training.records import log
from backmix_jax.training.run import build_run, reader_config
from backmix_jax.training.train import evaluate_run, run_record
from backmix_jax.training.workdir import (CONFIG, HISTORY, IDENTITY, WorkdirError,
                                          checkpoint_steps, trained_config)


def check_trained_config(config, workdir: str):
  """Raise CheckpointError when `config` is not the run the workdir trained: its run
  identity (training/identity.py: data, classes, input preparation, network) differs from
  that of the config training recorded (config.json, or history.jsonl's newest entry after
  a resume=override). The checkpoint's model signature holds shapes only, so a checkpoint
  of another class split or normalisation would restore without complaint and give
  meaningless (or mislabelled) metrics. No recorded config: nothing to check."""
  saved, path = trained_config(workdir)
  if saved is None:
    return
  changed = identity.run_differences(saved, config)
  if changed:
    diffs = [f"{key}={trained!r} in training, {given!r} here"
             for key, (trained, given) in changed.items()]
    raise CheckpointError(f"{workdir} was trained with another config ({'; '.join(diffs)}); "
                          f"leave out --config to evaluate with the training config ({path})")


def check_out(out: str, workdir: str, record: dict):
  """Raise WorkdirError when `out` (evaluate --out) is another run's: it holds a workdir's
  record (identity.json, config.json, history.jsonl, checkpoints/) or a metrics*.json whose
  `run` block differs from `record` (this evaluation's, `train.run_record`) in anything but
  arpl_compat. A new or empty directory, the workdir itself, or one holding evaluations of
  the same run is fine. Checked before anything is written, so nothing is overwritten."""
  if not out or not os.path.isdir(out) or os.path.realpath(out) == os.path.realpath(workdir):
    return
  names = sorted(os.listdir(out))
  found = [n for n in (IDENTITY, CONFIG, HISTORY, "checkpoints") if n in names]
  if found:
    raise WorkdirError(f"--out {out} holds another run's record ({', '.join(found)}); this "
                       "evaluation would overwrite its metrics: choose a new or empty "
                       "directory, or one holding evaluations of this run only")
  mine = {k: v for k, v in record.items() if k != "arpl_compat"}
  for name in names:
    if not (name.startswith("metrics") and name.endswith(".json")):
      continue
    try:
      with open(os.path.join(out, name)) as f:
        theirs = json.load(f).get("run") or {}
    except (OSError, ValueError, AttributeError):
      theirs = {}
    changed = identity.differences(mine, theirs) if theirs else {}
    if not theirs or changed or set(mine) - set(theirs):
      what = (", ".join(f"{k} {b!r} there, {a!r} here" for k, (a, b) in changed.items())
              or "no run record to compare with")
      raise WorkdirError(f"--out {out} holds metrics of another run ({name}: {what}); this "
                         "evaluation would mix with or overwrite them: choose a new or empty "
                         "directory, or one holding evaluations of this run only")


def output_tag(step: int, total_steps: int, *, arpl_compat: bool = False,
               unknown: bool = False) -> str:
  """Suffix of the files an evaluation writes: '' only for the final checkpoint's default
  evaluation (the record training wrote itself), so other evaluations never overwrite it."""
  return ("" if step == total_steps else f"_step{step}") + ("_arpl" if arpl_compat else "") + (
      "_unknown" if unknown else "")


def evaluate_checkpoint(config, workdir: str, step: int | None = None, *,
                        arpl_compat: bool = False, run=None, unknown: str = "",
                        out: str = "") -> dict:
  """Restore checkpoint `step` (newest when None) of `workdir` and evaluate it.

  `run` (from `build_run(config)`) may be passed to reuse one already built. Runs the
  evaluators of config.evals (or, with `unknown`, the open-set evaluator and the extra
  unknown sets of that comma-separated list of source specs), writes the files of
  `train.evaluate_run` in `out` (default `workdir`) under the suffix of `output_tag`, and
  returns its metrics.

  Raises:
    CheckpointError: no checkpoint in `workdir`, no checkpoint at `step`, one of a model
      other than the one `config` describes, or one trained on other data
      (`check_trained_config`).
    ConfigError / DataError: as for training.
  """
  config = reader_config(config)  # the checkpoint's weights, not an initial weights file
  validate.check_config(config)
  # Checked before the data is loaded and the model initialised: these fail in a second.
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"no checkpoint in {workdir}; train first: python -m "
                          f"experiments.train --config ... --workdir {workdir}")
  if step is not None and step not in steps:
    raise CheckpointError(f"no checkpoint at step {step} in {workdir}; available: {steps}")
  check_trained_config(config, workdir)
  run = build_run(config) if run is None else run
  check_out(out, workdir, run_record(run))
  # Unknown sets are read before the checkpoint: a bad one fails in a second, nothing written.
  only = {"unknown_sets": dict(sources=unknown)} if unknown else None
  evaluators = build_evaluators(run, workdir, only=only,
                                overrides={"open_set": dict(arpl_compat=arpl_compat)})
  # Read-only: evaluation reports a damaged checkpoint, never moves it (training's job).
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, read_only=True)
  try:
    state, step = ckpt.restore(run.state, run.signature, step)
  finally:
    ckpt.close()
  d = run.data
  final = "final" if step == run.total_steps else f"of {run.total_steps}"
  log(f"eval   {config.dataset} {config.protocol} trial {config.trial}: checkpoint step "
      f"{step} ({final}) in {workdir} | {config.model} + {config.framework}, score "
      f"{config.score or run.framework.default_score} | test known {len(d.test_known)} + "
      f"unknown {len(d.test_unknown)} samples | metrics "
      f"{'ARPL-compatible' if arpl_compat else 'exact'}")
  tag = output_tag(step, run.total_steps, arpl_compat=arpl_compat, unknown=bool(unknown))
  directory = out or workdir
  metrics = evaluate_run(run, state, directory, evaluators=evaluators, tag=tag)
  log(f"wrote metrics{tag}.json, metrics{tag}.md, eval_outputs{tag}.npz and plots in "
      f"{directory}\n")
  log(report.evaluation_markdown(metrics))
  for table in other_tables(evaluators, metrics):  # --unknown, the SSB's difficulties, ...
    log(table)
  return metrics
