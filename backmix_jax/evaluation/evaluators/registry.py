"""The evaluator registry: the base class, `register`, the checks of config.evals, and
building, scheduling and running the evaluators of a run.

`config.evals.<name>` turns an evaluator on: `every_epochs` (0 = only at the end, N = also
after every N-th epoch), optionally `type` (the registered evaluator to run under this name;
default: the name itself), plus the evaluator's own options (`Evaluator.options`, with their
defaults). `type` lets one evaluator run twice under two names, e.g.
`config.evals.unknown_svhn = dict(type='unknown_sets', sources='tfds:svhn_cropped')`; an
instance's metrics and files carry its name.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from backmix_jax.evaluation.predict import Scorer

EVALUATORS: dict[str, type["Evaluator"]] = {}
CADENCE = "every_epochs"  # the one option every evaluator has
TYPE = "type"  # optional: the registered evaluator a config entry runs (default: its name)


class EvaluatorError(ValueError):
  """An evaluator cannot be built for this run (e.g. the data lacks what it measures)."""


def register(name: str) -> Callable:
  """Class decorator: the evaluator type `name` (its default instance name too)."""
  def wrap(cls):
    cls.type = cls.name = name
    EVALUATORS[name] = cls
    return cls
  return wrap


class Evaluator:
  """Built once per run; `evaluate(state)` -> flat {metric name: float}.

  `write(directory, tag)` saves files about the last evaluation (plots, tables); `markdown`
  gives the section metrics.md shows for it; `summary` the progress line.
  """
  type = ""  # the registered name (`register`)
  name = ""  # this instance's name in config.evals, metrics and files; default: `type`
  options: dict[str, Any] = {}

  def __init__(self, run, workdir: str | None = None, *, scorer: Scorer | None = None,
               name: str | None = None, **options):
    self.run, self.workdir, self._scorer = run, workdir, scorer
    self.name = name or self.type
    self.opts = {**self.options, **options}

  def evaluate(self, state) -> dict[str, float]:
    raise NotImplementedError

  def write(self, directory: str, tag: str = "") -> list[str]:
    del directory, tag
    return []

  def markdown(self, metrics: Mapping[str, float]) -> str:
    return ""

  def summary(self, metrics: Mapping[str, float]) -> str:
    return " | ".join(f"{k} {fmt(v)}" for k, v in list(metrics.items())[:6])

  def filename(self, stem: str, tag: str, ext: str) -> str:
    """`<stem>[_<name>]<tag>.<ext>`: the instance's name only when it is not its type's, so
    two instances of one type never write the same file."""
    return f"{stem}{'' if self.name == self.type else '_' + self.name}{tag}.{ext}"

  def heading(self, text: str) -> str:
    """A markdown section heading, naming the instance when it is not its type's name."""
    return f"## {text}" + ("" if self.name == self.type else f" [{self.name}]")

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


def fmt(v: float) -> str:
  """A metric for a progress line or table: fractions x100 with two decimals, else 4 digits."""
  return f"{100 * v:.2f}" if -1e-9 <= v <= 1 + 1e-9 else f"{v:.4g}"


def config_problems(config) -> list[str]:
  """Every problem with config.evals (unknown evaluator, type or option, bad cadence)."""
  out = []
  known = ", ".join(sorted(EVALUATORS))
  for name, opts in config.get("evals", {}).items():
    kind = opts.get(TYPE, name)
    if TYPE in opts and (not isinstance(kind, str) or kind not in EVALUATORS):
      out.append(f"evals.{name}.{TYPE}={kind!r} is not an evaluator; known: {known}")
      continue
    if kind not in EVALUATORS:
      out.append(f"evals.{name}: unknown evaluator; known: {known}")
      continue
    allowed = {CADENCE, TYPE, *EVALUATORS[kind].options}
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
  Each entry runs the evaluator its `type` option names (default: its name).
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
    opts = dict(opts)
    kind = opts.pop(TYPE, name)
    if kind not in EVALUATORS:
      raise EvaluatorError(f"unknown evaluator {kind!r}; known: {', '.join(sorted(EVALUATORS))}")
    every = int(opts.pop(CADENCE, 0))
    out[name] = (EVALUATORS[kind](run, workdir, scorer=scorer, name=name, **opts), every)
  return out


def other_tables(evaluators: Mapping[str, tuple[Evaluator, int]],
                 metrics: Mapping[str, object]) -> list[str]:
  """The markdown tables of the evaluators other than open_set that have results in
  `metrics` (e.g. one row per SSB difficulty), in the evaluators' order: what training and
  evaluation print after the open-set table."""
  tables = [e.markdown(metrics[name]) for name, (e, _) in evaluators.items()
            if name != "open_set" and name in metrics]
  return [table for table in tables if table]


def due(evaluators: Mapping[str, tuple[Evaluator, int]], epoch: int) -> list[str]:
  """Names of the evaluators whose cadence falls on the end of `epoch` (1-based)."""
  return [name for name, (_, every) in evaluators.items() if every and epoch % every == 0]


def run_evaluators(evaluators, names, state) -> dict[str, dict[str, float]]:
  """{name: metrics} of `names`, in order."""
  return {name: evaluators[name][0].evaluate(state) for name in names}
