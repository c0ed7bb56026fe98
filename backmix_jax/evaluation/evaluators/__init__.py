"""Evaluators: what is measured on a trained state (see registry.py)."""
from backmix_jax.evaluation.evaluators.registry import *  # noqa: F401,F403
from backmix_jax.evaluation.evaluators.registry import (  # noqa: F401
    CADENCE, EVALUATORS, CamLocalizationEvaluator, ConditionsEvaluator, Evaluator,
    EvaluatorError, OpenSetEvaluator, UnknownSetsEvaluator, build_evaluators, config_problems,
    due, load_unknown_sets, localization, register, run_evaluators, run_scorer, _auroc, _fmt)
