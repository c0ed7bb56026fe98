"""Evaluators: what is measured on a trained state, each behind a name, each with its cadence.

`config.evals.<name>` turns an evaluator on: `every_epochs` (0 = only at the end, N = also
after every N-th epoch) plus the evaluator's own options (`Evaluator.options`, with their
defaults). Training runs the due ones at epoch ends and every one at the end;
`experiments.evaluate` and `experiments.trials` run the same objects through
`evaluate_state`. Adding a metric means adding one class here with `@register`.

Registered:
  open_set          the run's open-set metrics on its known vs unknown test sets (always
                    run at the end; it writes metrics.json / metrics.md and the plots)
  unknown_sets      the known test set against each extra unknown set (any source spec)
  conditions        per-condition accuracy and AUROC of the fore-/background diagnostic
  cam_localization  precision and recall of the CAM foreground against the true masks
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from backmix_jax import backmix
from backmix_jax.data import augment
from backmix_jax.evaluation.metrics import METRIC_KEYS, check_scores, roc_curve, trapezoid
from backmix_jax.evaluation.predict import Scorer, open_set_outputs, outputs_metrics

EVALUATORS: dict[str, type["Evaluator"]] = {}
CADENCE = "every_epochs"  # the one option every evaluator has


class EvaluatorError(ValueError):
  """An evaluator cannot be built for this run (e.g. the data lacks what it measures)."""


def register(name: str) -> Callable:
  def wrap(cls):
    cls.name = name
    EVALUATORS[name] = cls
    return cls
  return wrap


class Evaluator:
  """Built once per run; `evaluate(state)` -> flat {metric name: float}.

  `write(directory, tag)` saves files about the last evaluation (plots, tables); `markdown`
  gives the section metrics.md shows for it; `summary` the progress line.
  """
  name = ""
  options: dict[str, Any] = {}

  def __init__(self, run, workdir: str | None = None, *, scorer: Scorer | None = None,
               **options):
    self.run, self.workdir, self._scorer = run, workdir, scorer
    self.opts = {**self.options, **options}

  def evaluate(self, state) -> dict[str, float]:
    raise NotImplementedError

  def write(self, directory: str, tag: str = "") -> list[str]:
    del directory, tag
    return []

  def markdown(self, metrics: Mapping[str, float]) -> str:
    return ""

  def summary(self, metrics: Mapping[str, float]) -> str:
    return " | ".join(f"{k} {_fmt(v)}" for k, v in list(metrics.items())[:6])

  # For the evaluators that score images: the run's shared Scorer (build_evaluators).
  def scorer(self) -> Scorer:
    if self._scorer is None:
      self._scorer = run_scorer(self.run)
    return self._scorer


def run_scorer(run) -> Scorer:
  """A Scorer of the run's evaluation network, score and batch size."""
  cfg = run.config
  return Scorer(run.eval_model, run.framework, cfg.score, train=run.data.train,
                batch_size=cfg.eval_batch_size, normalization=cfg.data.normalize, mesh=run.mesh)


def _fmt(v: float) -> str:
  return f"{100 * v:.2f}" if -1e-9 <= v <= 1 + 1e-9 else f"{v:.4g}"


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float:
  fpr, tpr, _ = roc_curve(check_scores(known, "known"), check_scores(unknown, "unknown"))
  return trapezoid(tpr, fpr)


@register("open_set")
class OpenSetEvaluator(Evaluator):
  """The run's open-set metrics (METRIC_KEYS) on data.test_known vs data.test_unknown."""
  options = dict(arpl_compat=False)

  def evaluate(self, state):
    variables = self.run.variables(state)
    self.outputs = open_set_outputs(self.scorer(), variables, self.run.data.test_known,
                                    self.run.data.test_unknown)
    m = outputs_metrics(self.outputs, self.run.data.num_classes, self.opts["arpl_compat"])
    return {k: m[k] for k in METRIC_KEYS} | dict(num_known=m["num_known"],
                                                 num_unknown=m["num_unknown"])

  def summary(self, metrics):
    return (f"AUROC {_fmt(metrics['auroc'])} | OSCR {_fmt(metrics['oscr'])} | "
            f"acc {_fmt(metrics['acc'])}")


@register("unknown_sets")
class UnknownSetsEvaluator(Evaluator):
  """The known test set against each unknown set of `sources` (comma-separated source
  specs: tfds:<name>, npz:<path>, folder:<path>, ...), their images brought to the run's
  size and channels. Metrics `<spec>/<metric>` per set and `mean/<metric>` over them."""
  options = dict(sources="", max_per_set=0)

  def __init__(self, run, workdir=None, **options):
    super().__init__(run, workdir, **options)
    self.sets = load_unknown_sets(self.opts["sources"], run, self.opts["max_per_set"] or None)

  def evaluate(self, state):
    variables = self.run.variables(state)
    scorer = self.scorer()
    known = scorer(variables, self.run.data.test_known)
    self.outputs, out = {}, {}
    for spec, split in self.sets.items():
      unknown = scorer(variables, split)
      o = dict(known_scores=known["score"], known_preds=known["pred"],
               known_labels=self.run.data.test_known.labels, unknown_scores=unknown["score"],
               unknown_preds=unknown["pred"])
      self.outputs[spec] = o
      m = outputs_metrics(o, self.run.data.num_classes)
      out.update({f"{spec}/{k}": m[k] for k in METRIC_KEYS})
    for k in METRIC_KEYS:
      out[f"mean/{k}"] = float(np.mean([out[f"{s}/{k}"] for s in self.sets]))
    return out

  def markdown(self, metrics):
    from backmix_jax.evaluation.report import COLUMN_NAMES
    rows = list(self.sets) + ["mean"]
    lines = ["## Extra unknown sets (known test set vs each)\n",
             "| unknown set | " + " | ".join(COLUMN_NAMES[k] for k in METRIC_KEYS) + " |",
             "|---|" + "---:|" * len(METRIC_KEYS)]
    for r in rows:
      lines.append(f"| {r} | " + " | ".join(_fmt(metrics[f'{r}/{k}']) for k in METRIC_KEYS)
                   + " |")
    return "\n".join(lines) + "\n"

  def summary(self, metrics):
    return " | ".join(f"{s}: AUROC {_fmt(metrics[f'{s}/auroc'])}" for s in list(self.sets)
                      + ["mean"])

  def write(self, directory, tag=""):
    from backmix_jax.evaluation import plots
    curves = {s: (o["known_scores"], o["unknown_scores"]) for s, o in self.outputs.items()}
    path = os.path.join(directory, f"roc_per_set{tag}.png")
    arrays = {f"{i}_{k}": v for i, o in enumerate(self.outputs.values()) for k, v in o.items()}
    np.savez(os.path.join(directory, f"eval_outputs_per_set{tag}.npz"),
             sources=np.array(list(self.outputs)), **arrays)
    return [plots.plot_roc_curves(curves, path, title="ROC per unknown set"),
            os.path.join(directory, f"eval_outputs_per_set{tag}.npz")]


def load_unknown_sets(sources: str, run, max_per_set: int | None = None) -> dict:
  """{spec: ArraySplit} of each comma-separated source spec's test split, at the run's image
  size and channels (labels -1). DataError names the spec that cannot be read or shaped."""
  from backmix_jax.data.sources import ArraySplit, DataError, load_unknown_source
  specs = [s.strip() for s in sources.split(",") if s.strip()]
  if not specs:
    raise EvaluatorError("unknown_sets needs at least one source spec in its `sources` option")
  d = run.config.data
  shape = run.data.train.images.shape[1:]
  out = {}
  for spec in specs:
    try:
      split = load_unknown_source(spec, data_dir=d.data_dir or None, image_size=shape[0],
                                  channels=shape[2], max_per_split=max_per_set)
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


# --------------------------------------------------------------- the fore-/background diagnostic

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
      raise EvaluatorError(f"conditions.reference={ref!r} is not a known condition of this "
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
    lines = [f"## Test conditions (AUROC against {ref}; gap = accuracy on {ref} minus on the "
             "condition)\n", "| condition | accuracy | AUROC | gap |", "|---|---:|---:|---:|"]
    for name in self.conditions:
      cells = [metrics.get(f"{k}/{name}") for k in ("acc", "auroc", "gap")]
      lines.append(f"| {name} | " + " | ".join("-" if v is None else _fmt(v) for v in cells)
                   + " |")
    return "\n".join(lines) + "\n"

  def summary(self, metrics):
    parts = [f"{k.split('/', 1)[1]} {'acc' if k.startswith('acc') else 'AUROC'} {_fmt(v)}"
             for k, v in metrics.items() if k.startswith(("acc/", "auroc/"))]
    return " | ".join(parts)

  def write(self, directory, tag=""):
    from backmix_jax.evaluation import plots
    scores = {name: o["score"] for name, o in self.outputs.items()}
    np.savez(os.path.join(directory, f"eval_outputs_conditions{tag}.npz"),
             **{f"{n}_score": o["score"] for n, o in self.outputs.items()},
             **{f"{n}_pred": o["pred"] for n, o in self.outputs.items()})
    return [plots.plot_condition_histograms(
        scores, os.path.join(directory, f"condition_scores{tag}.png"),
        title=f"open-set score per condition ({self.scorer().score})")]


def localization(cams, masks, fg_ratio: float):
  """Precision and recall of the top-`fg_ratio` CAM cells against a true foreground mask.

  Args:
    cams: [B, g, g] CAMs.
    masks: bool [B, H, W] true foreground pixels, H divisible by g.
    fg_ratio: static, the share of cells BackMix calls foreground.
  Returns:
    dict of float32 [B]: cell_precision (chosen cells that hold any true foreground),
    cell_recall (cells holding foreground that were chosen), pixel_recall (true foreground
    pixels inside chosen cells: what masking a partner removes), fg_cells (share of cells
    holding foreground: the fg_ratio that would match the object's size).
  """
  b, g = cams.shape[0], cams.shape[1]
  s = masks.shape[1] // g
  pixels = jnp.asarray(masks, jnp.float32).reshape(b, g, s, g, s).sum((2, 4))  # [B,g,g]
  true = pixels > 0
  chosen = backmix.foreground_mask(cams, fg_ratio)
  hit = (chosen & true).sum((1, 2)).astype(jnp.float32)
  n_true = true.sum((1, 2)).astype(jnp.float32)
  total = pixels.sum((1, 2))
  return dict(
      cell_precision=hit / jnp.maximum(chosen.sum((1, 2)), 1),
      cell_recall=hit / jnp.maximum(n_true, 1),
      pixel_recall=jnp.where(chosen, pixels, 0).sum((1, 2)) / jnp.maximum(total, 1),
      fg_cells=n_true / (g * g))


@register("cam_localization")
class CamLocalizationEvaluator(Evaluator):
  """How well the CAMs BackMix masks with find the true foreground (data with masks only).

  `train/*`: the CAMs the train step computes (same function, same norm and statistics
  settings: `live_*` the network's own, `bank_*` the bank rows in bank mode, `teacher_*` the
  fixed teacher's with cam_source='teacher') on the first `probe_size` training images;
  `test/*`: the same on the reference known test condition (or test_known). Means of
  `localization` over the images, at the run's fg_ratio.
  """
  options = dict(probe_size=512)

  def __init__(self, run, workdir=None, **options):
    super().__init__(run, workdir, **options)
    train = run.data.train
    if train.masks is None:
      raise EvaluatorError("the cam_localization evaluator needs data with true foreground "
                           "masks (data.source=composite); this data has none")
    n = min(int(self.opts["probe_size"]), len(train))
    self.sets = {"train": (train.take(np.arange(n)), np.arange(n))}
    known = next((c.split for c in run.data.conditions if c.known), run.data.test_known)
    if known.masks is not None:
      self.sets["test"] = (known, None)
    self._fn = None

  def _program(self):
    if self._fn is None:
      cfg, bcfg = self.run.config, self.run.config.backmix
      from backmix_jax.cams import step_model_cams
      model, framework = self.run.eval_model, self.run.framework

      @jax.jit
      def fn(variables, images, labels, masks, bank_rows, teacher):
        x = augment.normalize(images, cfg.data.normalize)
        out = {}
        for src, held in (("live", variables), ("teacher", teacher)):
          if held is not None:
            cams = step_model_cams(model, framework, held, x, labels, bcfg,
                                   rng=jax.random.key(0))
            out |= {f"{src}_{k}": v for k, v in localization(cams, masks, bcfg.fg_ratio).items()}
        if bank_rows is not None:
          out |= {f"bank_{k}": v for k, v in
                  localization(bank_rows, masks, bcfg.fg_ratio).items()}
        return out

      self._fn = fn
    return self._fn

  def evaluate(self, state):
    fn = self._program()
    # On the host's default device: the probe is small, and this holds on every process of
    # a multi-host run without sharding the probe.
    variables = jax.device_get(self.run.variables(state))
    teacher = jax.device_get(state.teacher) or None  # cam_source='teacher': what the step used
    bcfg = self.run.config.backmix
    in_bank_mode = bcfg.enabled and bcfg.cam_source == "bank"  # else a [1,g,g] placeholder
    bank = np.asarray(jax.device_get(state.bank)) if in_bank_mode else None
    out = {}
    batch = self.run.config.eval_batch_size
    for where, (split, rows) in self.sets.items():
      sums: dict[str, float] = {}
      for lo in range(0, len(split), batch):
        hi = min(lo + batch, len(split))
        bank_rows = None if bank is None or rows is None else jnp.asarray(bank[rows[lo:hi]])
        res = fn(variables, jnp.asarray(split.images[lo:hi]),
                 jnp.asarray(split.labels[lo:hi].astype(np.int32)),
                 jnp.asarray(split.masks[lo:hi]), bank_rows, teacher)
        for k, v in jax.device_get(res).items():
          sums[k] = sums.get(k, 0.0) + float(np.sum(v))
      out |= {f"{where}/{k}": v / len(split) for k, v in sums.items()}
    return out

  def summary(self, metrics):
    # The network's own CAMs, and the teacher's where the step masked with those.
    return " | ".join(
        f"{w}{'' if src == 'live' else ' ' + src} precision "
        f"{_fmt(metrics[f'{w}/{src}_cell_precision'])} recall "
        f"{_fmt(metrics[f'{w}/{src}_cell_recall'])} pixel recall "
        f"{_fmt(metrics[f'{w}/{src}_pixel_recall'])}"
        for w in self.sets for src in ("live", "teacher") if f"{w}/{src}_cell_precision" in metrics)

  def markdown(self, metrics):
    lines = [f"## CAM localisation (top {self.run.config.backmix.fg_ratio:g} of cells vs the "
             "true foreground)\n", "| images | CAM | cell precision | cell recall | "
             "pixel recall | true foreground cells |", "|---|---|---:|---:|---:|---:|"]
    for w in self.sets:
      for src in ("live", "bank", "teacher"):
        if f"{w}/{src}_cell_precision" in metrics:
          lines.append(f"| {w} | {src} | " + " | ".join(
              _fmt(metrics[f"{w}/{src}_{k}"])
              for k in ("cell_precision", "cell_recall", "pixel_recall", "fg_cells")) + " |")
    source = self.run.config.backmix.cam_source
    if self.run.config.backmix.enabled and source in ("oracle", "teacher"):
      used = "the true masks" if source == "oracle" else "the teacher's CAMs (teacher rows)"
      lines.append(f"\n(cam_source={source}: the train step mixed with {used}; the live rows "
                   "are the network's own CAMs, which it did not use.)")
    return "\n".join(lines) + "\n"

  def write(self, directory, tag=""):
    """cam_localization.png: precision and recall over training, from metrics.jsonl."""
    from backmix_jax.evaluation import plots
    path = os.path.join(self.workdir or directory, "metrics.jsonl")
    if not os.path.exists(path):
      return []
    history = []
    with open(path) as f:
      for line in f:
        r = json.loads(line)
        if r.get("kind") == "eval" and f"{self.name}/train/live_cell_precision" in r:
          history.append(r)
    if not history:
      return []
    return [plots.plot_history(
        history, {f"{self.name}/{w}/live_{k}": f"{w} {k.replace('_', ' ')}"
                  for w in self.sets for k in ("cell_precision", "cell_recall", "pixel_recall")},
        os.path.join(directory, f"cam_localization{tag}.png"),
        title="CAM foreground vs true foreground")]


# ----------------------------------------------------------------------------- configuration

def config_problems(config) -> list[str]:
  """Every problem with config.evals (unknown evaluator or option, bad cadence)."""
  out = []
  for name, opts in config.get("evals", {}).items():
    if name not in EVALUATORS:
      out.append(f"evals.{name}: unknown evaluator; known: {', '.join(sorted(EVALUATORS))}")
      continue
    allowed = {CADENCE, *EVALUATORS[name].options}
    extra = sorted(set(opts) - allowed)
    if extra:
      out.append(f"evals.{name}: unknown option(s) {extra}; allowed: {sorted(allowed)}")
    every = opts.get(CADENCE, 0)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
      out.append(f"evals.{name}.{CADENCE} must be an integer >= 0, got {every!r}")
  return out


def build_evaluators(run, workdir: str | None = None, *, only: Mapping[str, dict] | None = None,
                     overrides: Mapping[str, dict] | None = None
                     ) -> dict[str, tuple[Evaluator, int]]:
  """{name: (evaluator, every_epochs)} for config.evals, `open_set` always included (first).

  only: build exactly these {name: options} instead of config.evals (plus open_set).
  overrides: {name: options} updating the chosen evaluators' options (e.g. arpl_compat).
  workdir: the run's directory (the CAM-localisation plot reads its metrics.jsonl).
  Raises EvaluatorError / DataError with one sentence when one cannot be built.
  """
  wanted = only if only is not None else {
      name: dict(opts) for name, opts in run.config.get("evals", {}).items()}
  wanted = {"open_set": {}, **{k: dict(v) for k, v in wanted.items()}}
  for name, opts in (overrides or {}).items():
    if name in wanted:
      wanted[name].update(opts)
  out = {}
  scorer = run_scorer(run)  # one for all: each split scored, the score fitted, once per state
  for name, opts in wanted.items():
    if name not in EVALUATORS:
      raise EvaluatorError(f"unknown evaluator {name!r}; known: {', '.join(sorted(EVALUATORS))}")
    opts = dict(opts)
    every = int(opts.pop(CADENCE, 0))
    out[name] = (EVALUATORS[name](run, workdir, scorer=scorer, **opts), every)
  return out


def due(evaluators: Mapping[str, tuple[Evaluator, int]], epoch: int) -> list[str]:
  """Names of the evaluators whose cadence falls on the end of `epoch` (1-based)."""
  return [name for name, (_, every) in evaluators.items() if every and epoch % every == 0]


def run_evaluators(evaluators, names, state) -> dict[str, dict[str, float]]:
  """{name: metrics} of `names`, in order."""
  return {name: evaluators[name][0].evaluate(state) for name in names}

