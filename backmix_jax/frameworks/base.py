"""What every open-set framework provides, and the network that joins it to a backbone.

A framework is one small unit: a head (feature map -> logits and per-location class
maps), a training loss, an open-set score (higher = more known) and the map BackMix
reads its CAMs from. The train step and the evaluator only talk to this interface. A
framework that trains other networks beside the classifier (ARPL+CS's GAN) offers them as
an `Auxiliary`; the others have none.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from backmix_jax.frameworks.scores import SCORES, get_score


def offered_scores(own: tuple[str, ...] = (), excluded=frozenset()) -> tuple[str, ...]:
  """A framework's score names: its `own` (not in SCORES), then the generic SCORES in their
  registry order, less `excluded` (names in SCORES). ValueError when a name is misplaced."""
  misplaced = [n for n in own if n in SCORES] + [n for n in excluded if n not in SCORES]
  if misplaced:
    raise ValueError(f"own scores must be new and excluded scores generic; misplaced: "
                     f"{misplaced} (generic: {sorted(SCORES)})")
  return tuple(own) + tuple(n for n in SCORES if n not in excluded)


class Auxiliary:
  """Networks trained beside the classifier, in the same train step (ARPL+CS's GAN).

  Their whole state (parameters, optimiser states, statistics) is TrainState.extra.
  """

  def init(self, rng: jax.Array, variables: dict, sample_images: jnp.ndarray,
           tx: optax.GradientTransformation) -> Any:
    """The initial TrainState.extra.

    variables: the classifier's initial {'params', 'batch_stats'}; sample_images [b,H,W,C]
    normalised; tx: the classifier's optimiser.
    """
    raise NotImplementedError

  def step(self, rng, extra, params, real_images, *, model, tx,
           normalize_fn) -> tuple[Any, Any, dict]:
    """Train what `extra` holds, inside the per-device train step (under shard_map over
    'data'), before the classifier update.

    params: the classifier's parameters, device-varying; real_images uint8 [b,H,W,C] (the
    clean batch); model: the classifier network; tx: its optimiser; normalize_fn: float
    images in [0,1] -> the classifier's input scale.
    Returns (new extra, a gradient for `params` to add to the loss's before averaging, or
    None, dict of scalar metrics).
    """
    raise NotImplementedError


class Framework:
  """Base class; subclasses override `make_head` and `loss`, and usually `score`
  (`build_network` when the network is not one backbone plus a head)."""
  name: str = ""
  default_score: str = "mls"
  # What `scores` offers, declared once per framework: its own scores (defined beside its
  # loss, listed first), then every generic score of frameworks.scores.SCORES except those
  # in `excluded_scores`, so a score added to SCORES reaches every framework it applies to.
  own_scores: tuple[str, ...] = ()
  excluded_scores: frozenset[str] = frozenset()
  # Networks trained beside the classifier, or None (every framework but ARPL+CS): the
  # step then trains the classifier alone and TrainState.extra stays {}.
  auxiliary: Auxiliary | None = None

  @property
  def scores(self) -> tuple[str, ...]:
    """The score names this framework offers: `own_scores`, then SCORES less `excluded_scores`."""
    return offered_scores(self.own_scores, self.excluded_scores)

  def make_head(self, num_classes: int, dtype: Any) -> nn.Module:
    """The head module: called as head(feature_map [B,g,g,D], train) -> outputs dict.

    A head with batch norm declares a field `bn_axis_name` (default None); the network
    builder sets it to the backbone's, so its statistics are synchronised the same way.
    """
    raise NotImplementedError

  def build_network(self, backbone: nn.Module, num_classes: int, dtype: Any,
                    bn_axis_name: str | None) -> nn.Module:
    """The whole network: x [B,H,W,C] -> outputs dict. Default: OSRNet(backbone, head), the
    head's batch norm (if any) synchronised like the backbone's. Frameworks whose network
    is not one backbone plus a head (MEDAF's branches) override this."""
    head = self.make_head(num_classes, dtype)
    if hasattr(head, "bn_axis_name"):
      head = head.clone(bn_axis_name=bn_axis_name)
    return OSRNet(backbone, head)

  def loss(self, outputs: dict, labels: jnp.ndarray,
           label_smoothing: float = 0.0) -> tuple[jnp.ndarray, dict]:
    """outputs of the network, labels int [B] -> (scalar loss, dict of scalar extras).

    label_smoothing (config.label_smoothing, a Python float): applied to every
    cross-entropy term of the loss (`losses.cross_entropy`); 0 = the plain loss.
    """
    raise NotImplementedError

  def check_score(self, name: str = "") -> str:
    """The score `name` resolves to ('' = default_score); ValueError if unsupported."""
    name = name or self.default_score
    if name not in self.scores:
      raise ValueError(f"framework {self.name!r} has no score {name!r}; choose from {self.scores}")
    return name

  def score(self, outputs: dict, name: str = "", state: Any = None) -> jnp.ndarray:
    """[B] float32 open-set score, higher = more likely known.

    `state` is what `fit_score` returned for this score (None for scores that need none).
    """
    return get_score(self.check_score(name))(outputs["logits"])

  def fit_score(self, name: str, reduce_train: Callable[[Callable], dict]) -> Any:
    """Training-set statistics that score `name` needs; None (the default) when it needs none.

    Hook for scores such as CSSR's, which standardise with training-set statistics.
    `reduce_train(fn)` runs the network in inference mode over every training image and
    returns, as float64 NumPy arrays, the sums over all batches of
    `fn(outputs, mask) -> dict of arrays`, where `mask` bool [b] is False on padding rows
    (fn must zero their contribution). It may be called several times (several passes).
    """
    del name, reduce_train
    return None

  def cam_maps(self, outputs: dict) -> jnp.ndarray:
    """[B,g,g,K] per-location class evidence that BackMix turns into CAMs."""
    return outputs["class_maps"]


class OSRNet(nn.Module):
  """Backbone + framework head.

  __call__(x [B,H,W,C] float, train) -> dict with at least
    logits [B,K] float32, class_maps [B,g,g,K] float32, features [B,D] float32.
  """
  backbone: nn.Module
  head: nn.Module

  @nn.compact
  def __call__(self, x, train: bool):
    return self.head(self.backbone(x, train=train), train=train)


def gap(feature_map: jnp.ndarray) -> jnp.ndarray:
  """[B,g,g,D] -> [B,D] global average pool, in float32."""
  return jnp.mean(feature_map.astype(jnp.float32), axis=(1, 2))
