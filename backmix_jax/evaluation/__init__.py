"""Open-set evaluation on plain arrays: scores, metrics, tables and plots (no training imports)."""
from backmix_jax.evaluation.metrics import METRIC_KEYS
from backmix_jax.evaluation.metrics import open_set_metrics
from backmix_jax.evaluation.metrics import oscr_curve
from backmix_jax.evaluation.metrics import roc_curve
from backmix_jax.evaluation.plots import plot_oscr
from backmix_jax.evaluation.plots import plot_oscr_curves
from backmix_jax.evaluation.plots import plot_roc
from backmix_jax.evaluation.plots import plot_roc_curves
from backmix_jax.evaluation.plots import plot_score_histogram
from backmix_jax.evaluation.report import metrics_table_markdown
from backmix_jax.evaluation.report import summarize_trials
from backmix_jax.evaluation.report import trials_table_markdown
# Scores from logits belong to the frameworks (each adds its own); re-exported here.
from backmix_jax.frameworks import scores
from backmix_jax.frameworks.scores import SCORES
from backmix_jax.frameworks.scores import energy
from backmix_jax.frameworks.scores import get_score
from backmix_jax.frameworks.scores import mls
from backmix_jax.frameworks.scores import msp
