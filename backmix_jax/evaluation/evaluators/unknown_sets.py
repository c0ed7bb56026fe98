"""`unknown_sets`: the known test set against each of several unknown sets (the benchmark's
own groups of unknowns, such as the SSB's difficulties, and any source spec), and
`load_unknown_sets`, which reads the latter at the run's image size and channels."""
from __future__ import annotations

import os

import numpy as np

from backmix_jax.data.core import ArraySplit, DataError
from backmix_jax.data.sources import load_unknown_source
from backmix_jax.evaluation import plots
from backmix_jax.evaluation.evaluators.registry import (Evaluator, EvaluatorError, fmt,
                                                        register)
from backmix_jax.evaluation.metrics import METRIC_KEYS
from backmix_jax.evaluation.predict import outputs_metrics
from backmix_jax.evaluation.report import COLUMN_NAMES


@register("unknown_sets")
class UnknownSetsEvaluator(Evaluator):
  """The known test set against each named unknown set: first the benchmark's own groups of
  unknowns (`data.unknown_groups`, e.g. the SSB's difficulties), then each source spec of
  `sources` (comma-separated: tfds:<name>, npz:<path>, folder:<path>, ...), their images
  brought to the run's size and channels. Metrics `<set>/<metric>` per set and, over the
  `sources` sets when there are any, `mean/<metric>`."""
  options = dict(sources="", max_per_set=0)

  def __init__(self, run, workdir=None, **options):
    super().__init__(run, workdir, **options)
    self.groups = dict(run.data.unknown_groups)
    self.sets = (load_unknown_sets(self.opts["sources"], run, self.opts["max_per_set"] or None)
                 if self.opts["sources"].strip() or not self.groups else {})

  @property
  def rows(self) -> list[str]:
    """The table's rows: every set, then `mean` over the `sources` sets."""
    return [*self.groups, *self.sets] + (["mean"] if self.sets else [])

  def evaluate(self, state):
    variables = self.run.variables(state)
    scorer = self.scorer()
    known = scorer(variables, self.run.data.test_known)
    # Scored once; each group is a slice of it (the unknown test set is the groups' union).
    own = scorer(variables, self.run.data.test_unknown) if self.groups else None
    unknowns = {name: {k: v[index] for k, v in own.items()} for name, index in
                self.groups.items()}
    unknowns |= {spec: scorer(variables, split) for spec, split in self.sets.items()}
    self.outputs, out = {}, {}
    for name, unknown in unknowns.items():
      o = dict(known_scores=known["score"], known_preds=known["pred"],
               known_labels=self.run.data.test_known.labels, unknown_scores=unknown["score"],
               unknown_preds=unknown["pred"])
      self.outputs[name] = o
      m = outputs_metrics(o, self.run.data.num_classes)
      out.update({f"{name}/{k}": m[k] for k in METRIC_KEYS})
    if self.sets:
      for k in METRIC_KEYS:
        out[f"mean/{k}"] = float(np.mean([out[f"{s}/{k}"] for s in self.sets]))
    return out

  def markdown(self, metrics):
    rows = self.rows
    lines = [self.heading("Unknown sets (known test set vs each)") + "\n",
             "| unknown set | " + " | ".join(COLUMN_NAMES[k] for k in METRIC_KEYS) + " |",
             "|---|" + "---:|" * len(METRIC_KEYS)]
    for r in rows:
      lines.append(f"| {r} | " + " | ".join(fmt(metrics[f'{r}/{k}']) for k in METRIC_KEYS)
                   + " |")
    return "\n".join(lines) + "\n"

  def summary(self, metrics):
    return " | ".join(f"{s}: AUROC {fmt(metrics[f'{s}/auroc'])} OSCR {fmt(metrics[f'{s}/oscr'])}"
                      for s in self.rows)

  def write(self, directory, tag=""):
    curves = {s: (o["known_scores"], o["unknown_scores"]) for s, o in self.outputs.items()}
    path = os.path.join(directory, self.filename("roc_per_set", tag, "png"))
    arrays = {f"{i}_{k}": v for i, o in enumerate(self.outputs.values()) for k, v in o.items()}
    outputs = os.path.join(directory, self.filename("eval_outputs_per_set", tag, "npz"))
    np.savez(outputs, sources=np.array(list(self.outputs)), **arrays)
    return [plots.plot_roc_curves(curves, path, title="ROC per unknown set"), outputs]


def load_unknown_sets(sources: str, run, max_per_set: int | None = None) -> dict:
  """{spec: ArraySplit} of each comma-separated source spec's test split, at the run's image
  size and channels (labels -1). DataError names the spec that cannot be read or shaped."""
  specs = [s.strip() for s in sources.split(",") if s.strip()]
  if not specs:
    raise EvaluatorError("unknown_sets needs at least one source spec in its `sources` option "
                         "(or a benchmark with groups of unknowns, such as the SSB's)")
  d = run.config.data
  shape = run.data.train.images.shape[1:]
  out = {}
  for spec in specs:
    try:
      split = load_unknown_source(spec, data_dir=d.data_dir or None, image_size=shape[0],
                                  channels=shape[2], max_per_split=max_per_set,
                                  cache_dir=d.get("cache_dir", ""))
    except DataError as e:
      raise DataError(f"unknown set {spec!r}: {e}") from None
    except (OSError, ValueError) as e:  # unreadable files, images of no usable shape
      raise DataError(f"unknown set {spec!r} cannot be read: {e}") from None
    if split.images.shape[1:] != shape:
      raise DataError(f"unknown set {spec!r} has images {split.images.shape[1:]}, the run "
                      f"needs {shape}")
    if not len(split):
      raise DataError(f"unknown set {spec!r} has no images")
    out[spec] = ArraySplit(split.images, np.full(len(split), -1, np.int64))
  return out
