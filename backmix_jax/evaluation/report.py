"""Markdown tables of metrics and of trial summaries (mean +- std), beside published numbers,
the files that record one evaluation (`write_evaluation`), and the records of a run's
metrics.jsonl read back (`read_records`).

Metric dicts hold fractions in [0, 1] (as `metrics.open_set_metrics` returns them); tables
print them x100 with two decimals. Only the keys of `metrics.METRIC_KEYS` become columns,
in that order.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from typing import Mapping, Sequence

import numpy as np

from backmix_jax.evaluation import plots
from backmix_jax.evaluation.metrics import METRIC_KEYS

COLUMN_NAMES = {
    "auroc": "AUROC",
    "oscr": "OSCR",
    "dtacc": "DTACC",
    "aupr_in": "AUPR-IN",
    "aupr_out": "AUPR-OUT",
    "fpr95": "FPR@95 (classic)",  # unknowns accepted at 95 % TPR of knowns, not OpenOOD's
    "tnr95": "TNR@95",
    "acc": "ACC",
    "macro_f1": "macro-F1",
}


def _is_number(v) -> bool:
  return isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_))


def _pct(v: float) -> str:
  return "nan" if not math.isfinite(v) else f"{100.0 * v:.2f}"


def _row(cells: Sequence[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def _header(first: str, keys: Sequence[str], names: Mapping[str, str] = COLUMN_NAMES) -> list[str]:
  return [_row([first] + [names[k] for k in keys]), _row(["---"] + ["---:"] * len(keys))]


def metrics_table_markdown(metrics: Mapping[str, float], name: str = "run") -> str:
  """One-row markdown table of one evaluation's metrics, values x100 with 2 decimals."""
  keys = [k for k in METRIC_KEYS if k in metrics]
  if not keys:
    raise ValueError(f"no metric among {list(METRIC_KEYS)} in {sorted(metrics)}")
  lines = _header("", keys)
  lines.append(_row([name] + [_pct(float(metrics[k])) for k in keys]))
  return "\n".join(lines) + "\n"


def summarize_trials(trials: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
  """Mean and standard deviation of every numeric key over trials.

  The std is the sample standard deviation (ddof=1, the usual "+-" of papers reporting 5
  trials) when there are at least two trials, and 0.0 for a single trial. Every trial must
  hold the numeric keys of the first one (ValueError otherwise).
  """
  if not trials:
    raise ValueError("no trials to summarize")
  keys = [k for k, v in trials[0].items() if _is_number(v)]
  out = {}
  for k in keys:
    missing = [i for i, t in enumerate(trials) if k not in t]
    if missing:
      raise ValueError(f"metric {k!r} missing from trials {missing}")
    values = np.array([float(t[k]) for t in trials], np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out[k] = (float(values.mean()), std)
  return out


def _cell(v, signed: bool = False) -> str:
  """(mean, std) -> 'mean ± std' x100; a bare number -> that number x100; signed: the mean
  with its sign (a difference)."""
  mean, std = (v, None) if _is_number(v) else v
  text = _pct(float(mean))
  if signed and math.isfinite(float(mean)) and float(mean) >= 0:
    text = "+" + text
  return text if std is None else f"{text} ± {_pct(float(std))}"


def _check_fraction(v, where: str, signed: bool = False):
  """A fraction in [0, 1] (signed: a difference of two, in [-1, 1]), or ValueError."""
  low = -1 if signed else 0
  values = [v] if _is_number(v) else list(v)
  for x in values:
    if not _is_number(x) or not (math.isnan(float(x)) or low - 1e-9 <= float(x) <= 1 + 1e-9):
      raise ValueError(f"{where}: {v!r} is not a fraction in [{low}, 1] (give 0.913, not 91.3)")


def trials_table_markdown(rows: Mapping[str, Mapping[str, tuple[float, float]]],
                          published: Mapping[str, Mapping[str, float]] | None = None,
                          first_column: str = "method", columns: Mapping[str, str] | None = None,
                          signed: bool = False) -> str:
  """Markdown table, one row per entry of `rows` and then of `published`.

  rows: row label (name the split protocol in it) -> metric -> (mean, std), fractions in
    [0, 1], e.g. from `summarize_trials`.
  published: row label -> metric -> value or (mean, std), also fractions (0.913 for a
    published 91.3); printed with " (published)" after the label. Values outside [0, 1]
    raise ValueError, which catches numbers copied already x100.
  columns: key -> column header, in table order, for other keys than the metrics (e.g.
    per-condition ones); default: the METRIC_KEYS present in any row, named by COLUMN_NAMES.
    Missing cells print "-".
  signed: the rows are differences of fractions (in [-1, 1]), printed with their sign.
  """
  published = published or {}
  checked = METRIC_KEYS if columns is None else tuple(columns)
  for label, values in published.items():
    for k, v in values.items():
      _check_fraction(v, f"published[{label!r}][{k!r}]")
  for label, values in rows.items():
    for k, v in values.items():
      if k in checked:
        _check_fraction(v, f"rows[{label!r}][{k!r}]", signed)
  present = set().union(*(set(v) for v in rows.values()), *(set(v) for v in published.values()))
  if columns is None:
    keys, names = [k for k in METRIC_KEYS if k in present], COLUMN_NAMES
    if not keys:
      raise ValueError(f"no metric among {list(METRIC_KEYS)} in the rows")
  else:
    keys, names = list(columns), columns
  lines = _header(first_column, keys, names)
  for label, values in rows.items():
    lines.append(_row([label] + [_cell(values[k], signed) if k in values else "-"
                                 for k in keys]))
  for label, values in published.items():
    lines.append(_row([f"{label} (published)"] +
                      [_cell(values[k]) if k in values else "-" for k in keys]))
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- one evaluation

# metrics.json of a run holds the metric keys, `score`, `step`, the test set sizes and a
# `run` block naming what was evaluated: dataset, protocol, trial, known_classes, model,
# framework, backmix (on/off), num_epochs, total_steps, arpl_compat.


def evaluation_row_name(metrics: Mapping) -> str:
  """Table row label naming benchmark, split protocol, trial, score and checkpoint step."""
  run = metrics.get("run", {})
  parts = []
  if run:
    parts.append(f"{run['dataset']} {run['protocol']} trial {run['trial']}")
  if "score" in metrics:
    parts.append(f"score {metrics['score']}")
  if "step" in metrics:
    parts.append(f"step {metrics['step']}")
  return ", ".join(parts) or "run"


def evaluation_markdown(metrics: Mapping) -> str:
  """metrics.md: a heading and one line saying what was evaluated, then the metrics table."""
  run = metrics.get("run", {})
  lines = []
  if run:
    lines.append(f"# Open-set evaluation: {run['dataset']}, {run['protocol']} split protocol, "
                 f"trial {run['trial']}\n")
    about = [f"{run['model']} + {run['framework']}, BackMix {'on' if run['backmix'] else 'off'}",
             f"known classes {list(run['known_classes'])}",
             f"checkpoint step {metrics.get('step')} of {run['total_steps']}"]
    if "num_known" in metrics:
      about.append(f"{metrics['num_known']} known + {metrics['num_unknown']} unknown test "
                   "samples")
    about.append("ARPL-compatible metrics (ARPL's core/evaluation.py conventions)"
                 if run.get("arpl_compat") else "exact metrics (definitions: docs/metrics.md)")
    lines.append("; ".join(about) + "; values x100.\n")
  lines.append(metrics_table_markdown(metrics, evaluation_row_name(metrics)))
  return "\n".join(lines)


def write_evaluation(directory: str, metrics: Mapping, outputs: Mapping, *, tag: str = "",
                     sections: Sequence[str] = ()) -> list[str]:
  """Write one evaluation's record in `directory`; returns the paths written.

  metrics{tag}.json (`metrics` as is), metrics{tag}.md (`evaluation_markdown`, then the
  markdown `sections` of the other evaluators), eval_outputs{tag}.npz (the per-sample
  `outputs`: known_scores, known_preds, known_labels [Nk], unknown_scores [Nu], ...), and the
  plots roc{tag}.png, score_histogram{tag}.png, oscr{tag}.png.
  """
  os.makedirs(directory, exist_ok=True)

  def path(name):
    stem, ext = os.path.splitext(name)
    return os.path.join(directory, f"{stem}{tag}{ext}")

  with open(path("metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  with open(path("metrics.md"), "w") as f:
    f.write("\n".join([evaluation_markdown(metrics), *[s for s in sections if s]]))
  np.savez(path("eval_outputs.npz"), **outputs)
  known, unknown = outputs["known_scores"], outputs["unknown_scores"]
  correct = np.asarray(outputs["known_preds"]) == np.asarray(outputs["known_labels"])
  run = metrics.get("run", {})
  what = evaluation_row_name(metrics)
  label = f"{run['model']}, BackMix {'on' if run['backmix'] else 'off'}" if run else "model"
  return [path("metrics.json"), path("metrics.md"), path("eval_outputs.npz"),
          plots.plot_roc_curves({label: (known, unknown)}, path("roc.png"), title=f"ROC: {what}"),
          plots.plot_score_histogram(known, unknown, path("score_histogram.png"), title=what),
          plots.plot_oscr_curves({label: (known, correct, unknown)}, path("oscr.png"),
                                 title=f"OSCR: {what}")]


def read_records(path: str, kind: str | None = None) -> list[dict]:
  """The records of a metrics.jsonl (training/records.py writes them: `step`, `kind`,
  `time` and the metrics), in order, only those of `kind` ('train', 'eval') when given;
  [] when the file does not exist."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if kind is None or r.get("kind") == kind]
