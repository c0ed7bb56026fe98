"""`open_set`: the run's open-set metrics on its known vs unknown test sets (always run at the
end; training's metrics.json, metrics.md and plots are written from its outputs)."""
from __future__ import annotations

from backmix_jax.evaluation.evaluators.registry import Evaluator, fmt, register
from backmix_jax.evaluation.metrics import METRIC_KEYS
from backmix_jax.evaluation.predict import open_set_outputs, outputs_metrics


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
    return (f"AUROC {fmt(metrics['auroc'])} | OSCR {fmt(metrics['oscr'])} | "
            f"acc {fmt(metrics['acc'])}")
