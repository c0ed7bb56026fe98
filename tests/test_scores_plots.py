"""Open-set scores from logits, PNG plots and markdown reports."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax.evaluation import plots, report, scores
from backmix_jax.evaluation.metrics import open_set_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- scores


def _logits(seed=0, shape=(16, 6)):
  return np.random.default_rng(seed).normal(0.0, 3.0, shape)


@pytest.mark.parametrize("name", ["msp", "mls", "energy"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32, np.float64, np.int32])
def test_scores_are_float32_whatever_the_logit_dtype(name, dtype):
  """Every score is float32 with the batch shape, for low-precision and integer logits."""
  x = _logits().astype(dtype)  # NumPy holds bfloat16 too (ml_dtypes)
  s = scores.get_score(name)(x)
  assert s.dtype == jnp.float32
  assert s.shape == (16,)


def test_scores_match_float64_references():
  """msp = max softmax, mls = max logit, energy = T * logsumexp(x / T), on float64 math."""
  x = _logits(1, (4, 3, 5))  # any leading shape
  z = x - x.max(-1, keepdims=True)
  softmax = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  np.testing.assert_allclose(scores.msp(x), softmax.max(-1), rtol=1e-6)
  np.testing.assert_allclose(scores.mls(x), x.max(-1), rtol=1e-6)
  for t in (1.0, 2.5):
    lse = x.max(-1) / t + np.log(np.exp(x / t - x.max(-1, keepdims=True) / t).sum(-1))
    np.testing.assert_allclose(scores.energy(x, temperature=t), t * lse, rtol=1e-6)


@pytest.mark.parametrize("name", ["msp", "mls", "energy"])
def test_higher_score_means_more_known(name):
  """A sharper (more confident) logit vector scores higher than a flat one."""
  confident = np.array([[9.0, 0.0, 0.0, 0.0]])
  flat = np.array([[1.0, 1.0, 1.0, 1.0]])
  fn = scores.get_score(name)
  assert fn(confident)[0] > fn(flat)[0]


def test_msp_of_saturated_bfloat16_logits_does_not_tie():
  """bfloat16 softmax rounds both confidences to 1.0 (a tie); msp casts first and keeps them
  apart, so a known/unknown pair stays ordered."""
  logits = jnp.array([[8.0, 0, 0, 0, 0, 0], [9.0, 0, 0, 0, 0, 0]], jnp.bfloat16)
  low_precision = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
  assert low_precision[0] == low_precision[1]  # the hazard is real
  s = scores.msp(logits)
  assert s[1] > s[0]
  f32 = scores.msp(logits.astype(jnp.float32))
  np.testing.assert_array_equal(s, f32)
  m = open_set_metrics(np.asarray(s[1:]), [0], [0], np.asarray(s[:1]))
  assert m["auroc"] == 1.0


def test_scores_work_under_jit():
  """The scores trace under jax.jit (fixed shapes) and agree with eager evaluation."""
  x = jnp.asarray(_logits(2), jnp.bfloat16)
  for name in scores.SCORES:
    fn = scores.get_score(name)
    np.testing.assert_allclose(jax.jit(fn)(x), fn(x), rtol=1e-6)


def test_get_score_rejects_unknown_names_and_registry_is_read_only():
  """Unknown names raise ValueError listing the registered ones; SCORES cannot be edited."""
  with pytest.raises(ValueError, match=r"unknown score 'odin'.*'energy', 'mls', 'msp'"):
    scores.get_score("odin")
  with pytest.raises(TypeError):
    scores.SCORES["odin"] = scores.msp
  with pytest.raises(ValueError, match="temperature"):
    scores.energy(_logits(), temperature=0.0)
  with pytest.raises(ValueError, match="class axis"):
    scores.msp(jnp.float32(1.0))


# ----------------------------------------------------------------------------- plots


def _scores_data(seed=0):
  rng = np.random.default_rng(seed)
  known = rng.normal(1.0, 1.0, 200)
  unknown = rng.normal(0.0, 1.0, 150)
  correct = rng.random(200) < 0.8
  return known, correct, unknown


def _assert_png(path, returned):
  assert returned == str(path)
  data = path.read_bytes()
  assert data[:8] == PNG_SIGNATURE and len(data) > 2000


def test_plot_functions_write_png_files(tmp_path):
  """Each plot writes a non-empty PNG at the path it returns (creating folders)."""
  known, correct, unknown = _scores_data()
  p = tmp_path / "plots" / "roc.png"
  _assert_png(p, plots.plot_roc(known, unknown, p, label="softmax"))
  p = tmp_path / "hist.png"
  _assert_png(p, plots.plot_score_histogram(known, unknown, p))
  p = tmp_path / "oscr.png"
  _assert_png(p, plots.plot_oscr(known, correct, unknown, p))


def test_overlay_plots_write_png_files(tmp_path):
  """Baseline and BackMix curves overlay in one ROC and one OSCR figure."""
  base, base_correct, base_unknown = _scores_data(0)
  mix, mix_correct, mix_unknown = _scores_data(1)
  p = tmp_path / "roc_overlay.png"
  _assert_png(p, plots.plot_roc_curves({"baseline": (base, base_unknown),
                                        "BackMix": (mix + 0.5, mix_unknown)}, p))
  p = tmp_path / "oscr_overlay.png"
  _assert_png(p, plots.plot_oscr_curves({"baseline": (base, base_correct, base_unknown),
                                         "BackMix": (mix, mix_correct, mix_unknown)}, p))
  with pytest.raises(ValueError, match="empty"):
    plots.plot_roc_curves({}, tmp_path / "none.png")


def test_plots_reject_non_finite_scores(tmp_path):
  """Plots validate scores like the metrics do."""
  known, _, unknown = _scores_data()
  known[3] = np.nan
  with pytest.raises(ValueError, match="known_scores has 1 NaN"):
    plots.plot_score_histogram(known, unknown, tmp_path / "bad.png")


# ----------------------------------------------------------------------------- reports


METRICS = {"auroc": 0.912345, "oscr": 0.85, "dtacc": 0.84, "aupr_in": 0.9, "aupr_out": 0.8,
           "fpr95": 0.4567, "tnr95": 0.5433, "acc": 0.95, "macro_f1": 0.7,
           "num_known": 6000, "num_unknown": 4000}


def test_metrics_table_is_one_markdown_row_in_percent():
  """Header, separator and one row; values x100 with two decimals; FPR@95 marked classic."""
  table = report.metrics_table_markdown(METRICS, name="cifar10 trial 0")
  lines = table.strip().split("\n")
  assert len(lines) == 3
  assert "AUROC" in lines[0] and "FPR@95 (classic)" in lines[0] and "macro-F1" in lines[0]
  assert lines[1].startswith("| --- |")
  assert lines[2] == ("| cifar10 trial 0 | 91.23 | 85.00 | 84.00 | 90.00 | 80.00 | 45.67 | "
                      "54.33 | 95.00 | 70.00 |")
  with pytest.raises(ValueError, match="no metric"):
    report.metrics_table_markdown({"loss": 1.0})


def test_summarize_trials_mean_and_sample_std():
  """Mean and ddof=1 std per numeric key; a single trial has std 0; gaps raise."""
  trials = [dict(METRICS, auroc=a) for a in (0.90, 0.92, 0.91, 0.95, 0.89)]
  summary = report.summarize_trials(trials)
  aurocs = np.array([0.90, 0.92, 0.91, 0.95, 0.89])
  assert summary["auroc"][0] == pytest.approx(aurocs.mean())
  assert summary["auroc"][1] == pytest.approx(aurocs.std(ddof=1))
  assert summary["oscr"] == pytest.approx((0.85, 0.0))
  assert summary["num_known"] == (6000.0, 0.0)
  assert report.summarize_trials(trials[:1])["auroc"] == (0.90, 0.0)
  with pytest.raises(ValueError, match="'oscr' missing from trials \\[1\\]"):
    report.summarize_trials([METRICS, {"auroc": 0.9}])
  with pytest.raises(ValueError, match="no trials"):
    report.summarize_trials([])


def test_trials_table_puts_published_numbers_beside_ours():
  """Rows print 'mean ± std' x100, published rows follow with '-' where not published."""
  rows = {"BackMix+softmax [ARPL splits]": {"auroc": (0.913, 0.005), "oscr": (0.85, 0.01)}}
  published = {"BackMix (paper)": {"auroc": 0.913}, "CSSR": {"auroc": (0.913, 0.0)}}
  table = report.trials_table_markdown(rows, published)
  lines = table.strip().split("\n")
  assert lines[0] == "| method | AUROC | OSCR |"
  assert lines[2] == "| BackMix+softmax [ARPL splits] | 91.30 ± 0.50 | 85.00 ± 1.00 |"
  assert lines[3] == "| BackMix (paper) (published) | 91.30 | - |"
  assert lines[4] == "| CSSR (published) | 91.30 ± 0.00 | - |"
  with pytest.raises(ValueError, match="not a fraction"):
    report.trials_table_markdown(rows, {"ARPL+CS": {"auroc": 91.0}})


def test_trials_table_from_real_metric_dicts():
  """open_set_metrics -> summarize_trials -> trials_table_markdown round trip."""
  trials = []
  for seed in range(3):
    known, correct, unknown = _scores_data(seed)
    labels = np.zeros(200, int)
    trials.append(open_set_metrics(known, np.where(correct, 0, 1), labels, unknown))
  table = report.trials_table_markdown({"softmax": report.summarize_trials(trials)})
  header = table.split("\n")[0]
  assert "num_known" not in header and header.count("|") == 11  # 9 metrics + name column


def test_trials_table_with_own_columns_and_signed_differences():
  """columns: any keys (per-condition ones) under their own headers, in that order, '-' where
  a row lacks one; signed: differences print their sign and may be negative, not below -1
  (tools/fgbg_study.py's two tables)."""
  columns = {"acc/known_swapped": "acc swap", "auroc": "AUROC all"}
  rows = {"off (2 seeds)": {"acc/known_swapped": (0.5, 0.1), "auroc": (0.8, 0.0)},
          "oracle (1 seeds)": {"auroc": (0.9, 0.0)}}
  lines = report.trials_table_markdown(rows, first_column="variant", columns=columns).split("\n")
  assert lines[0] == "| variant | acc swap | AUROC all |"
  assert lines[2] == "| off (2 seeds) | 50.00 ± 10.00 | 80.00 ± 0.00 |"
  assert lines[3] == "| oracle (1 seeds) | - | 90.00 ± 0.00 |"
  diffs = {"oracle": {"acc/known_swapped": (-0.125, 0.05), "auroc": (0.0, 0.0)}}
  table = report.trials_table_markdown(diffs, columns=columns, signed=True)
  assert table.split("\n")[2] == "| oracle | -12.50 ± 5.00 | +0.00 ± 0.00 |"
  with pytest.raises(ValueError, match="not a fraction"):
    report.trials_table_markdown(diffs, columns=columns)  # a negative is no fraction
  with pytest.raises(ValueError, match="not a fraction"):
    report.trials_table_markdown({"x": {"auroc": (-1.5, 0.0)}}, columns=columns, signed=True)


def test_compare_curves_pairs_runs_by_epoch(tmp_path):
  """tools/compare_curves.py: each run's eval records by epoch (a resumed run's repeated
  epoch: the last record wins; train records ignored), one column per run x100, and run 2 -
  run 1 where both evaluated the epoch; the PNG is written."""
  import json
  from tools import compare_curves

  def workdir(name, records):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(d)

  plain = workdir("plain", [{"step": 10, "kind": "eval", "epoch": 5, "auroc": 0.70},
                            {"step": 10, "kind": "train", "epoch": 5, "auroc": 0.1},
                            {"step": 20, "kind": "eval", "epoch": 10, "auroc": 0.80}])
  mixed = workdir("mixed", [{"step": 10, "kind": "eval", "epoch": 5, "auroc": 0.60},
                            {"step": 10, "kind": "eval", "epoch": 5, "auroc": 0.75},
                            {"step": 30, "kind": "eval", "epoch": 15, "auroc": 0.90}])
  by_run = compare_curves.curves({"plain": plain, "mixed": mixed}, "auroc")
  assert by_run == {"plain": {5: 0.70, 10: 0.80}, "mixed": {5: 0.75, 15: 0.90}}
  lines = compare_curves.table(by_run, "auroc").split("\n")
  assert lines[0] == "| epoch | plain auroc | mixed auroc | mixed - plain |"
  assert lines[2:] == ["| 5 | 70.00 | 75.00 | +5.00 |", "| 10 | 80.00 |  |  |",
                       "| 15 |  | 90.00 |  |"]
  out = tmp_path / "curves.png"
  assert compare_curves.main(["--run", f"plain={plain}", "--run", f"mixed={mixed}",
                              "--out", str(out)]) == 0
  assert out.stat().st_size > 0
