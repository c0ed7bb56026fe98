"""Evaluators: what is measured on a trained state, each behind a name, each with its cadence.

`config.evals.<name>` turns an evaluator on (registry.py says how: `every_epochs`, an
optional `type`, the evaluator's own options). Training runs the due ones at epoch ends and
every one at the end; `experiments.evaluate` and `experiments.trials` run the same objects
through `train.evaluate_run`. Adding a metric means adding one module here with a class
under `@register` and importing it below.

Registered:
  open_set          the run's open-set metrics on its known vs unknown test sets (always
                    run at the end; it writes metrics.json / metrics.md and the plots)
  unknown_sets      the known test set against each extra unknown set (any source spec)
  conditions        per-condition accuracy and AUROC of the fore-/background diagnostic
  cam_localization  precision and recall of the CAM foreground against the true masks
"""
from backmix_jax.evaluation.evaluators.registry import CADENCE
from backmix_jax.evaluation.evaluators.registry import EVALUATORS
from backmix_jax.evaluation.evaluators.registry import TYPE
from backmix_jax.evaluation.evaluators.registry import Evaluator
from backmix_jax.evaluation.evaluators.registry import EvaluatorError
from backmix_jax.evaluation.evaluators.registry import build_evaluators
from backmix_jax.evaluation.evaluators.registry import config_problems
from backmix_jax.evaluation.evaluators.registry import due
from backmix_jax.evaluation.evaluators.registry import other_tables
from backmix_jax.evaluation.evaluators.registry import register
from backmix_jax.evaluation.evaluators.registry import run_evaluators
from backmix_jax.evaluation.evaluators.registry import run_scorer
# Each module registers its evaluator when imported (in this order).
from backmix_jax.evaluation.evaluators.open_set import OpenSetEvaluator
from backmix_jax.evaluation.evaluators.unknown_sets import UnknownSetsEvaluator
from backmix_jax.evaluation.evaluators.unknown_sets import load_unknown_sets
from backmix_jax.evaluation.evaluators.conditions import ConditionsEvaluator
from backmix_jax.evaluation.evaluators.cam_localization import CamLocalizationEvaluator
from backmix_jax.evaluation.evaluators.cam_localization import localization
