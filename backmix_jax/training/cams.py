"""The CAMs BackMix reads: one gradient-free forward of the clean images, shared by the
train step, the mixing picture and the CAM-localisation evaluator, so what is measured is
what the step mixes with."""
from __future__ import annotations

import jax

from backmix_jax import backmix


def model_cams(model, framework, variables, images, labels, *, norm: str = "minmax",
               batch_stats: bool = False, rng=None):
  """CAM of each image's label under the current network.

  Args:
    model: the network (`framework.build_network(...)`); inside shard_map it may be the one
      whose batch norm averages over the data axis.
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, C] normalised images.
    labels: int [B] known-class labels 0..K-1.
    norm: CAM normalisation, one of `backmix.CAM_NORMS`.
    batch_stats: use the batch's own statistics (a train-mode forward whose running-statistics
      update is discarded) instead of the running ones; needs `rng` for dropout.
  Returns:
    float32 [B, g, g], >= 0, no gradient.
  """
  if batch_stats:
    outputs, _ = model.apply(variables, images, train=True, mutable=["batch_stats"],
                             rngs={"dropout": rng})
  else:
    outputs = model.apply(variables, images, train=False)
  outputs = jax.lax.stop_gradient(outputs)
  return backmix.class_activation_maps(framework.cam_maps(outputs), labels, norm=norm)
