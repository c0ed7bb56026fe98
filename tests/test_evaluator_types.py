"""An evaluator config may name its `type` (as big_vision's do), so one evaluator runs twice
under two names: each instance has its own options, metrics block, files and markdown
section; an unknown type is one config problem."""
import numpy as np
import pytest

from backmix_jax.evaluation import evaluators
from tests.helpers import quick_config


def test_config_checks_read_the_named_type():
  """A named type is checked against that evaluator's options; an unknown or non-string type
  is one sentence naming the field; without `type` the name is the type, as before."""
  c = quick_config()
  c.evals.unknown_svhn = dict(type="unknown_sets", sources="tfds:svhn_cropped", every_epochs=2)
  c.evals.per_condition = dict(type="conditions", colour="red")
  c.evals.typo = dict(type="unknown_set")
  c.evals.numbered = dict(type=3)
  c.evals.nope = dict(every_epochs=1)
  found = evaluators.config_problems(c)
  assert not [p for p in found if p.startswith("evals.unknown_svhn")], found
  assert any(p.startswith("evals.per_condition: unknown option(s) ['colour']") for p in found)
  assert any(p.startswith("evals.typo.type='unknown_set' is not an evaluator; known: "
                          "cam_localization, conditions, open_set, unknown_sets") for p in found)
  assert any(p.startswith("evals.numbered.type=3 is not an evaluator") for p in found)
  assert any(p.startswith("evals.nope: unknown evaluator; known:") for p in found)
  assert len(found) == 4, found


def _npz(path, value: int, n: int = 12):
  images = np.full((n, 8, 8), value, np.uint8)
  labels = np.zeros(n, np.int64)
  np.savez(path, train_images=images, train_labels=labels, test_images=images,
           test_labels=labels)
  return f"npz:{path}"


@pytest.mark.slow
def test_one_evaluator_runs_twice_under_two_names(tmp_path):
  """Two `unknown_sets` entries with different sources build two instances of the one class,
  each named after its entry: metrics per instance, files and markdown sections apart, and the
  default instance's file names unchanged."""
  from backmix_jax.training.run import build_run
  dark, bright = _npz(tmp_path / "dark.npz", 0), _npz(tmp_path / "bright.npz", 255)
  c = quick_config(**{"data.image_size": 16})
  c.evals.unknown_dark = dict(type="unknown_sets", sources=dark)
  c.evals.unknown_bright = dict(type="unknown_sets", sources=bright, every_epochs=1)
  assert evaluators.config_problems(c) == []
  run = build_run(c)
  evs = evaluators.build_evaluators(run, str(tmp_path))
  assert list(evs)[0] == "open_set"  # ConfigDict keeps the others sorted by name
  assert set(evs) == {"open_set", "unknown_dark", "unknown_bright"}
  (a, every_a), (b, every_b) = evs["unknown_dark"], evs["unknown_bright"]
  assert type(a) is type(b) is evaluators.UnknownSetsEvaluator
  assert (a.name, b.name, a.type) == ("unknown_dark", "unknown_bright", "unknown_sets")
  assert (every_a, every_b) == (0, 1) and evaluators.due(evs, 1) == ["unknown_bright"]
  assert list(a.sets) == [dark] and list(b.sets) == [bright]
  results = evaluators.run_evaluators(evs, ["unknown_dark", "unknown_bright"], run.state)
  assert set(results["unknown_dark"]) != set(results["unknown_bright"])  # keyed by spec
  assert f"{dark}/auroc" in results["unknown_dark"]
  written = a.write(str(tmp_path), "_x") + b.write(str(tmp_path), "_x")
  names = sorted(p.rsplit("/", 1)[1] for p in written)
  assert names == ["eval_outputs_per_set_unknown_bright_x.npz",
                   "eval_outputs_per_set_unknown_dark_x.npz",
                   "roc_per_set_unknown_bright_x.png", "roc_per_set_unknown_dark_x.png"]
  assert a.markdown(results["unknown_dark"]).splitlines()[0].endswith("[unknown_dark]")
  plain = evaluators.UnknownSetsEvaluator(run, sources=dark)
  assert plain.name == "unknown_sets"
  assert plain.filename("roc_per_set", "", "png") == "roc_per_set.png"


@pytest.mark.slow
def test_building_an_unknown_type_names_it():
  """build_evaluators (e.g. given `only`) refuses an unknown type in one sentence."""
  from backmix_jax.training.run import build_run
  run = build_run(quick_config(**{"data.image_size": 16}))
  with pytest.raises(evaluators.EvaluatorError, match="unknown evaluator 'nope'"):
    evaluators.build_evaluators(run, only={"extra": dict(type="nope")})
