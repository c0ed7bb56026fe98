"""Open-set recognition metrics on plain arrays: exact definitions and an ARPL-compatible mode.

Known test samples are the positive class and a higher score means "more likely known"
throughout. Every metric is a fraction in [0, 1] (tables multiply by 100).

Exact mode (default; the definitions of docs/metrics.md):
  auroc     P(known score > unknown score), ties count one half (= sklearn roc_auc_score).
  oscr      P(known is correctly classified AND scores above an unknown), ties one half
            (the OSCR of Dhamija et al. 2018, also called OpenAUC).
  dtacc     max over thresholds t of (TPR(t) + TNR(t)) / 2, accepting score >= t (so at
            least 0.5: accepting everything).
  aupr_in   average precision, known positive, ranked by score (= sklearn
            average_precision_score).
  aupr_out  average precision, unknown positive, ranked by -score.
  fpr95     classic FPR@95: the fraction of unknowns accepted at the highest threshold that
            accepts at least 95 % of the knowns (accept score >= t, so unknowns tied with
            the threshold are accepted). OpenOOD v1.5 reverses the roles (unknown = positive:
            the fraction of knowns rejected when 95 % of unknowns are rejected); that is a
            different number and is not what this module prints.
  tnr95     1 - fpr95 (in ARPL mode, ARPL's TNR instead, which is not 1 - fpr95).
  acc       closed-set accuracy on the knowns (argmax prediction == label).
  macro_f1  macro-averaged F1 over K + 1 classes (unknown = class K) after rejecting every
            sample scoring below the fpr95 threshold (equals sklearn f1_score with
            average='macro', labels=range(K + 1)).

ARPL mode (`arpl_compat=True`) reproduces the conventions of ARPL's `core/evaluation.py`
(github.com/iCGY96/ARPL), which produced ARPL's tables and is reused by many later OSR code
bases, so numbers compare digit for digit with theirs. See `_arpl_metrics` for each
convention; fpr95, acc and macro_f1 have no ARPL counterpart and stay exact.

Everything is float64, sort based (O(n log n)) and vectorised: no loop over thresholds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

METRIC_KEYS = ("auroc", "oscr", "dtacc", "aupr_in", "aupr_out", "fpr95", "tnr95", "acc",
               "macro_f1")


# ----------------------------------------------------------------------------- validation


def check_scores(x: Any, name: str) -> np.ndarray:
  """Any array-like of scores -> float64 [N]; raise ValueError when unusable."""
  a = np.asarray(x)
  if a.ndim != 1:
    raise ValueError(f"{name} must be 1-D (one score per sample), got shape {a.shape}")
  if a.size == 0:
    raise ValueError(f"{name} is empty")
  try:
    # kind "V" admits ml_dtypes' bfloat16 (JAX's), which NumPy does not call floating.
    if a.dtype.kind not in "fiuV":
      raise TypeError
    a = a.astype(np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}") from None
  bad = ~np.isfinite(a)
  if bad.any():
    raise ValueError(f"{name} has {int(np.isnan(a).sum())} NaN and "
                     f"{int(np.isinf(a).sum())} infinite values; scores must be finite")
  return a


def _class_ids(x: Any, name: str, n: int) -> np.ndarray:
  """Integer class ids -> int64 [n]; raise ValueError on wrong length, type or sign."""
  a = np.asarray(x)
  if a.ndim != 1:
    raise ValueError(f"{name} must be 1-D class ids, got shape {a.shape}")
  if len(a) != n:
    raise ValueError(f"{name} has {len(a)} entries but there are {n} scores")
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
  a = a.astype(np.int64)
  if (a < 0).any():
    raise ValueError(f"{name} has negative class ids (min {a.min()}); known classes are 0..K-1")
  return a


# ----------------------------------------------------------------------------- exact metrics


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
  """Trapezoidal area under y(x) for points in the given order (negative if x decreases).

  Same arithmetic as np.trapezoid / np.trapz (absent or deprecated in some supported NumPy
  versions), so areas match ARPL's np.trapz bit for bit.
  """
  return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _twice_wins(known: np.ndarray, unknown_sorted: np.ndarray) -> np.ndarray:
  """Per known sample, 2 * #(unknown < k) + #(unknown == k): twice its half-tie win count.

  known: float64 [Nk]; unknown_sorted: float64 [Nu], ascending. Returns int64 [Nk].
  Integers keep the pair count exact (up to ~4.6e18 pairs).
  """
  below = np.searchsorted(unknown_sorted, known, side="left")
  below_or_equal = np.searchsorted(unknown_sorted, known, side="right")
  return (below + below_or_equal).astype(np.int64)


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
  """Average precision of ranking `positive` above `negative` (higher score = positive).

  positive: float [Np], negative: float [Nn]. AP = sum_i (R_i - R_{i-1}) P_i over the
  distinct score values taken as thresholds (score >= t), highest first; tied samples enter
  together, as in sklearn.metrics.average_precision_score.
  """
  scores = np.concatenate([positive, negative])
  is_pos = np.concatenate([np.ones(len(positive), bool), np.zeros(len(negative), bool)])
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], is_pos[order]
  tp = np.cumsum(y)
  fp = np.arange(1, len(s) + 1) - tp
  group_end = np.r_[s[1:] != s[:-1], True]  # one operating point per distinct score
  tp, fp = tp[group_end], fp[group_end]
  precision = tp / (tp + fp)
  recall = tp / len(positive)
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr95_threshold(known: np.ndarray) -> float:
  """The highest threshold t with #(known >= t) >= 95 % of the knowns. known: float [Nk]."""
  n = len(known)
  need = -(-95 * n // 100)  # ceil(0.95 n) in integers: no float rounding at the boundary
  return float(np.partition(known, n - need)[n - need])


def macro_f1_at_threshold(known_scores: np.ndarray, known_preds: np.ndarray,
                          known_labels: np.ndarray, unknown_scores: np.ndarray,
                          threshold: float, num_classes: int,
                          unknown_preds: np.ndarray | None = None) -> float:
  """Macro F1 over num_classes + 1 classes after rejecting scores below `threshold`.

  Shapes: known_* [Nk], unknown_* [Nu]. A sample with score < threshold is predicted
  "unknown" (class K = num_classes); otherwise its closed-set prediction is kept. An accepted
  unknown counts as a false positive of its predicted class when `unknown_preds` is given;
  without it, it only costs the unknown class its recall (an upper bound on the true F1).
  A class with no true and no predicted samples scores 0 (sklearn's zero_division default).
  """
  k = num_classes
  y_true = np.concatenate([known_labels, np.full(len(unknown_scores), k)])
  accepted_unknown = unknown_preds if unknown_preds is not None else np.full(
      len(unknown_scores), k + 1)  # k + 1: a class outside the K + 1 that are averaged
  y_pred = np.concatenate([np.where(known_scores >= threshold, known_preds, k),
                           np.where(unknown_scores >= threshold, accepted_unknown, k)])
  hits = np.bincount(y_true[y_true == y_pred], minlength=k + 1)[:k + 1]
  true_count = np.bincount(y_true, minlength=k + 1)[:k + 1]
  pred_count = np.bincount(y_pred, minlength=k + 2)[:k + 1]
  denom = true_count + pred_count
  f1 = np.divide(2.0 * hits, denom, out=np.zeros(k + 1), where=denom > 0)
  return float(f1.mean())


def roc_curve(known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC curve, known positive: (fpr, tpr, thresholds), each float64 [T + 1].

  Operating points accept score >= t for each distinct score t, highest first, preceded by
  (0, 0) at t = +inf. The trapezoidal area under it equals `auroc`.
  """
  known = np.sort(check_scores(known_scores, "known_scores"))
  unknown = np.sort(check_scores(unknown_scores, "unknown_scores"))
  thresholds = np.unique(np.concatenate([known, unknown]))[::-1]
  tpr = (len(known) - np.searchsorted(known, thresholds, side="left")) / len(known)
  fpr = (len(unknown) - np.searchsorted(unknown, thresholds, side="left")) / len(unknown)
  return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def oscr_curve(known_scores, known_correct, unknown_scores) -> tuple[np.ndarray, np.ndarray]:
  """OSCR curve: (fpr, ccr), float64 [T + 1], over the same thresholds as `roc_curve`.

  ccr(t) = #(known correctly classified with score >= t) / #known; its trapezoidal area
  equals `oscr` in exact mode.
  """
  known = check_scores(known_scores, "known_scores")
  correct = np.asarray(known_correct, bool)
  if correct.shape != known.shape:
    raise ValueError(f"known_correct has shape {correct.shape}, known_scores {known.shape}")
  unknown = np.sort(check_scores(unknown_scores, "unknown_scores"))
  good = np.sort(known[correct])
  thresholds = np.unique(np.concatenate([known, unknown]))[::-1]
  ccr = (len(good) - np.searchsorted(good, thresholds, side="left")) / len(known)
  fpr = (len(unknown) - np.searchsorted(unknown, thresholds, side="left")) / len(unknown)
  return np.r_[0.0, fpr], np.r_[0.0, ccr]


def _exact_ranking_metrics(known: np.ndarray, correct: np.ndarray,
                           unknown: np.ndarray) -> dict[str, float]:
  """auroc, oscr, dtacc, aupr_in, aupr_out by the exact definitions. Shapes [Nk], [Nu]."""
  nk, nu = len(known), len(unknown)
  known_sorted, unknown_sorted = np.sort(known), np.sort(unknown)
  wins = _twice_wins(known, unknown_sorted)
  pairs2 = 2.0 * nk * nu
  thresholds = np.unique(np.concatenate([known, unknown]))
  tpr = (nk - np.searchsorted(known_sorted, thresholds, side="left")) / nk
  tnr = np.searchsorted(unknown_sorted, thresholds, side="left") / nu
  return {
      "auroc": float(wins.sum() / pairs2),
      "oscr": float(wins[correct].sum() / pairs2),
      # The lowest threshold accepts everything (value 0.5, as accepting nothing would).
      "dtacc": float(np.max(0.5 * (tpr + tnr))),
      "aupr_in": average_precision(known, unknown),
      "aupr_out": average_precision(-unknown, -known),
  }


# ----------------------------------------------------------------------------- ARPL mode


def arpl_curve(known: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """ARPL's (tp, fp) counts, int64 [Nk + Nu + 1], from `get_curve_online`.

  ARPL walks the merged ascending scores and rejects one sample per step, starting from
  "accept all" (tp = Nk, fp = Nu). When a known and an unknown tie, the known is rejected
  first, so every tie is counted against the known. That order is a sort by
  (score, is_unknown).
  """
  scores = np.concatenate([known, unknown])
  is_unknown = np.concatenate([np.zeros(len(known), bool), np.ones(len(unknown), bool)])
  rejected_unknown = is_unknown[np.lexsort((is_unknown, scores))]
  fp_removed = np.r_[0, np.cumsum(rejected_unknown)]
  tp_removed = np.arange(len(scores) + 1) - fp_removed
  return len(known) - tp_removed, len(unknown) - fp_removed


def _arpl_oscr(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
  """ARPL's `compute_oscr`, vectorised.

  ARPL sorts the concatenated (known, unknown) scores with NumPy's default, unstable
  `argsort`, then for each cut k = 0..n-2 takes CCR = correct knowns strictly after
  position k and FPR = unknowns at or after position k (the off-by-one: the sample at the
  cut is counted for FPR but not for CCR), adds the points (0, 0) twice and (1, 1), and
  integrates with the trapezoidal rule. Among tied scores the result depends on the order
  that unstable sort leaves them in; the same `np.argsort` call on the same float64 array
  is made here, so it reproduces ARPL on the same data and NumPy build.
  """
  order = np.argsort(np.concatenate([known, unknown]))
  c = np.concatenate([correct, np.zeros(len(unknown), bool)])[order]
  u = np.concatenate([np.zeros(len(known), bool), np.ones(len(unknown), bool)])[order]
  c_from = np.cumsum(c[::-1])[::-1]  # c_from[j] = sum(c[j:])
  u_from = np.cumsum(u[::-1])[::-1]
  # ARPL sorts its points by (FPR, CCR) descending; cut order already is that order.
  ccr = np.r_[1.0, c_from[1:] / len(known), 0.0, 0.0]
  fpr = np.r_[1.0, u_from[:-1] / len(unknown), 0.0, 0.0]
  area = (fpr[:-1] - fpr[1:]) * ((ccr[:-1] + ccr[1:]) / 2.0)
  # cumsum adds left to right like ARPL's Python loop (np.sum's pairwise order differs
  # in the last bits).
  return float(np.cumsum(area)[-1])


def _arpl_metrics(known: np.ndarray, correct: np.ndarray,
                  unknown: np.ndarray) -> dict[str, float]:
  """auroc, oscr, dtacc, aupr_in, aupr_out, tnr95 by ARPL's `core/evaluation.py`.

  With tp, fp from `arpl_curve`, TPR = tp / Nk, FPR = fp / Nu:
    tnr95    1 - FPR at the first cut minimising |TPR - 0.95| (the point nearest 0.95,
             which may lie below it). The first cut reaching a TPR has just rejected a
             known and still accepts every unknown scoring at or above that known.
    auroc    trapezoidal area under TNR vs TPR with (1, 1) and (0, 0) appended; because ties
             are rejected known-first this is P(known > unknown) with ties counted 0.
    dtacc    max over ARPL's cuts of (TPR + 1 - FPR) / 2.
    aupr_in  area under precision tp / (tp + fp) vs TPR, over cuts with tp + fp > 0, with end
             points precision 0.5 at TPR 1 (zero width: the first cut is at TPR 1 too) and
             precision 0 at TPR 0 (this one counts: the last strip is a triangle).
    aupr_out area under unknown precision (Nu - fp) / (rejected) vs TNR, over cuts with
             something rejected, with end points 0 at TNR 0 (counts) and 0.5 at TNR 1
             (zero width).
    oscr     `_arpl_oscr`.
  Shapes: known, correct [Nk]; unknown [Nu].
  """
  tp, fp = arpl_curve(known, unknown)
  nk, nu = len(known), len(unknown)
  tpr_cut = tp / nk
  tpr = np.r_[1.0, tpr_cut, 0.0]
  fpr = np.r_[1.0, fp / nu, 0.0]
  nearest = np.abs(tpr_cut - 0.95).argmin()

  accepted = tp + fp
  keep_in = np.r_[True, accepted > 0, True]
  precision_in = np.r_[0.5, tp / np.maximum(accepted, 1), 0.0]
  rejected = (nk - tp) + (nu - fp)
  keep_out = np.r_[True, rejected > 0, True]
  precision_out = np.r_[0.0, (nu - fp) / np.maximum(rejected, 1), 0.5]
  return {
      "tnr95": float(1.0 - fp[nearest] / nu),
      "auroc": float(-trapezoid(1.0 - fpr, tpr)),
      "dtacc": float(0.5 * (tpr_cut + 1.0 - fp / nu).max()),
      "aupr_in": float(-trapezoid(precision_in[keep_in], tpr[keep_in])),
      "aupr_out": float(trapezoid(precision_out[keep_out], (1.0 - fpr)[keep_out])),
      "oscr": _arpl_oscr(known, correct, unknown),
  }


# ----------------------------------------------------------------------------- entry point


def open_set_metrics(known_scores, known_preds, known_labels, unknown_scores, *,
                     arpl_compat: bool = False, unknown_preds=None,
                     num_classes: int | None = None) -> dict[str, Any]:
  """All open-set metrics of one evaluation, computed over the whole test set at once.

  Args:
    known_scores: [Nk] open-set score of each known test sample (higher = more known).
    known_preds: [Nk] int closed-set prediction (argmax class) of each known sample.
    known_labels: [Nk] int true class, 0..K-1.
    unknown_scores: [Nu] score of each unknown test sample.
    arpl_compat: compute auroc, oscr, dtacc, aupr_in, aupr_out and tnr95 with ARPL's
      conventions (see `_arpl_metrics`; there tnr95 is ARPL's "TNR" and is not 1 - fpr95).
      fpr95, acc and macro_f1 have no ARPL counterpart and stay exact.
    unknown_preds: optional [Nu] int closed-set prediction of each unknown; macro_f1 then
      charges each accepted unknown to its predicted class. Without it, accepted unknowns
      only lower the unknown class's recall (see `macro_f1_at_threshold`).
    num_classes: K; default max(label, prediction) + 1.

  Returns:
    dict with the float keys of METRIC_KEYS (each in [0, 1]) and int `num_known`,
    `num_unknown`.

  Raises:
    ValueError: non-finite or empty scores, mismatched lengths, non-integer, negative or
      out-of-range class ids.
  """
  known = check_scores(known_scores, "known_scores")
  unknown = check_scores(unknown_scores, "unknown_scores")
  preds = _class_ids(known_preds, "known_preds", len(known))
  labels = _class_ids(known_labels, "known_labels", len(known))
  u_preds = None if unknown_preds is None else _class_ids(unknown_preds, "unknown_preds",
                                                          len(unknown))
  largest = max(preds.max(), labels.max(), -1 if u_preds is None else u_preds.max())
  if num_classes is None:
    num_classes = int(largest) + 1
  elif num_classes < 1:
    raise ValueError(f"num_classes must be positive, got {num_classes}")
  elif largest >= num_classes:
    raise ValueError(f"class id {largest} out of range for num_classes={num_classes}")

  correct = preds == labels
  threshold = tpr95_threshold(known)
  fpr95 = float(np.count_nonzero(unknown >= threshold) / len(unknown))
  out: dict[str, Any] = {"fpr95": fpr95, "tnr95": 1.0 - fpr95}
  if arpl_compat:
    out.update(_arpl_metrics(known, correct, unknown))
  else:
    out.update(_exact_ranking_metrics(known, correct, unknown))
  out["acc"] = float(correct.mean())
  out["macro_f1"] = macro_f1_at_threshold(known, preds, labels, unknown, threshold,
                                          num_classes, u_preds)
  out = {key: out[key] for key in METRIC_KEYS}
  out["num_known"] = int(len(known))
  out["num_unknown"] = int(len(unknown))
  return out
