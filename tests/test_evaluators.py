"""Evaluators: periodic evaluation during training, the registry's config checks, and the
diagnostic evaluators (per-condition metrics, CAM localisation) on hand-built data."""
import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax.data.core import Condition
from backmix_jax.data.core import ArraySplit
from backmix_jax.evaluation import evaluators
from tests.helpers import quick_config


@pytest.mark.slow
def test_periodic_evaluations_are_logged_and_leave_training_unchanged(tmp_path):
  """every_epochs=1 evaluates after epoch 1 and at the end: two integer-step `eval` records
  (the final one equal to the returned metrics), train records carry the learning rate and
  gradient norm, and the final metrics equal those of a run that evaluated only at the end
  (and did not profile: profile_steps=2 writes a trace without changing the run)."""
  from backmix_jax.training.train import train_and_evaluate
  overrides = {"num_epochs": 2, "data.image_size": 16, "log_every_steps": 10}
  periodic = train_and_evaluate(quick_config(**overrides, **{"evals.open_set.every_epochs": 1,
                                                             "profile_steps": 2}),
                                str(tmp_path / "periodic"))
  traces = [f for _, _, files in os.walk(tmp_path / "periodic" / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces
  final_only = train_and_evaluate(quick_config(**overrides, **{"evals.open_set.every_epochs": 0}),
                                  str(tmp_path / "final"))
  records = [json.loads(line) for line in open(tmp_path / "periodic" / "metrics.jsonl")]
  evals = [r for r in records if r["kind"] == "eval"]
  steps_per_epoch = 754 // 32
  assert [r["step"] for r in evals] == [steps_per_epoch, 2 * steps_per_epoch]
  assert all(isinstance(r["step"], int) for r in records)
  assert [r["epoch"] for r in evals] == [1, 2]
  assert evals[-1]["auroc"] == periodic["auroc"]
  train = [r for r in records if r["kind"] == "train"]
  assert all(r["learning_rate"] > 0 and r["grad_norm"] > 0 for r in train)
  assert train[0]["learning_rate"] > train[-1]["learning_rate"]  # cosine decays
  for key in ("auroc", "oscr", "acc"):
    assert periodic[key] == final_only[key], key


def test_config_checks_name_unknown_evaluators_options_and_cadences():
  """validate reports an unknown evaluator, an unknown option and a negative cadence, each
  in its own sentence naming the field."""
  from backmix_jax.training import validate
  c = quick_config()
  c.evals.nope = dict(every_epochs=1)
  c.evals.conditions = dict(every_epochs=-1, colour="red")
  found = " ".join(validate.problems(c))
  assert "evals.nope: unknown evaluator" in found
  assert "evals.conditions: unknown option(s) ['colour']" in found
  assert "evals.conditions.every_epochs must be an integer >= 0" in found


def test_due_follows_each_cadence():
  """An evaluator with every_epochs=N is due after epochs N, 2N, ...; 0 never (only at the end)."""
  evs = {"a": (None, 2), "b": (None, 3), "c": (None, 0)}
  assert [evaluators.due(evs, e) for e in range(1, 7)] == [[], ["a"], ["b"], ["a"], [], ["a", "b"]]


def test_localization_of_oracle_and_shifted_cams():
  """A CAM equal to the true mask's cell coverage finds the object exactly (precision,
  recall and pixel recall 1 when fg_ratio matches the object's cells); a CAM pointing at
  the opposite corner finds none of it."""
  masks = np.zeros((1, 8, 8), bool)
  masks[0, :4, :4] = True  # 4 of the 16 cells of a 4x4 grid
  coverage = masks.reshape(1, 4, 2, 4, 2).mean((2, 4)).astype(np.float32)
  m = evaluators.localization(jnp.asarray(coverage), jnp.asarray(masks), 0.25)
  for k in ("cell_precision", "cell_recall", "pixel_recall", "fg_cells"):
    assert float(m[k][0]) == pytest.approx(0.25 if k == "fg_cells" else 1.0), k
  wrong = coverage[:, ::-1, ::-1].copy()
  m = evaluators.localization(jnp.asarray(wrong), jnp.asarray(masks), 0.25)
  assert float(m["cell_precision"][0]) == float(m["pixel_recall"][0]) == 0.0
  # Half the cells: all 4 object cells inside the top 8, so recall 1 and precision 1/2.
  m = evaluators.localization(jnp.asarray(coverage), jnp.asarray(masks), 0.5)
  assert float(m["cell_recall"][0]) == 1.0 and float(m["cell_precision"][0]) == 0.5


def _with_masks(split):
  return dataclasses.replace(split, masks=split.images[..., 0] > 0)


@pytest.fixture(scope="module")
def diagnostic_run():
  """A digits run whose data has true masks (bright pixels) and two test conditions equal to
  its test_known and test_unknown sets."""
  from backmix_jax.data.openset import load_open_set
  from backmix_jax.training.run import build_run
  cfg = quick_config(**{"data.image_size": 16})
  d = load_open_set(cfg)
  d = dataclasses.replace(
      d, train=_with_masks(d.train), test_known=_with_masks(d.test_known),
      conditions=(Condition("known_correlated", True, _with_masks(d.test_known)),
                  Condition("unknown_known_bg", False, _with_masks(d.test_unknown)),
                  Condition("known_other", True, _with_masks(d.test_known.take(np.arange(50))))))
  return build_run(cfg, data=d)


@pytest.mark.slow
def test_condition_metrics_agree_with_the_open_set_evaluator(diagnostic_run):
  """A condition holding exactly test_known has the open-set accuracy; one holding exactly
  test_unknown has the open-set AUROC against the reference; gaps are accuracy differences."""
  run = diagnostic_run
  evs = evaluators.build_evaluators(run, only={"conditions": {}})
  res = evaluators.run_evaluators(evs, ["open_set", "conditions"], run.state)
  cond, open_set = res["conditions"], res["open_set"]
  assert cond["acc/known_correlated"] == pytest.approx(open_set["acc"], abs=1e-12)
  assert cond["auroc/unknown_known_bg"] == pytest.approx(open_set["auroc"], abs=1e-12)
  assert cond["gap/known_other"] == pytest.approx(
      cond["acc/known_correlated"] - cond["acc/known_other"])


@pytest.mark.slow
def test_evaluators_share_one_scorer_and_score_each_split_once_per_state(diagnostic_run,
                                                                          monkeypatch):
  """open_set and conditions share build_evaluators' Scorer: evaluating them twice under
  one state scores each distinct split once (test_known, test_unknown and three
  conditions); a state with new arrays is scored afresh, with the same metrics."""
  from backmix_jax.evaluation import predict
  from tests.helpers import fresh_state
  run, scored = diagnostic_run, []
  real = predict.predict_split
  monkeypatch.setattr(predict, "predict_split",
                      lambda fn, v, split, *a: scored.append(id(split)) or real(fn, v, split, *a))
  evs = evaluators.build_evaluators(run, only={"conditions": {}})
  assert evs["open_set"][0].scorer() is evs["conditions"][0].scorer()
  first = evaluators.run_evaluators(evs, ["open_set", "conditions"], run.state)
  evaluators.run_evaluators(evs, ["open_set", "conditions"], run.state)
  assert len(scored) == len(set(scored)) == 5
  again = evaluators.run_evaluators(evs, ["open_set", "conditions"], fresh_state(run))
  assert len(scored) == 10 and again == first


@pytest.mark.slow
def test_cam_localization_reports_train_and_test_sets(diagnostic_run):
  """The CAM evaluator reports precision, recall, pixel recall and the object's cell share
  for the training probe and the reference test condition, all fractions."""
  run = diagnostic_run
  evs = evaluators.build_evaluators(run, only={"cam_localization": dict(probe_size=40)})
  m = evs["cam_localization"][0].evaluate(run.state)
  for where in ("train", "test"):
    for k in ("cell_precision", "cell_recall", "pixel_recall", "fg_cells"):
      assert 0.0 <= m[f"{where}/live_{k}"] <= 1.0, (where, k)
  assert m["train/live_fg_cells"] > 0


def test_diagnostic_evaluators_refuse_data_without_conditions_or_masks():
  """On ordinary data the conditions and CAM evaluators stop with one sentence."""
  from backmix_jax.training.run import build_run
  run = build_run(quick_config(**{"data.image_size": 16}))
  for name, words in (("conditions", "needs a benchmark with test conditions"),
                      ("cam_localization", "needs data with true foreground masks")):
    with pytest.raises(evaluators.EvaluatorError, match=words):
      evaluators.build_evaluators(run, only={name: {}})
