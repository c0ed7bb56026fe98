"""Cross-entropy with optional label smoothing: the one classification loss every framework
builds on.

Label smoothing follows Vaze et al.'s code (sgvaze/osr_closed_set_all_you_need,
`methods/ARPL/loss/LabelSmoothing.py`): the target puts 1 - eps on the label and spreads eps
evenly over the K - 1 *other* classes (eps / (K - 1) each). This is not the form of
`optax.smooth_labels` or PyTorch's `label_smoothing=` argument, which spread eps over all K
classes, the label included; the recipe's published values (TinyImageNet's 0.9) mean the
former. eps = 0 is the plain cross-entropy, computed by the same optax call as before
label smoothing existed, so default runs are unchanged bit for bit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """logits [..., K], labels int [...] -> per-example loss [...].

  -sum_k q_k log softmax(logits)_k with q_label = 1 - eps, q_other = eps / (K - 1);
  eps = `label_smoothing` (a Python float: which formula runs is decided at trace time).
  """
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  k = logits.shape[-1]
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  own = jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  others = jnp.sum(log_p, axis=-1) - own
  return -((1.0 - label_smoothing) * own + (label_smoothing / (k - 1)) * others)


def smoothing_problems(label_smoothing, num_classes: int) -> list[str]:
  """Why `label_smoothing` is unusable with `num_classes` known classes ([] when usable).

  The target must still favour the label: 1 - eps > eps / (K - 1), i.e. eps < (K - 1) / K
  (beyond it training pushes the network *away* from the label)."""
  limit = (num_classes - 1) / num_classes
  if label_smoothing >= limit:
    return [f"label_smoothing={label_smoothing!r} with {num_classes} known classes gives the "
            f"label {1 - label_smoothing:.3g} and every other class "
            f"{label_smoothing / (num_classes - 1):.3g}: the target no longer favours the label; "
            f"use a value below {limit:.3g}"]
  return []
