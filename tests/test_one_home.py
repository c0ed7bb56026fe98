"""One home per fact (issue 20): each rule, list or mapping below is written in one place and
read everywhere else; these tests fail when a copy drifts from its home, or when the one
function that replaced several copies gets a case wrong. All pure: nothing compiles or trains."""
import inspect

import pytest

from backmix_jax import backmix
from backmix_jax.frameworks import FRAMEWORKS, get_framework
from backmix_jax.frameworks.base import Framework, offered_scores
from backmix_jax.frameworks.scores import SCORES
from tests.helpers import quick_config

# ------------------------------------------------------------------------------- scores


def test_offered_scores_rule():
  """own scores first, then SCORES in registry order less the exclusions; a generic name
  among `own` or an unknown name among the exclusions is refused."""
  assert offered_scores() == tuple(SCORES)
  assert offered_scores(("cssr",), frozenset({"energy"})) == ("cssr", "msp", "mls")
  assert offered_scores(("medaf",)) == ("medaf", "msp", "mls", "energy")
  with pytest.raises(ValueError, match="misplaced"):
    offered_scores(("msp",))
  with pytest.raises(ValueError, match="misplaced"):
    offered_scores((), frozenset({"odin"}))


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_framework_scores_follow_the_shared_registry(name):
  """Every framework (and CSSR variant) offers exactly its own scores plus every generic
  score it does not exclude: a generic score added to SCORES reaches it, and a framework that
  lists its scores by hand (or forgets to exclude one) fails here."""
  fw = get_framework(name)
  own, excluded = tuple(fw.own_scores), frozenset(fw.excluded_scores)
  assert not set(own) & set(SCORES), f"{name}: own scores {own} shadow generic ones"
  assert excluded <= set(SCORES), f"{name}: excludes non-generic {excluded - set(SCORES)}"
  for generic in SCORES:
    assert (generic in fw.scores) != (generic in excluded), (
        f"{name}: generic score {generic!r} is neither offered nor excluded")
  assert fw.scores == own + tuple(s for s in SCORES if s not in excluded)
  assert fw.default_score in fw.scores
  # `scores` is the base class's derived property, never a framework's own literal.
  assert inspect.getattr_static(fw, "scores") is vars(Framework)["scores"]


def test_framework_scores_unchanged():
  """The score lists the rule gives are those the frameworks offered when each wrote its own
  (as sets; the order of the generic ones is SCORES's), and the defaults are unchanged."""
  expected = {
      "softmax": ("mls", {"msp", "mls", "energy"}),
      "arpl": ("mls", {"msp", "mls", "energy"}),
      "arpl_cs": ("mls", {"msp", "mls", "energy"}),
      "cssr": ("msp", {"msp", "mls", "energy"}),
      "pcssr": ("cssr", {"cssr", "msp", "mls"}),
      "rcssr": ("cssr", {"cssr", "msp", "mls"}),
      "medaf": ("medaf", {"medaf", "msp", "mls", "energy"}),
  }
  # Generic scores added to SCORES since then are left out of the comparison.
  later = set(SCORES) - {"msp", "mls", "energy"}
  got = {n: (get_framework(n).default_score, set(get_framework(n).scores) - later)
         for n in FRAMEWORKS}
  assert got == expected


def test_a_new_generic_score_reaches_every_framework(monkeypatch):
  """Adding a score to SCORES is the whole change: every framework that does not exclude it
  offers it (here through a patched registry)."""
  import types
  from backmix_jax.frameworks import base, scores
  patched = types.MappingProxyType({**scores.SCORES, "odin": scores.msp})
  monkeypatch.setattr(base, "SCORES", patched)
  for name in FRAMEWORKS:
    assert "odin" in get_framework(name).scores, name
  assert Framework().scores[-1] == "odin"


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_generic_score_keeps_the_contract(name):
  """What a framework relies on, for every score in SCORES (a new one included): float32 of
  the batch shape from low-precision logits, and higher for a confident than a flat vector."""
  import jax.numpy as jnp
  import numpy as np
  logits = jnp.asarray(np.array([[9.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), jnp.bfloat16)
  s = SCORES[name](logits)
  assert s.dtype == jnp.float32 and s.shape == (2,)
  assert s[0] > s[1]


# ------------------------------------------------------------------------- BackMix knobs


def test_mode_problems():
  """The mode rules of backmix.py, one sentence each: num_patches an int >= 1, and
  replace='background' refusing num_patches != 1 and placement != 'anywhere'."""
  assert backmix.mode_problems() == []
  assert backmix.mode_problems("background", "patch", 3) == []  # boxes may avoid the fg
  assert backmix.mode_problems("anywhere", "background", 1) == []
  for bad in (0, -1, 1.0, True, "2"):
    found = backmix.mode_problems(num_patches=bad)
    assert len(found) == 1 and found[0].startswith("num_patches must be an integer >= 1"), bad
  assert backmix.mode_problems("anywhere", "background", 2) == [
      "num_patches=2 has no effect with replace='background'; leave it 1"]
  found = backmix.mode_problems("background", "background", 1)
  assert len(found) == 1 and found[0].startswith("placement='background' has no effect")
  assert len(backmix.mode_problems("background", "background", 2)) == 2


def test_mode_rules_are_the_same_for_the_method_and_the_config_check():
  """validate reports exactly the method's sentences (as backmix.<field>), and the method
  refuses the same settings with the first of them."""
  import jax
  import jax.numpy as jnp
  from backmix_jax.training import validate
  for placement, replace, num_patches in (("anywhere", "background", 2),
                                          ("background", "background", 1),
                                          ("anywhere", "patch", 0)):
    config = quick_config(**{"backmix.placement": placement, "backmix.replace": replace,
                             "backmix.num_patches": num_patches})
    expected = [f"backmix.{p}" for p in backmix.mode_problems(placement, replace, num_patches)]
    assert expected and validate.problems(config) == expected
    with pytest.raises(ValueError) as raised:
      backmix.apply_backmix(jax.random.key(0), jnp.zeros((2, 32, 32, 1)), jnp.zeros((2, 4, 4)),
                            placement=placement, replace=replace, num_patches=num_patches)
    assert f"backmix.{raised.value}" == expected[0]


def test_patch_problems_shared_by_the_method_and_the_config_check():
  """The patch must fit (1 <= round(patch_frac * size) <= size); validate reports the
  method's sentence, the method refuses the same settings with it."""
  import jax
  import jax.numpy as jnp
  from backmix_jax.training import validate
  assert backmix.patch_problems(32, 0.25) == [] and backmix.patch_problems(32, 1.0) == []
  assert backmix.patch_problems(32, 0.001) == ["patch side 0 px does not fit a 32 px image"]
  assert backmix.patch_problems(32, 1.02) == ["patch side 33 px does not fit a 32 px image"]
  assert backmix.patch_problems(16, 0.04) == []  # 0.64 px rounds to 1
  found = validate.problems(quick_config(**{"backmix.patch_frac": 0.001}))
  assert found == ["backmix patch side 0 px does not fit a 32 px image"]
  with pytest.raises(ValueError, match="patch side 0 px does not fit a 32 px image"):
    backmix.apply_backmix(jax.random.key(0), jnp.zeros((2, 32, 32, 1)), jnp.zeros((2, 4, 4)),
                          patch_frac=0.001)


def test_needs_target_cams():
  assert not backmix.needs_target_cams("anywhere", "patch")
  assert backmix.needs_target_cams("background", "patch")
  assert backmix.needs_target_cams("anywhere", "background")


def test_config_kwargs_maps_every_knob_of_the_method():
  """config.backmix -> apply_backmix's keywords: every mixing keyword of both entry points
  is set, each from the config field of its name (distinct non-default values, so a swap or
  a default left in place fails), `fill` from the resolved value passed in."""
  b = quick_config(**{"backmix.fg_ratio": 0.5, "backmix.patch_frac": 0.375,
                      "backmix.mix_prob": 0.625, "backmix.placement": "background",
                      "backmix.num_patches": 3, "backmix.partner": "other_class",
                      "backmix.fill": 7.0}).backmix
  fill = (0.1, 0.2, 0.3)
  # Keywords the caller supplies itself: data, not knobs.
  per_call = {"labels", "return_info", "target_cams"}
  for fn, from_sources in ((backmix.apply_backmix, False),
                           (backmix.apply_backmix_from_sources, True)):
    kwargs = backmix.config_kwargs(b, fill, from_sources=from_sources)
    keywords = {n for n, p in inspect.signature(fn).parameters.items()
                if p.kind is p.KEYWORD_ONLY} - per_call
    assert set(kwargs) == keywords, fn.__name__
    assert kwargs.pop("fill") is fill
    assert kwargs == {k: b[k] for k in kwargs}
  assert backmix.config_kwargs(b, 0.0)["partner"] == "other_class"


# ----------------------------------------------------------- config fields and identities


def test_lookup_reads_configdicts_and_saved_dicts_alike():
  """One dotted lookup for validate, field_checks and identity: nested fields of a ConfigDict
  and of its config.json dict; a falsy value is a value; a missing part (or a value where a
  block should be) gives the default, or KeyError naming the dotted field without one."""
  import json
  from backmix_jax.training.fields import MISSING, lookup
  config = quick_config(**{"backmix.cam_grid": 0, "known_classes": ()})
  saved = json.loads(config.to_json_best_effort())
  for tree in (config, saved):
    assert lookup(tree, "optimizer.learning_rate") == config.optimizer.learning_rate
    assert lookup(tree, "backmix.cam_grid", MISSING) == 0
    assert lookup(tree, "backmix.teacher", MISSING) == ""
    assert lookup(tree, "backmix.nope", MISSING) is MISSING
    assert lookup(tree, "dataset.name", None) is None  # a string where a block should be
    with pytest.raises(KeyError, match="backmix.nope"):
      lookup(tree, "backmix.nope")
  assert lookup({"a": [1, 2]}, "a.b", MISSING) is MISSING


def test_is_int():
  import numpy as np
  from backmix_jax.training.fields import is_int
  assert all(is_int(v) for v in (0, -3, 2**70, np.int64(3), np.uint8(1)))
  assert not any(is_int(v) for v in (True, False, 3.0, np.float32(3), "3", None, (1,)))


def test_differences_compare_shared_fields_in_recorded_order():
  from backmix_jax.training.identity import differences
  recorded = {"b": 1, "a": [1, 2], "old": 0, "same": "x"}
  current = {"a": [1, 3], "b": 2, "new": 5, "same": "x"}
  assert list(differences(recorded, current).items()) == [("b", (1, 2)), ("a", ([1, 2],
                                                                                 [1, 3]))]
  assert differences(recorded, recorded) == {}


def test_run_differences_of_a_saved_config():
  """A config and its saved config.json are the same run; a schedule change is not a run
  difference, a class split is; `ignore` drops fields (a teacher may differ in BackMix)."""
  import json
  from backmix_jax.training.identity import run_differences
  config = quick_config()
  saved = json.loads(config.to_json_best_effort())
  assert run_differences(saved, config) == {}
  assert run_differences(saved, quick_config(num_epochs=7, batch_size=64)) == {}
  other = quick_config(known_classes=(0, 1, 2), **{"backmix.enabled": False})
  changed = run_differences(saved, other)
  assert set(changed) == {"known_classes", "backmix.enabled"}
  assert changed["backmix.enabled"] == (True, False)
  assert set(run_differences(saved, other, ignore=("backmix.enabled",))) == {"known_classes"}


def test_a_metrics_record_lacking_a_field_is_another_run(tmp_path):
  """trials.final_metrics compares the run block with `identity.differences` over every
  expected field: a field the record lacks counts as a difference (an older record), a
  matching record at the final step is collected."""
  import json
  from backmix_jax.commands import trials
  from backmix_jax.training.identity import run_record
  config = quick_config()
  run = dict(run_record(config), total_steps=5)
  (tmp_path / "metrics.json").write_text(json.dumps(dict(run=run, step=5)))
  assert trials.final_metrics(config, str(tmp_path))[0] is not None
  del run["arpl_compat"]
  (tmp_path / "metrics.json").write_text(json.dumps(dict(run=run, step=5)))
  metrics, why = trials.final_metrics(config, str(tmp_path))
  assert metrics is None and why == ("metrics.json is of another run (arpl_compat None, "
                                     "expected False)")


# --------------------------------------------------------------------- docs of the knobs


def _default_backmix_fields() -> set:
  from configs import default
  return set(default.get_base_config().backmix.keys())


def test_readme_lists_exactly_the_backmix_knobs_of_the_config():
  """README's knob list (How a train step works) names every field of configs/default.py's
  `backmix` block and nothing else: a knob added to the config fails here until it is listed."""
  import pathlib
  import re
  readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
  found = re.search(r"All BackMix knobs live in\s+`config\.backmix` \(([^)]*)\)", readme)
  assert found, "README no longer has the sentence 'All BackMix knobs live in `config.backmix` (...)'"
  listed = re.findall(r"`([a-z_]+)`", found.group(1))
  assert len(listed) == len(set(listed)), f"listed twice: {listed}"
  fields = _default_backmix_fields()
  assert set(listed) == fields, (f"README lacks {sorted(fields - set(listed))}, lists unknown "
                                 f"{sorted(set(listed) - fields)}")


def test_method_doc_describes_every_backmix_knob():
  """docs/method.md names every `backmix` field in code font (`knob` or `knob=value`)."""
  import pathlib
  import re
  text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
  named = set(re.findall(r"`([a-z_]+)(?:=[^`]*)?`", text))
  missing = sorted(_default_backmix_fields() - named)
  assert not missing, f"docs/method.md does not describe {missing}"


def test_metrics_doc_defines_every_score():
  """docs/metrics.md has a definition row for every generic score and every framework's own."""
  import pathlib
  text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
  names = set(SCORES) | {s for n in FRAMEWORKS for s in get_framework(n).own_scores}
  missing = sorted(n for n in names if f"| `{n}` |" not in text)
  assert not missing, f"docs/metrics.md defines no score {missing}"


# ------------------------------------------------------------------------------ backbones


@pytest.mark.slow
def test_conv_bn_is_the_conv_then_the_batch_norm_it_names():
  """layers.conv_bn inside a compact module: the same parameters, statistics and output as
  the conv and batch norm written out, under the names given (train and eval mode)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from backmix_jax.models import layers
  kw = dict(momentum=0.9, axis_name=None, dtype=jnp.float32)

  class Joined(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return layers.conv_bn(x, train, 8, 3, 2, init=layers.HE_FAN_OUT, names=("c", "b"),
                            scale_init=layers.normal(1.0, 0.02), **kw)

  class Written(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = layers.conv(8, 3, 2, init=layers.HE_FAN_OUT, dtype=jnp.float32, name="c")(x)
      return layers.batch_norm(train, name="b", scale_init=layers.normal(1.0, 0.02), **kw)(x)

  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
  va = Joined().init(jax.random.key(1), x, train=False)
  vb = Written().init(jax.random.key(1), x, train=False)
  assert jax.tree.structure(va) == jax.tree.structure(vb)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(va), jax.tree.leaves(vb)))
  assert va["params"]["c"]["kernel"].shape == (3, 3, 3, 8)
  for train in (False, True):
    ya = Joined().apply(va, x, train=train, mutable=["batch_stats"])
    yb = Written().apply(vb, x, train=train, mutable=["batch_stats"])
    assert ya[0].shape == (2, 5, 5, 8)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ya), jax.tree.leaves(yb)))
