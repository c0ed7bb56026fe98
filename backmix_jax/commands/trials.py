"""Train or collect the trials of a benchmark; mean +- std beside the published numbers.

Trial t runs in <workdir>/trial_<t> with config.trial = t (the split protocol's t-th class
list); with `baseline`, the same trials with BackMix off run in <workdir>/trial_<t>_plain.
A trial whose metrics.json is of the final step of the same run is collected as is; one
whose final checkpoint exists is evaluated; otherwise it is trained (resuming any
checkpoint) when `train` is set, or reported missing. `run_trials` writes trials.json and
trials.md in the workdir and, with `baseline`, ROC and OSCR plots of baseline vs BackMix.
`python -m experiments.trials` is `run_trials` behind flags.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re

import jax
import numpy as np

from backmix_jax.commands.evaluate import check_trained_config, evaluate_checkpoint
from backmix_jax.evaluation import plots, published, report
from backmix_jax.training import identity, validate
from backmix_jax.training.checkpointing import CheckpointError
from backmix_jax.training.records import log
from backmix_jax.training.run import build_run, reader_config
from backmix_jax.training.sweep import train_sweep
from backmix_jax.training.train import train_and_evaluate
from backmix_jax.training.workdir import checkpoint_steps


def parse_trials(spec: str, num_trials: int = 5) -> list[int]:
  """'0-4' / '0,2,4' / '0-1,3' -> sorted distinct trial ids in [0, num_trials).

  Raises ValueError naming the problem.
  """
  trials = set()
  for part in spec.replace(" ", "").split(","):
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
    if not m:
      raise ValueError(f"--trials={spec!r}: {part!r} is not a trial or a range like 0-4")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi:
      raise ValueError(f"--trials={spec!r}: empty range {part}")
    if hi >= num_trials:
      raise ValueError(f"--trials={spec!r}: trials are 0..{num_trials - 1}")
    trials.update(range(lo, hi + 1))
  return sorted(trials)


@dataclasses.dataclass(frozen=True)
class Method:
  key: str       # key in trials.json
  label: str     # table row label
  backmix: bool  # config.backmix.enabled
  suffix: str    # trial directory suffix


BACKMIX = Method("backmix", "BackMix", True, "")
PLAIN = Method("plain", "baseline (BackMix off)", False, "_plain")


def trial_config(config, trial: int, backmix: bool, seed: int | None = None):
  """A copy of `config` for trial `trial`, with BackMix on or off (and `seed`, if given)."""
  c = copy.deepcopy(config)
  c.trial = trial
  c.backmix.enabled = backmix
  if seed is not None:
    c.seed = seed
  return c


def trial_dir(workdir: str, trial: int, method: Method, seed: int | None = None) -> str:
  """<workdir>/trial_<t>[_plain], with --seeds <workdir>/trial_<t>[_plain]_seed<s>."""
  tail = "" if seed is None else f"_seed{seed}"
  return os.path.join(workdir, f"trial_{trial}{method.suffix}{tail}")


def final_metrics(config, directory: str) -> tuple[dict | None, str]:
  """(metrics of the final step of the run `config` describes, '') when `directory` holds
  them (exact mode), else (None, why not)."""
  path = os.path.join(directory, "metrics.json")
  if not os.path.exists(path):
    return None, "no metrics.json"
  try:
    with open(path) as f:
      metrics = json.load(f)
  except json.JSONDecodeError:  # e.g. cut short by a preemption: evaluate again
    return None, "metrics.json is unreadable"
  run = metrics.get("run")
  if run is None:
    return None, "metrics.json has no run record (written by an older version)"
  # The run block training writes (identity.run_record), less what only the built run knows.
  expect = identity.run_record(config, known_classes=config.known_classes or None)
  if config.score:
    run = dict(run, score=metrics.get("score"))
    expect["score"] = config.score
  # Every expected field must be there: one the record lacks compares as None.
  changed = identity.differences({k: run.get(k) for k in expect}, expect)
  if changed:
    k, (found, expected) = next(iter(changed.items()))
    return None, f"metrics.json is of another run ({k} {found!r}, expected {expected!r})"
  if metrics.get("step") != run["total_steps"]:
    return None, (f"metrics.json is of step {metrics.get('step')}, not the final step "
                  f"{run['total_steps']}")
  return metrics, ""


def collect_or_train(config, directory: str, *, train: bool) -> tuple[dict | None, str]:
  """(metrics of the final model, how they were obtained) or (None, why missing)."""
  metrics, why = final_metrics(config, directory)
  if metrics is not None:
    return metrics, "collected metrics.json"
  steps = checkpoint_steps(directory)
  if steps:
    reader = reader_config(config)  # the checkpoint's weights, not an initial weights file
    validate.check_config(reader)
    check_trained_config(reader, directory)  # another split's checkpoint: refuse, never relabel
    run = build_run(reader)
    if run.total_steps in steps:
      return (evaluate_checkpoint(reader, directory, run.total_steps, run=run),
              f"evaluated the final checkpoint ({why})")
    why = f"{why}; newest checkpoint at step {steps[-1]} of {run.total_steps}"
  if not train:
    return None, f"{why}; pass --train to {'finish' if steps else 'train'} it"
  return train_and_evaluate(config, directory), "resumed and trained" if steps else "trained"


def run_trials(config, workdir: str, trials: list[int], *, train: bool = False,
               baseline: bool = False, sweep: bool = False, seeds: list[int] | None = None
               ) -> dict:
  """Collect (or train) every trial, summarise, and write trials.json / trials.md.

  seeds: each trial x method also with these seeds (keys '<t>_seed<s>' in per_trial, the
  summary over every trial and seed). sweep: the runs that need training train together
  as one program (training/sweep.py) instead of one after another; runs that cannot share
  one program (e.g. different steps per epoch) are refused with ConfigError.

  Returns the record written to trials.json. Raises CheckpointError when not one trial
  has a result, ConfigError for --baseline on a config with BackMix already off.
  """
  if baseline and not config.backmix.enabled:
    raise validate.ConfigError("--baseline adds BackMix-off runs, but the config already has "
                      "backmix.enabled=False")
  main_method = BACKMIX if config.backmix.enabled else dataclasses.replace(
      PLAIN, suffix="")
  methods = [main_method] + ([PLAIN] if baseline else [])
  # A bad override is refused before anything is written.
  validate.check_config(config if train else reader_config(config))
  log(f"trials {config.dataset}, {config.protocol} split protocol, trials {trials}, "
      f"{' and '.join(m.label for m in methods)} in {workdir}")

  record = dict(benchmark=config.dataset, protocol=config.protocol, trials=trials, seeds=seeds,
                metric_mode="exact", std="sample std (ddof=1) over trials",
                config=dict(model=config.model, framework=config.framework,
                            score=config.score, num_epochs=config.num_epochs),
                methods={})
  queued = []  # (entry, key, config, directory) of the runs a sweep trains
  for method in methods:
    entry = dict(label=method.label, backmix=method.backmix, per_trial={}, missing={},
                 workdirs={})
    record["methods"][method.key] = entry
    for t in trials:
      for seed in (seeds or [None]):
        key = str(t) if seed is None else f"{t}_seed{seed}"
        d = trial_dir(workdir, t, method, seed)
        entry["workdirs"][key] = d
        log(f"\ntrial {key} {method.label}: {d}")
        cfg = trial_config(config, t, method.backmix, seed)
        metrics, how = collect_or_train(cfg, d, train=train and not sweep)
        if metrics is None and train and sweep:
          queued.append((entry, key, cfg, d))
          log(f"trial {key} {method.label}: queued for the sweep")
          continue
        log(f"trial {key} {method.label}: {how}")
        if metrics is None:
          entry["missing"][key] = how
        else:
          entry["per_trial"][key] = metrics
  if queued:
    log(f"\nsweep of {len(queued)} runs: " + ", ".join(f"{os.path.basename(q[3])}"
                                                       for q in queued))
    results = train_sweep([q[2] for q in queued], [q[3] for q in queued])
    for (entry, key, _, _), metrics in zip(queued, results):
      entry["per_trial"][key] = metrics
  for method in methods:
    entry = record["methods"][method.key]
    entry["per_trial"] = dict(sorted(entry["per_trial"].items()))
    if entry["per_trial"]:
      done = list(entry["per_trial"])
      entry["row"] = (f"{method.label} [{config.protocol} protocol, trials "
                      f"{','.join(done)}]")
      entry["summary"] = report.summarize_trials(list(entry["per_trial"].values()))
  if not any(e["per_trial"] for e in record["methods"].values()):
    missing = "; ".join(f"{os.path.basename(e['workdirs'][t])}: {why}"
                        for e in record["methods"].values() for t, why in e["missing"].items())
    raise CheckpointError(f"no finished trial in {workdir} ({missing})")

  record["published"] = [dataclasses.asdict(r) for r in
                         published.published_results(config.dataset)]
  record["overlay"] = None
  text = None
  if jax.process_index() == 0:  # one record for a pod slice
    os.makedirs(workdir, exist_ok=True)
    if baseline:
      record["overlay"] = _overlay_plots(record, workdir)
    with open(os.path.join(workdir, "trials.json"), "w") as f:
      json.dump(record, f, indent=2)
    text = trials_markdown(record)
    with open(os.path.join(workdir, "trials.md"), "w") as f:
      f.write(text)
  log(f"\n{text}")
  log(f"wrote trials.json and trials.md in {workdir}")
  return record


def _overlay_plots(record: dict, workdir: str) -> dict | None:
  """ROC and OSCR of baseline vs BackMix for the first trial that has both.

  One trial, not pooled: every trial has its own class split, so pooled scores would mix
  different problems.
  """
  methods = record["methods"]
  common = [t for t in map(str, record["trials"])
            if all(t in methods[k]["per_trial"] for k in ("backmix", "plain"))]
  if not common:
    return None
  t = common[0]
  roc, oscr = {}, {}
  for key in ("plain", "backmix"):
    with np.load(os.path.join(methods[key]["workdirs"][t], "eval_outputs.npz")) as z:
      known, unknown = z["known_scores"], z["unknown_scores"]
      correct = z["known_preds"] == z["known_labels"]
    roc[methods[key]["label"]] = (known, unknown)
    oscr[methods[key]["label"]] = (known, correct, unknown)
  what = (f"{record['config']['framework']} on {record['benchmark']}, "
          f"{record['protocol']} split trial {t}")
  return dict(trial=int(t), pooled=False,
              roc=plots.plot_roc_curves(roc, os.path.join(workdir, "roc_overlay.png"),
                                        title=f"ROC: {what}"),
              oscr=plots.plot_oscr_curves(oscr, os.path.join(workdir, "oscr_overlay.png"),
                                          title=f"OSCR: {what}"))


def trials_markdown(record: dict) -> str:
  """trials.md: what was summarised, the table (ours, then published), notes."""
  b, protocol = record["benchmark"], record["protocol"]
  cfg = record["config"]
  rows = {e["row"]: e["summary"] for e in record["methods"].values() if e["per_trial"]}
  lines = [
      f"# Trials: {b}, {protocol} split protocol, trials "
      f"{', '.join(map(str, record['trials']))}\n",
      f"Our rows: mean ± sample std (ddof=1) over trials, x100, the final checkpoint of each "
      f"trial (never the best on test); {cfg['model']} + {cfg['framework']}, score "
      f"{cfg['score'] or 'framework default'}, {cfg['num_epochs']} epochs; exact metrics "
      f"(docs/metrics.md); FPR@95 is the classic one (unknowns accepted at 95 % TPR). "
      f"Published rows: 5-trial means as reported, AUROC or DTACC only.\n",
      report.trials_table_markdown(rows, published.published_rows(b),
                                   first_column="method [split protocol, trials]"),
  ]
  lines += published.published_notes(b, protocol)
  missing = [f"- trial {t} {e['label']}: {why}" for e in record["methods"].values()
             for t, why in e["missing"].items()]
  if missing:
    lines += ["", "Missing (not in the means):"] + missing
  if record.get("overlay"):
    o = record["overlay"]
    lines += ["", f"Baseline vs BackMix plots of trial {o['trial']} (one trial, not pooled: "
              f"each trial has its own class split): {os.path.basename(o['roc'])}, "
              f"{os.path.basename(o['oscr'])}."]
  return "\n".join(lines) + "\n"
