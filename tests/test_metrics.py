"""Open-set metrics against sklearn, brute-force pairwise definitions and a loop transcription
of ARPL's evaluation formulas."""
import numpy as np
import pytest
from sklearn import metrics as skm

from backmix_jax.evaluation import metrics
from backmix_jax.evaluation.metrics import open_set_metrics

NUM_CLASSES = 4


def make_data(seed, nk=57, nu=43, decimals=None, separation=0.8):
  """Random scores (rounded to `decimals` to create ties), predictions and labels."""
  rng = np.random.default_rng(seed)
  known = rng.normal(separation, 1.0, nk)
  unknown = rng.normal(0.0, 1.0, nu)
  if decimals is not None:
    known, unknown = np.round(known, decimals), np.round(unknown, decimals)
  labels = rng.integers(0, NUM_CLASSES, nk)
  preds = np.where(rng.random(nk) < 0.7, labels, rng.integers(0, NUM_CLASSES, nk))
  unknown_preds = rng.integers(0, NUM_CLASSES, nu)
  return known, preds, labels, unknown, unknown_preds


# Data sets covering no ties, heavy ties, and sizes above NumPy's insertion-sort cutoff.
CASES = [(seed, dec) for seed in range(4) for dec in (None, 1, 0)]


# ----------------------------------------------------------------------------- references


def brute_pairs(known, unknown, weight=None):
  """sum_ij w_i [k_i > u_j] + 0.5 [k_i == u_j], over Nk * Nu: the O(n^2) definition."""
  k, u = known[:, None], unknown[None, :]
  wins = (k > u) + 0.5 * (k == u)
  w = np.ones(len(known)) if weight is None else weight.astype(float)
  return float((w[:, None] * wins).sum() / (len(known) * len(unknown)))


def brute_dtacc(known, unknown):
  """max over every threshold (each score, and above all scores) of (TPR + TNR) / 2."""
  best = 0.5
  for t in list(np.unique(np.r_[known, unknown])) + [np.inf]:
    best = max(best, 0.5 * (np.mean(known >= t) + np.mean(unknown < t)))
  return best


def sklearn_fpr95(known, unknown):
  y = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
  fpr, tpr, _ = skm.roc_curve(y, np.r_[known, unknown], drop_intermediate=False)
  return fpr[np.argmax(tpr >= 0.95)]


def loop_trapezoid(ys, xs):
  area = 0.0
  for i in range(len(xs) - 1):
    area += (xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2.0
  return area


def arpl_reference(known, correct, unknown):
  """Direct, loop-based transcription of ARPL's core/evaluation.py formulas (slow)."""
  ks, us = sorted(known), sorted(unknown)
  nk, nu = len(ks), len(us)
  # get_curve_online: merge ascending; a known is rejected first unless the unknown is lower.
  tp, fp = [nk], [nu]
  i = j = 0
  while i < nk or j < nu:
    if j == nu or (i < nk and not us[j] < ks[i]):
      i += 1
    else:
      j += 1
    tp.append(nk - i)
    fp.append(nu - j)
  best, pos = None, 0
  for l, t in enumerate(tp):  # first index of the smallest |TPR - 0.95|
    d = abs(t / nk - 0.95)
    if best is None or d < best:
      best, pos = d, l
  out = {"tnr95": 1.0 - fp[pos] / nu}
  tpr = [1.0] + [t / nk for t in tp] + [0.0]
  fpr = [1.0] + [f / nu for f in fp] + [0.0]
  out["auroc"] = -loop_trapezoid([1.0 - f for f in fpr], tpr)
  out["dtacc"] = max(0.5 * (t / nk + 1.0 - f / nu) for t, f in zip(tp, fp))
  xs, ys = [1.0], [0.5]
  for t, f in zip(tp, fp):
    if t + f > 0:
      xs.append(t / nk)
      ys.append(t / (t + f))
  out["aupr_in"] = -loop_trapezoid(ys + [0.0], xs + [0.0])
  xs, ys = [0.0], [0.0]
  for t, f in zip(tp, fp):
    rejected = (nk - t) + (nu - f)
    if rejected > 0:
      xs.append(1.0 - f / nu)
      ys.append((nu - f) / rejected)
  out["aupr_out"] = loop_trapezoid(ys + [0.5], xs + [1.0])
  # compute_oscr: CCR counts correct knowns after the cut, FPR unknowns from the cut on.
  scores = np.concatenate([known, unknown])
  order = np.argsort(scores)
  corr = np.concatenate([correct, np.zeros(nu, bool)])[order]
  unk = np.concatenate([np.zeros(nk, bool), np.ones(nu, bool)])[order]
  n = nk + nu
  ccr, fpr_o = [0.0] * (n + 2), [0.0] * (n + 2)
  for cut in range(n - 1):
    ccr[cut] = float(corr[cut + 1:].sum()) / nk
    fpr_o[cut] = float(unk[cut:].sum()) / nu
  ccr[n + 1], fpr_o[n + 1] = 1.0, 1.0
  points = sorted(zip(fpr_o, ccr), reverse=True)
  oscr = 0.0
  for (f0, c0), (f1, c1) in zip(points, points[1:]):
    oscr += (f0 - f1) * ((c0 + c1) / 2.0)
  out["oscr"] = oscr
  return out


# ----------------------------------------------------------------------------- exact mode


@pytest.mark.parametrize("seed,decimals", CASES)
def test_exact_mode_matches_sklearn_and_pairwise_definitions(seed, decimals):
  """Every exact metric equals its sklearn value or its brute-force definition."""
  known, preds, labels, unknown, unknown_preds = make_data(seed, decimals=decimals)
  m = open_set_metrics(known, preds, labels, unknown, unknown_preds=unknown_preds)
  y = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
  s = np.r_[known, unknown]
  correct = preds == labels
  assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
  assert m["auroc"] == pytest.approx(brute_pairs(known, unknown), abs=1e-12)
  assert m["oscr"] == pytest.approx(brute_pairs(known, unknown, correct), abs=1e-12)
  assert m["dtacc"] == pytest.approx(brute_dtacc(known, unknown), abs=1e-12)
  assert m["aupr_in"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
  assert m["aupr_out"] == pytest.approx(skm.average_precision_score(1 - y, -s), abs=1e-12)
  assert m["fpr95"] == pytest.approx(sklearn_fpr95(known, unknown), abs=1e-12)
  assert m["tnr95"] == pytest.approx(1.0 - m["fpr95"], abs=1e-15)
  assert m["acc"] == pytest.approx(correct.mean(), abs=1e-15)
  assert m["num_known"] == len(known) and m["num_unknown"] == len(unknown)


def f1_reference(known, preds, labels, unknown, unknown_preds, num_classes):
  """sklearn macro-F1 on explicit K+1-class predictions at the 95 %-TPR threshold."""
  t = np.sort(known)[::-1][int(np.ceil(0.95 * len(known) - 1e-9)) - 1]
  y_true = np.r_[labels, np.full(len(unknown), num_classes)]
  y_pred = np.r_[np.where(known >= t, preds, num_classes),
                 np.where(unknown >= t, unknown_preds, num_classes)]
  return skm.f1_score(y_true, y_pred, labels=list(range(num_classes + 1)), average="macro",
                      zero_division=0)


@pytest.mark.parametrize("seed,decimals", CASES)
def test_macro_f1_equals_sklearn_on_thresholded_predictions(seed, decimals):
  """macro_f1 = sklearn f1_score(average='macro') on the K+1-class predictions, with and
  without the unknowns' closed-set predictions (then they land outside the K+1 classes)."""
  known, preds, labels, unknown, unknown_preds = make_data(seed, decimals=decimals)
  with_preds = open_set_metrics(known, preds, labels, unknown, unknown_preds=unknown_preds)
  assert with_preds["macro_f1"] == pytest.approx(
      f1_reference(known, preds, labels, unknown, unknown_preds, NUM_CLASSES), abs=1e-12)
  without = open_set_metrics(known, preds, labels, unknown)
  outside = np.full(len(unknown), NUM_CLASSES + 1)
  assert without["macro_f1"] == pytest.approx(
      f1_reference(known, preds, labels, unknown, outside, NUM_CLASSES), abs=1e-12)
  # An absent class (num_classes larger than any id) enters the average as 0.
  wider = open_set_metrics(known, preds, labels, unknown, unknown_preds=unknown_preds,
                           num_classes=NUM_CLASSES + 2)
  assert wider["macro_f1"] == pytest.approx(
      f1_reference(known, preds, labels, unknown, unknown_preds, NUM_CLASSES + 2), abs=1e-12)


def test_fpr95_is_the_classic_definition_on_a_worked_example():
  """100 knowns 1..100: the 95 %-TPR threshold is 6; unknowns >= 6 are accepted (ties too)."""
  known = np.arange(1.0, 101.0)
  unknown = np.array([5.0, 6.0, 7.0, 200.0])
  preds = labels = np.zeros(100, int)
  m = open_set_metrics(known, preds, labels, unknown)
  assert m["fpr95"] == 0.75
  assert m["tnr95"] == 0.25


def test_all_equal_scores_give_chance_values():
  """Every score tied: AUROC 1/2, OSCR = acc/2, DTACC 1/2, every unknown accepted."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 30)
  preds = np.where(np.arange(30) < 20, labels, (labels + 1) % 3)
  m = open_set_metrics(np.ones(30), preds, labels, np.ones(12))
  assert m["auroc"] == 0.5
  assert m["oscr"] == pytest.approx(0.5 * 20 / 30)
  assert m["dtacc"] == 0.5
  assert m["fpr95"] == 1.0
  assert m["aupr_in"] == pytest.approx(30 / 42)
  assert m["aupr_out"] == pytest.approx(12 / 42)


@pytest.mark.parametrize("position", [-5.0, 0.3, 10.0])
def test_single_unknown(position):
  """One unknown: AUROC is the (half-tie) fraction of knowns above it, as sklearn says."""
  known, preds, labels, _, _ = make_data(1, decimals=1)
  unknown = np.array([position])
  m = open_set_metrics(known, preds, labels, unknown)
  y = np.r_[np.ones(len(known)), 0.0]
  assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, np.r_[known, unknown]), abs=1e-12)
  assert m["auroc"] == pytest.approx(brute_pairs(known, unknown), abs=1e-12)
  assert m["fpr95"] in (0.0, 1.0)


def test_perfect_separation():
  """Knowns all above unknowns and all correct: every ranking metric is 1, FPR@95 is 0, and
  macro-F1 loses only the 5 % of knowns the 95 %-TPR threshold rejects."""
  known = np.linspace(2, 3, 40)
  labels = np.arange(40) % 5
  m = open_set_metrics(known, labels, labels, np.linspace(-1, 1, 25))
  for key in ("auroc", "oscr", "dtacc", "aupr_in", "aupr_out", "tnr95", "acc"):
    assert m[key] == 1.0, key
  assert m["fpr95"] == 0.0
  # The two lowest knowns (classes 0 and 1, 8 samples each) become "unknown":
  # F1 = 14/15 for classes 0 and 1, 1 for 2..4, 50/52 for the unknown class (25 of 27).
  assert m["macro_f1"] == pytest.approx((2 * 14 / 15 + 3 + 50 / 52) / 6, abs=1e-12)


def test_curves_integrate_to_the_metrics():
  """The plotted ROC and OSCR curves have the reported AUROC and OSCR as their areas."""
  known, preds, labels, unknown, _ = make_data(2, decimals=1)
  m = open_set_metrics(known, preds, labels, unknown)
  fpr, tpr, thresholds = metrics.roc_curve(known, unknown)
  assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and thresholds[0] == np.inf
  assert metrics.trapezoid(tpr, fpr) == pytest.approx(m["auroc"], abs=1e-12)
  fpr, ccr = metrics.oscr_curve(known, preds == labels, unknown)
  assert metrics.trapezoid(ccr, fpr) == pytest.approx(m["oscr"], abs=1e-12)


def test_runs_on_100k_known_and_100k_unknown():
  """The sort-based implementation handles 2 x 100,000 samples (both modes)."""
  rng = np.random.default_rng(0)
  n = 100_000
  known = np.round(rng.normal(1.0, 1.0, n), 3)  # rounded: many ties at this size
  unknown = np.round(rng.normal(0.0, 1.0, n), 3)
  labels = rng.integers(0, 10, n)
  for compat in (False, True):
    m = open_set_metrics(known, labels, labels, unknown, arpl_compat=compat)
    assert all(0.0 <= m[k] <= 1.0 for k in metrics.METRIC_KEYS)
    assert 0.7 < m["auroc"] < 0.8


def test_all_metrics_are_fractions_in_unit_interval():
  """Keys are exactly METRIC_KEYS + the two counts, floats in [0, 1], in both modes."""
  known, preds, labels, unknown, _ = make_data(3, decimals=0)
  for compat in (False, True):
    m = open_set_metrics(known, preds, labels, unknown, arpl_compat=compat)
    assert set(m) == set(metrics.METRIC_KEYS) | {"num_known", "num_unknown"}
    for k in metrics.METRIC_KEYS:
      assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0, k


def test_accepts_jax_and_low_precision_inputs():
  """JAX arrays and float32 / bfloat16 scores give the same result as float64 NumPy."""
  import jax.numpy as jnp
  known, preds, labels, unknown, _ = make_data(0, decimals=1)
  ref = open_set_metrics(known.astype(np.float32), preds, labels, unknown.astype(np.float32))
  got = open_set_metrics(jnp.asarray(known, jnp.float32), jnp.asarray(preds),
                         jnp.asarray(labels), jnp.asarray(unknown, jnp.float32))
  assert got == ref
  bf16 = open_set_metrics(jnp.asarray(known, jnp.bfloat16), preds, labels,
                          jnp.asarray(unknown, jnp.bfloat16))
  assert 0.0 <= bf16["auroc"] <= 1.0


# ----------------------------------------------------------------------------- ARPL mode


@pytest.mark.parametrize("seed,decimals", CASES + [(7, 1)])
def test_arpl_mode_matches_loop_transcription_of_arpl(seed, decimals):
  """Vectorised ARPL mode = a direct loop transcription of ARPL's formulas, ties included."""
  nk, nu = (57, 43) if seed != 7 else (12, 9)  # seed 7: below NumPy's small-sort cutoff
  known, preds, labels, unknown, _ = make_data(seed, nk=nk, nu=nu, decimals=decimals)
  correct = preds == labels
  m = open_set_metrics(known, preds, labels, unknown, arpl_compat=True)
  ref = arpl_reference(known, correct, unknown)
  for key in ("tnr95", "dtacc"):
    assert m[key] == ref[key], key
  for key in ("auroc", "aupr_in", "aupr_out", "oscr"):
    assert m[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("seed", range(3))
def test_arpl_auroc_counts_ties_against_the_known(seed):
  """ARPL AUROC = P(known > unknown) with ties counting 0; below the exact AUROC on ties."""
  known, preds, labels, unknown, _ = make_data(seed, decimals=0)
  arpl = open_set_metrics(known, preds, labels, unknown, arpl_compat=True)
  exact = open_set_metrics(known, preds, labels, unknown)
  strict = float((known[:, None] > unknown[None, :]).mean())
  assert arpl["auroc"] == pytest.approx(strict, abs=1e-12)
  assert arpl["auroc"] < exact["auroc"]
  # Rejecting tied knowns first never creates a better operating point, so DTACC agrees.
  assert arpl["dtacc"] == pytest.approx(exact["dtacc"], abs=1e-12)
  # Metrics without an ARPL counterpart stay exact.
  for key in ("fpr95", "acc", "macro_f1"):
    assert arpl[key] == exact[key]


def test_arpl_tnr_is_read_at_the_first_cut_nearest_tpr_95():
  """ARPL reads TNR at the first cut whose TPR is nearest 0.95. With 20 knowns that cut
  has just rejected the lowest known and none of the unknowns above it, so an unknown
  between the two lowest knowns still counts as accepted; the classic threshold (the
  19th-highest known) rejects it."""
  known = np.arange(20.0)
  unknown = np.array([0.5, 30.0])
  labels = np.zeros(20, int)
  exact = open_set_metrics(known, labels, labels, unknown)
  arpl = open_set_metrics(known, labels, labels, unknown, arpl_compat=True)
  assert exact["tnr95"] == 0.5
  assert arpl["tnr95"] == 0.0
  assert arpl_reference(known, labels == labels, unknown)["tnr95"] == 0.0


# ----------------------------------------------------------------------------- validation


def _valid():
  known, preds, labels, unknown, _ = make_data(0, nk=10, nu=5)
  return dict(known_scores=known, known_preds=preds, known_labels=labels,
              unknown_scores=unknown)


@pytest.mark.parametrize("change,message", [
    (dict(known_scores=np.r_[np.nan, np.zeros(9)]), "known_scores has 1 NaN"),
    (dict(unknown_scores=np.r_[np.inf, np.zeros(4)]), "unknown_scores has 0 NaN and 1 inf"),
    (dict(known_scores=np.zeros(0), known_preds=np.zeros(0, int),
          known_labels=np.zeros(0, int)), "known_scores is empty"),
    (dict(unknown_scores=np.zeros(0)), "unknown_scores is empty"),
    (dict(known_preds=np.zeros(9, int)), "known_preds has 9 entries"),
    (dict(known_labels=np.zeros(11, int)), "known_labels has 11 entries"),
    (dict(known_labels=np.r_[-1, np.zeros(9, int)]), "known_labels has negative"),
    (dict(known_preds=np.r_[-2, np.zeros(9, int)]), "known_preds has negative"),
    (dict(known_labels=np.zeros(10)), "known_labels must hold integer"),
    (dict(known_scores=np.zeros((10, 3))), "known_scores must be 1-D"),
    (dict(known_scores=np.array(["a"] * 10)), "known_scores must hold real numbers"),
])
def test_invalid_inputs_raise_value_error_naming_the_problem(change, message):
  """Each kind of bad input raises ValueError whose message names the array and problem."""
  args = {**_valid(), **change}
  with pytest.raises(ValueError, match=message):
    open_set_metrics(**args)


def test_class_ids_beyond_num_classes_raise():
  """A label or prediction >= num_classes is out of range."""
  args = _valid()
  with pytest.raises(ValueError, match="out of range for num_classes=2"):
    open_set_metrics(**args, num_classes=2)
  with pytest.raises(ValueError, match="unknown_preds has 4 entries"):
    open_set_metrics(**args, unknown_preds=np.zeros(4, int))
