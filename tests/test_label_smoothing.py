"""Label smoothing (config.label_smoothing, frameworks/losses.py): eps = 0 is the old loss
bit for bit in every framework, eps > 0 matches a NumPy transcription of Vaze et al.'s
smoothed cross-entropy, and the config check refuses values that stop favouring the label."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from backmix_jax.frameworks import FRAMEWORKS, get_framework
from backmix_jax.frameworks.losses import cross_entropy
from backmix_jax.training import identity
from backmix_jax.training.validate import problems
from tests.helpers import quick_config

B, K, E, G, D = 4, 5, 3, 2, 6


def np_smoothed_ce(logits, labels, eps):
  """Vaze et al.'s LabelSmoothing.py: target 1 - eps on the label, eps / (K - 1) elsewhere."""
  logits = np.asarray(logits, np.float64)
  k = logits.shape[-1]
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  q = np.full(logits.shape, eps / (k - 1))
  np.put_along_axis(q, np.asarray(labels)[..., None], 1.0 - eps, axis=-1)
  return -(q * log_p).sum(-1)


def outputs_for(name, rng):
  """Made-up network outputs with what `name`'s loss reads (no network needed)."""
  r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  if name in ("softmax", "cssr"):
    return dict(logits=r(B, K))
  if name in ("pcssr", "rcssr"):  # logits are log-probabilities
    return dict(logits=jax.nn.log_softmax(r(B, K)))
  if name in ("arpl", "arpl_cs"):
    return dict(logits=r(B, K), features=r(B, D), points=r(K, D), radius=jnp.float32(0.3))
  return dict(logits=r(B, K), expert_logits=r(B, E, K), expert_maps=r(B, E, G, G, K))


FRAMEWORK_NAMES = ("softmax", "arpl", "arpl_cs", "cssr", "pcssr", "rcssr", "medaf")
LABELS = jnp.array([0, 3, 1, 4])


def test_every_registered_framework_is_checked_here():
  """A new framework must join FRAMEWORK_NAMES (and outputs_for) to be covered below."""
  assert set(FRAMEWORK_NAMES) == set(FRAMEWORKS)


def test_zero_smoothing_is_the_optax_cross_entropy_bit_for_bit():
  """cross_entropy(eps=0) runs the very call the frameworks made before smoothing existed."""
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(B, K)), jnp.float32)
  np.testing.assert_array_equal(cross_entropy(logits, LABELS, 0.0),
                                optax.softmax_cross_entropy_with_integer_labels(logits, LABELS))


@pytest.mark.parametrize("eps", [0.1, 0.6])
def test_smoothed_cross_entropy_matches_numpy(eps):
  """Per-example values, any leading shape ([B, E] as MEDAF's experts)."""
  logits = np.random.default_rng(1).normal(size=(B, E, K)).astype(np.float32)
  labels = np.random.default_rng(2).integers(0, K, size=(B, E))
  np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), jnp.asarray(labels), eps),
                             np_smoothed_ce(logits, labels, eps), rtol=1e-5)


@pytest.mark.parametrize("name", FRAMEWORK_NAMES)
def test_every_framework_smooths_each_cross_entropy_term(name):
  """loss(eps) - loss(0) = sum over the CE terms (with their weights) of smoothed - plain CE;
  eps = 0 passed explicitly is the default call exactly."""
  fw = get_framework(name)
  out = outputs_for(name, np.random.default_rng(3))
  plain, _ = fw.loss(out, LABELS)
  zero, _ = fw.loss(out, LABELS, label_smoothing=0.0)
  np.testing.assert_array_equal(zero, plain)
  eps = 0.2
  smoothed, _ = fw.loss(out, LABELS, label_smoothing=eps)
  gap = lambda logits, labels: (np_smoothed_ce(logits, labels, eps)
                                - np_smoothed_ce(logits, labels, 0.0)).mean()
  if name == "medaf":  # 0.7 x each expert's CE + the fused CE
    experts = np.asarray(out["expert_logits"])
    labels_e = np.broadcast_to(np.asarray(LABELS)[:, None], (B, E))
    want = 0.7 * sum(gap(experts[:, e], labels_e[:, e]) for e in range(E)) \
        + gap(out["logits"], LABELS)
  else:  # one CE of the logits (ARPL: T = 1; its margin term is not smoothed)
    want = gap(out["logits"], LABELS)
  np.testing.assert_allclose(float(smoothed - plain), want, rtol=1e-4, atol=1e-6)


def test_config_checks_name_unusable_smoothing():
  """[0, 1) by type and range; below (K-1)/K for the run's K known classes (digits: 6)."""
  assert problems(quick_config(label_smoothing=0.8)) == []
  assert any("label_smoothing must be in [0.0, 1.0)" in p
             for p in problems(quick_config(label_smoothing=1.0)))
  assert any("label_smoothing must be in" in p for p in problems(quick_config(label_smoothing=-0.1)))
  found = problems(quick_config(label_smoothing=0.9))
  assert len(found) == 1 and "with 6 known classes" in found[0] and "below 0.833" in found[0]
  assert problems(quick_config(label_smoothing=0.85, known_classes=tuple(range(10)))) == []


def test_label_smoothing_is_part_of_the_schedule_identity():
  """A workdir trained with one value refuses to continue under another (older records,
  which lack the field, still compare)."""
  a = identity.full_identity(quick_config())
  b = identity.full_identity(quick_config(label_smoothing=0.1))
  assert identity.differences(a, b) == {"label_smoothing": (0.0, 0.1)}
  old = {k: v for k, v in a.items() if k != "label_smoothing"}
  assert identity.differences(old, b) == {}
