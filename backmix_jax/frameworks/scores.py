"""Open-set scores from logits (higher = more likely a known class), always in float32.

Logits are cast to float32 before anything else: a softmax evaluated in bfloat16 saturates
(8 mantissa bits put every probability above ~0.998 at exactly 1.0), so confident samples
tie and AUROC collapses. The functions use jax.numpy, so they run inside a jitted eval step
on device and on NumPy arrays alike. Frameworks with their own score (e.g. CSSR) define it
next to their loss; this registry holds the generic ones.
"""
from __future__ import annotations

import types
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

ScoreFn = Callable[[jax.Array], jax.Array]


def _float32_logits(logits) -> jax.Array:
  x = jnp.asarray(logits).astype(jnp.float32)
  if x.ndim < 1:
    raise ValueError(f"logits must have a class axis, got shape {x.shape}")
  return x


def msp(logits) -> jax.Array:
  """Maximum softmax probability. logits [..., K] -> float32 [...]."""
  x = _float32_logits(logits)
  # exp(max - logsumexp) is the largest softmax entry without forming the K probabilities.
  return jnp.exp(jnp.max(x, axis=-1) - jax.nn.logsumexp(x, axis=-1))


def mls(logits) -> jax.Array:
  """Maximum logit score. logits [..., K] -> float32 [...]."""
  return jnp.max(_float32_logits(logits), axis=-1)


def energy(logits, temperature: float = 1.0) -> jax.Array:
  """Negative free energy T * logsumexp(logits / T). logits [..., K] -> float32 [...].

  Sign chosen so that higher = more known, like the other scores (Liu et al. 2020 define
  the energy as the negative of this).
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  x = _float32_logits(logits)
  return temperature * jax.nn.logsumexp(x / temperature, axis=-1)


# Read-only: a registry that callers could mutate would be global state.
SCORES: Mapping[str, ScoreFn] = types.MappingProxyType(
    {"msp": msp, "mls": mls, "energy": energy})


def get_score(name: str) -> ScoreFn:
  """The score function registered under `name`; ValueError lists the known names."""
  try:
    return SCORES[name]
  except KeyError:
    raise ValueError(f"unknown score {name!r}; choose one of {sorted(SCORES)}") from None
