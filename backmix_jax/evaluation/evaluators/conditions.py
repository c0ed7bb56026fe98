"""`conditions`: per test condition of a composed benchmark (the fore-/background
diagnostic), accuracy of the known conditions, AUROC of the unknown ones, background gaps."""
from __future__ import annotations

import os

import numpy as np

from backmix_jax.evaluation import plots
from backmix_jax.evaluation.evaluators.registry import (Evaluator, EvaluatorError, fmt,
                                                        register)
from backmix_jax.evaluation.metrics import check_scores, roc_curve, trapezoid


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float:
  fpr, tpr, _ = roc_curve(check_scores(known, "known"), check_scores(unknown, "unknown"))
  return trapezoid(tpr, fpr)


@register("conditions")
class ConditionsEvaluator(Evaluator):
  """Per test condition of a composed benchmark (`data.conditions`): accuracy of each known
  condition, AUROC of each unknown condition against the `reference` known condition, and
  the background gaps: accuracy on the reference minus accuracy on each other known
  condition (how much the model leans on the background it was trained with)."""
  options = dict(reference="known_correlated")

  def __init__(self, run, workdir=None, **options):
    super().__init__(run, workdir, **options)
    self.conditions = {c.name: c for c in run.data.conditions}
    if not self.conditions:
      raise EvaluatorError("the conditions evaluator needs a benchmark with test conditions "
                           "(data.source=composite); this data has none")
    ref = self.opts["reference"]
    if ref not in self.conditions or not self.conditions[ref].known:
      raise EvaluatorError(f"{self.name}.reference={ref!r} is not a known condition of this "
                           f"data: {[n for n, c in self.conditions.items() if c.known]}")

  def evaluate(self, state):
    variables = self.run.variables(state)
    scorer = self.scorer()
    self.outputs = {name: scorer(variables, c.split) for name, c in self.conditions.items()}
    ref = self.opts["reference"]
    out = {}
    for name, c in self.conditions.items():
      o = self.outputs[name]
      if c.known:
        out[f"acc/{name}"] = float(np.mean(o["pred"] == c.split.labels))
      else:
        out[f"auroc/{name}"] = _auroc(self.outputs[ref]["score"], o["score"])
    for name, c in self.conditions.items():
      if c.known and name != ref:
        out[f"gap/{name}"] = out[f"acc/{ref}"] - out[f"acc/{name}"]
    return out

  def markdown(self, metrics):
    ref = self.opts["reference"]
    lines = [self.heading(f"Test conditions (AUROC against {ref}; gap = accuracy on {ref} minus "
                          "on the condition)") + "\n",
             "| condition | accuracy | AUROC | gap |", "|---|---:|---:|---:|"]
    for name in self.conditions:
      cells = [metrics.get(f"{k}/{name}") for k in ("acc", "auroc", "gap")]
      lines.append(f"| {name} | " + " | ".join("-" if v is None else fmt(v) for v in cells)
                   + " |")
    return "\n".join(lines) + "\n"

  def summary(self, metrics):
    parts = [f"{k.split('/', 1)[1]} {'acc' if k.startswith('acc') else 'AUROC'} {fmt(v)}"
             for k, v in metrics.items() if k.startswith(("acc/", "auroc/"))]
    return " | ".join(parts)

  def write(self, directory, tag=""):
    scores = {name: o["score"] for name, o in self.outputs.items()}
    np.savez(os.path.join(directory, self.filename("eval_outputs_conditions", tag, "npz")),
             **{f"{n}_score": o["score"] for n, o in self.outputs.items()},
             **{f"{n}_pred": o["pred"] for n, o in self.outputs.items()})
    return [plots.plot_condition_histograms(
        scores, os.path.join(directory, self.filename("condition_scores", tag, "png")),
        title=f"open-set score per condition ({self.scorer().score})")]
