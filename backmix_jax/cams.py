"""The CAMs BackMix reads: one gradient-free forward of the clean images, shared by the
train step, the mixing picture and the CAM-localisation evaluator, so what is measured is
what the step mixes with; `cam_variables` says whose network that forward runs."""
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


def cam_variables(state, cam_source: str) -> dict:
  """{'params', 'batch_stats'} whose CAMs BackMix masks with: the CAM teacher's in
  state.teacher for cam_source='teacher' (training/teacher.py), else the network's own."""
  if cam_source != "teacher":
    return {"params": state.params, "batch_stats": state.batch_stats}
  if not state.teacher:
    raise ValueError("cam_source='teacher' needs a state holding the teacher "
                     "(training.run.build_run loads it from backmix.teacher)")
  return state.teacher


def step_model_cams(model, framework, variables, images, labels, bcfg, rng=None):
  """`model_cams` under the settings of config.backmix (bcfg): its norm and statistics, and
  on bcfg.cam_grid cells when set (`backmix.resample_cams`). Returns float32 [B, g', g']."""
  cams = model_cams(model, framework, variables, images, labels, norm=bcfg.cam_norm,
                    batch_stats=bcfg.cam_batch_stats, rng=rng)
  return backmix.resample_cams(cams, bcfg.cam_grid) if bcfg.cam_grid else cams


def batch_cams(model, framework, state, images, labels, bcfg, masks=None, rng=None):
  """The CAMs of a batch as the train step computes them under `config.backmix` (bcfg):
  from the true masks (cam_source='oracle'; bool [B,H,W] `masks`), else `step_model_cams`
  of `cam_variables(state)` (live, teacher, and bank mode's refresh); on bcfg.cam_grid
  cells, or the network's grid when that is 0.

  Returns float32 [B, g, g]."""
  if bcfg.cam_source == "oracle":
    if masks is None:
      raise ValueError("cam_source='oracle' needs the images' true masks")
    # The bank placeholder has the network's CAM grid; no forward is needed.
    return backmix.oracle_cams(masks, bcfg.cam_grid or state.bank.shape[-1])
  return step_model_cams(model, framework, cam_variables(state, bcfg.cam_source), images, labels,
                         bcfg, rng)
