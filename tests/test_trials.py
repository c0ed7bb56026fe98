"""`experiments.trials`: trains or collects the trials of a benchmark, summarises them as mean
+- std beside the published numbers, and writes trials.json / trials.md."""
import json
import os

import numpy as np
import pytest

from backmix_jax.evaluation import published
from backmix_jax.evaluation.metrics import METRIC_KEYS
from backmix_jax.training.checkpointing import CheckpointError
from backmix_jax.training.validate import ConfigError
from backmix_jax.commands import trials
# Shared with the evaluate tests: the tiny digits config and the compilation cache fixture.
from tests.test_evaluate_cli import compile_cache, digits_config, run_cli  # noqa: F401


@pytest.fixture(scope="module")
def trials_dir(tmp_path_factory, compile_cache):  # noqa: F811
  """Trials 0 and 1, BackMix and the BackMix-off baseline, trained in one run_trials call."""
  workdir = tmp_path_factory.mktemp("trials")
  record = trials.run_trials(digits_config(), str(workdir), [0, 1], train=True, baseline=True)
  return workdir, record


def _per_trial(workdir, name):
  with open(workdir / name / "metrics.json") as f:
    return json.load(f)


@pytest.mark.slow
def test_summary_is_mean_and_sample_std_of_the_trial_metrics(trials_dir):
  """trials.json holds, per method, the mean and sample std (ddof=1) of each trial's own
  metrics.json; the trials ran in trial_<t> / trial_<t>_plain with their own class splits."""
  workdir, _ = trials_dir
  with open(workdir / "trials.json") as f:
    record = json.load(f)
  assert record["benchmark"] == "digits" and record["protocol"] == "arpl"
  assert record["trials"] == [0, 1]
  for key, suffix, backmix in (("backmix", "", True), ("plain", "_plain", False)):
    entry = record["methods"][key]
    assert not entry["missing"]
    runs = [_per_trial(workdir, f"trial_{t}{suffix}") for t in (0, 1)]
    assert [r["run"]["trial"] for r in runs] == [0, 1]
    assert all(r["run"]["backmix"] is backmix for r in runs)
    assert runs[0]["run"]["known_classes"] != runs[1]["run"]["known_classes"]
    for k in METRIC_KEYS:
      values = [r[k] for r in runs]
      mean, std = entry["summary"][k]
      assert mean == pytest.approx(np.mean(values), abs=1e-12), k
      assert std == pytest.approx(np.std(values, ddof=1), abs=1e-12), k
      assert entry["per_trial"]["0"][k] == values[0]


@pytest.mark.slow
def test_markdown_names_protocol_and_says_digits_has_no_published_numbers(trials_dir):
  """trials.md: one row per method with the split protocol and trials named, values x100 as
  mean ± std; digits has no published row and says so; the overlay is of one named trial."""
  workdir, record = trials_dir
  md = (workdir / "trials.md").read_text()
  auroc = record["methods"]["backmix"]["summary"]["auroc"]
  row = next(line for line in md.splitlines() if line.startswith("| BackMix [arpl protocol"))
  assert "trials 0,1]" in row and f"{100 * auroc[0]:.2f} ± {100 * auroc[1]:.2f}" in row
  assert any(line.startswith("| baseline (BackMix off) [arpl protocol") for line in md.splitlines())
  assert "(published)" not in md and "No published numbers for digits" in md
  assert record["overlay"]["trial"] == 0 and record["overlay"]["pooled"] is False
  for name in ("roc_overlay.png", "oscr_overlay.png"):
    assert (workdir / name).read_bytes()[:4] == b"\x89PNG"
  assert "trial 0 (one trial, not pooled" in md


@pytest.mark.slow
def test_command_collects_without_training(trials_dir, compile_cache):  # noqa: F811
  """Run again without --train, the command collects every finished trial (no training, no
  checkpoint written) and reproduces the same summary."""
  workdir, record = trials_dir
  before = sorted(os.listdir(workdir / "trial_1" / "checkpoints"))
  mtime = os.path.getmtime(workdir / "trial_1" / "metrics.json")
  r = run_cli("experiments.trials", workdir, "--trials", "0-1", "--baseline", env=compile_cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.count("collected metrics.json") == 4
  assert "train  done" not in r.stdout
  assert sorted(os.listdir(workdir / "trial_1" / "checkpoints")) == before
  assert os.path.getmtime(workdir / "trial_1" / "metrics.json") == mtime
  with open(workdir / "trials.json") as f:
    again = json.load(f)
  assert again["methods"]["backmix"]["summary"] == json.loads(
      json.dumps(record["methods"]["backmix"]["summary"]))


@pytest.mark.slow
def test_stale_metrics_are_recomputed_from_the_final_checkpoint(trials_dir, tmp_path):
  """A trial whose metrics.json is of an earlier step (e.g. after `evaluate --step`) is
  evaluated again from its final checkpoint instead of being trained or skipped."""
  workdir, _ = trials_dir
  path = workdir / "trial_1" / "metrics.json"
  original = json.loads(path.read_text())
  path.write_text(json.dumps(dict(original, step=2)))
  config = trials.trial_config(digits_config(), 1, True)
  assert trials.final_metrics(config, str(workdir / "trial_1"))[0] is None
  metrics, how = trials.collect_or_train(config, str(workdir / "trial_1"), train=False)
  assert how.startswith("evaluated the final checkpoint")
  assert metrics == original and json.loads(path.read_text()) == original


@pytest.mark.slow
def test_missing_trials_are_named_and_left_out(trials_dir, tmp_path):
  """Without --train a trial that never ran is reported missing (and excluded from the mean);
  with no finished trial at all the command fails with CheckpointError."""
  workdir, _ = trials_dir
  os.symlink(workdir / "trial_0", tmp_path / "trial_0")
  record = trials.run_trials(digits_config(), str(tmp_path), [0, 2])
  entry = record["methods"]["backmix"]
  assert list(entry["per_trial"]) == ["0"] and "pass --train" in entry["missing"]["2"]
  assert entry["summary"]["auroc"] == (entry["per_trial"]["0"]["auroc"], 0.0)
  md = (tmp_path / "trials.md").read_text()
  assert "trials 0]" in md and "trial 2 BackMix: no metrics.json" in md
  with pytest.raises(CheckpointError, match="no finished trial"):
    trials.run_trials(digits_config(), str(tmp_path / "empty"), [3])


@pytest.mark.slow
def test_a_run_record_of_another_config_is_not_collected(trials_dir):
  """metrics.json of a different schedule, trial or model does not count as this trial's, and
  a checkpoint of another class split is refused, not evaluated under the wrong label."""
  workdir, _ = trials_dir
  d = str(workdir / "trial_0")
  before = (workdir / "trial_0" / "metrics.json").read_text()
  with pytest.raises(CheckpointError, match="trial=0 in training, 1 here"):
    trials.collect_or_train(trials.trial_config(digits_config(), 1, True), d, train=True)
  assert (workdir / "trial_0" / "metrics.json").read_text() == before
  assert trials.final_metrics(trials.trial_config(digits_config(), 0, True), d)[0] is not None
  for change, word in (({"num_epochs": 2}, "num_epochs"), ({"model": "classifier32"}, "model"),
                       ({"score": "energy"}, "score")):
    config = trials.trial_config(digits_config(**change), 0, True)
    metrics, why = trials.final_metrics(config, d)
    assert metrics is None and word in why
  assert "trial" in trials.final_metrics(trials.trial_config(digits_config(), 1, True), d)[1]
  assert "backmix" in trials.final_metrics(trials.trial_config(digits_config(), 0, False), d)[1]


@pytest.mark.parametrize("spec, expected", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]),
                                            ("0,2-3", [0, 2, 3]), ("1,1,0", [0, 1])])
def test_parse_trials(spec, expected):
  """Trial lists and ranges parse to sorted distinct ids."""
  assert trials.parse_trials(spec) == expected


@pytest.mark.parametrize("spec", ["5", "0-5", "3-1", "a", "", "0,,1", "-1"])
def test_parse_trials_rejects_bad_lists(spec):
  """Out-of-range ids, empty ranges and non-numbers are ValueErrors naming the flag."""
  with pytest.raises(ValueError, match="--trials"):
    trials.parse_trials(spec)


@pytest.mark.slow
def test_bad_trials_flag_exits_2_with_one_line(tmp_path, compile_cache):  # noqa: F811
  """A bad --trials is refused while parsing flags: exit 2, one line."""
  r = run_cli("experiments.trials", tmp_path, "--trials", "0-7", env=compile_cache)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "trials are 0..4" in lines[0], r.stderr


def test_baseline_needs_backmix_on(tmp_path):
  """--baseline compares BackMix with BackMix off; on a config with BackMix off it refuses."""
  with pytest.raises(ConfigError, match="already has backmix.enabled=False"):
    trials.run_trials(digits_config(**{"backmix.enabled": False}), str(tmp_path), [0],
                      baseline=True)


def test_published_numbers_are_fractions_with_their_protocol():
  """docs/method.md's published results as data: CIFAR10 AUROC of each row as a fraction
  with its protocol; digits and MNIST have none; ARPL and Vaze lists count as one protocol."""
  rows = published.published_rows("cifar10")
  assert rows == {"BackMix [protocol unstated]": {"auroc": 0.913},
                  "ARPL+CS [arpl protocol]": {"auroc": 0.910},
                  "CSSR [cssr protocol]": {"auroc": 0.913},
                  "RCSSR [cssr protocol]": {"auroc": 0.915},
                  "MLS [vaze protocol]": {"auroc": 0.936}}
  assert published.published_rows("tinyimagenet")["ARPL+CS [arpl protocol]"] == {"auroc": 0.782}
  assert published.published_rows("ood_cifar10_vs_svhn") == {
      "BackMix [no class split]": {"dtacc": 0.885}}
  for r in published.PUBLISHED:
    assert all(0 < v < 1 for v in r.metrics.values()) and r.protocol and r.source
  assert published.published_results("digits") == ()
  assert published.published_results("mnist") == ()
  assert published.published_notes("digits", "arpl")[0].startswith("No published numbers")
  notes = "\n".join(published.published_notes("cifar10", "vaze"))
  assert "ARPL+CS [arpl protocol]" in notes and "same split lists" in notes
  assert "different split lists" in notes  # the CSSR rows
  assert published.same_protocol("vaze", "arpl") and not published.same_protocol("cssr", "arpl")
