"""Pictures of BackMix on real training images, with the CAMs of a trained checkpoint.

One row per sample: target, partner (another row's target), partner CAM over the partner,
masked partner (its foreground set to the fill value, outlined in cyan) with the source
boxes in yellow, and the mixed image with the target boxes in red (replace='background' has
no boxes). When the target's own foreground matters (placement or replace 'background') it
is outlined in cyan on the target; when the data know the true foreground (masks), it is
outlined dashed in lime on target and partner. `mixing_panels` computes what a grid shows
as the train step does; `render_grid` draws it; `visualize` does both for a workdir (whose
config must be the one it was trained with, as for evaluation).
`python -m experiments.visualize` is `visualize` behind flags.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from backmix_jax import backmix
from backmix_jax.data import augment
from backmix_jax.training import checkpointing, validate
from backmix_jax.cams import batch_cams
from backmix_jax.training.run import build_run, reader_config


COLUMNS = ("target", "partner", "partner CAM", "masked partner", "mixed")


def mixing_panels(run, state, images, labels, indices, rng, masks=None) -> dict:
  """Everything one grid shows, computed as the train step does: CAMs from
  `backmix_jax.cams.batch_cams` (the step's own function: the network's, the teacher's or the
  true masks'), or the bank rows in bank mode, and every `config.backmix` mixing knob, fill included.

  Args:
    run: a `training.run.Run`; its config gives normalisation and BackMix settings, its
      `fill` the fill value.
    state: the trained TrainState.
    images: uint8 [B,H,W,C] training images; labels: int [B] (0..K-1); indices: int [B]
      their rows in the training set (read in bank mode).
    rng: PRNG key for partners and boxes.
    masks: optional bool [B,H,W] true foreground of the images (needed for 'oracle').
  Returns:
    dict of NumPy arrays: images, partner_images, masked, mixed (normalised, [B,H,W,C]),
    partner_cams [B,H,W] (nearest-upsampled), partner_masks bool [B,H,W] (the partner's
    foreground pixels), labels, partner [B]; with replace='patch' target_box, source_box
    ([B,2] top-left row, col, or [B,n,2] for num_patches n > 1) and patch (int, else None);
    target_masks bool [B,H,W] (the target's own CAM foreground) when placement or replace
    read it; true_masks, partner_true_masks bool [B,H,W] when `masks` is given. Every sample
    is mixed (mix_prob 1): an unmixed row shows nothing. In bank mode partners are other
    shown rows, each with its bank CAM, as a second stream would lend them.
  """
  cfg, b = run.config, run.config.backmix
  x = augment.normalize(jnp.asarray(images), cfg.data.normalize)
  labels = jnp.asarray(labels, jnp.int32)
  if b.cam_source == "bank":
    cams = state.bank[jnp.asarray(indices)]
  else:
    cams = batch_cams(run.eval_model, run.framework, state, x, labels, b,
                      masks=None if masks is None else jnp.asarray(masks),
                      rng=jax.random.fold_in(rng, 1))
  # The step's own knobs, but every sample mixed: an unmixed row would show nothing.
  knobs = dict(backmix.config_kwargs(b, run.fill), mix_prob=1.0)
  mixed, info = backmix.apply_backmix(rng, x, cams, labels=labels, return_info=True, **knobs)
  size = x.shape[1]
  partner = info["partner"]
  fg = info["source_masks"]
  masked = jnp.where(fg[..., None], jnp.asarray(run.fill, x.dtype), x[partner])
  g = cams.shape[1]
  up = jnp.repeat(jnp.repeat(cams[partner], size // g, axis=1), size // g, axis=2)
  out = dict(images=x, partner_images=x[partner], partner_cams=up, partner_masks=fg,
             masked=masked, mixed=mixed, labels=labels, partner=partner)
  for key in ("target_box", "source_box", "target_masks"):
    if key in info:
      out[key] = info[key]
  if masks is not None:
    out["true_masks"] = jnp.asarray(masks)
    out["partner_true_masks"] = jnp.asarray(masks)[partner]
  out = {k: np.asarray(v) for k, v in out.items()}
  out["patch"] = int(info["patch"]) if "patch" in info else None
  return out


def denormalize(x, normalization: str):
  """Normalised [...,C] -> display values in [0, 1] (`augment.denormalize`, clipped)."""
  return np.clip(augment.denormalize(np.asarray(x, np.float32), normalization), 0.0, 1.0)


def render_grid(panels: dict, path: str, normalization: str, class_ids=None) -> str:
  """Write the grid of `mixing_panels` output as a PNG at `path`; returns the path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  n, p = len(panels["images"]), panels["patch"]
  fig, axes = plt.subplots(n, len(COLUMNS), figsize=(1.7 * len(COLUMNS), 1.7 * n), squeeze=False)

  def show(ax, img):
    img = denormalize(img, normalization)
    if img.shape[-1] == 1:
      ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
      ax.imshow(img, interpolation="nearest")

  def boxes(ax, corners, color):
    # (row, col) top-left corners; pixel centres sit on integers, so edges are at -0.5.
    for corner in np.reshape(corners, (-1, 2)):
      ax.add_patch(Rectangle((corner[1] - 0.5, corner[0] - 0.5), p, p, fill=False,
                             edgecolor=color, linewidth=1.5))

  def outline(ax, mask, color, style="solid"):
    if mask.any() and not mask.all():  # contour needs both sides of the level
      ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=0.8,
                 linestyles=style)

  name = (lambda k: str(k)) if class_ids is None else (lambda k: str(class_ids[k]))
  for i in range(n):
    j = panels["partner"][i]
    row = axes[i]
    show(row[0], panels["images"][i])
    if "target_masks" in panels:  # the target's own foreground, which keeps its pixels
      outline(row[0], panels["target_masks"][i], "cyan")
    show(row[1], panels["partner_images"][i])
    if "true_masks" in panels:  # true foreground, dashed: what the CAM should find
      outline(row[0], panels["true_masks"][i], "lime", "dashed")
      outline(row[1], panels["partner_true_masks"][i], "lime", "dashed")
    show(row[2], panels["partner_images"][i])
    row[2].imshow(panels["partner_cams"][i], cmap="jet", alpha=0.5, vmin=0.0,
                  vmax=max(float(panels["partner_cams"][i].max()), 1e-6), interpolation="nearest")
    show(row[3], panels["masked"][i])
    # Outline the filled foreground: on a dark background a black fill is otherwise invisible.
    outline(row[3], panels["partner_masks"][i], "cyan")
    if p is not None:
      boxes(row[3], panels["source_box"][i], "yellow")
    show(row[4], panels["mixed"][i])
    if p is not None:
      boxes(row[4], panels["target_box"][i], "red")
    row[0].set_ylabel(f"class {name(panels['labels'][i])}", fontsize=8)
    row[1].set_ylabel(f"row {j + 1}, class {name(panels['labels'][j])}", fontsize=8)
    for ax in row:
      ax.set_xticks([])
      ax.set_yticks([])
  for ax, title in zip(axes[0], COLUMNS):
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


GRID_NAME = "backmix_grid.png"


def grid_path(workdir: str, out: str | None) -> str:
  """Where the grid goes: `out`; inside it when it is a directory; <workdir>/backmix_grid.png
  without it. A name without an extension gets '.png' here, as matplotlib would add it."""
  if not out:
    return os.path.join(workdir, GRID_NAME)
  if os.path.isdir(out):
    return os.path.join(out, GRID_NAME)
  return out if os.path.splitext(out)[1] else out + ".png"


def visualize(config, workdir: str, num: int = 8, out: str | None = None) -> tuple[str, dict]:
  """Restore the newest checkpoint of `workdir`, mix `num` training images, write the PNG.

  Returns (path of the PNG, the panels of `mixing_panels`).
  """
  config = reader_config(config)  # the checkpoint's weights, not an initial weights file
  validate.check_config(config)
  out = grid_path(workdir, out)
  if num < 2:
    raise validate.ConfigError(f"--num must be >= 2 (partners come from the shown rows), got {num}")
  if not os.path.isdir(workdir):  # the Checkpointer would create it
    raise checkpointing.CheckpointError(f"no checkpoint: workdir {workdir} does not exist")
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)  # a reader: moves nothing
  try:
    if ckpt.latest_step() is None:  # before loading data and compiling anything
      raise checkpointing.CheckpointError(f"no checkpoint in {ckpt.directory}")
    run = build_run(config)
    state, step = ckpt.restore(run.state, run.signature)
  finally:
    ckpt.close()
  train = run.data.train
  rows = np.random.default_rng(config.seed).choice(len(train), size=min(num, len(train)),
                                                   replace=False)
  panels = mixing_panels(run, state, train.images[rows], train.labels[rows], rows,
                         jax.random.key(config.seed),
                         masks=None if train.masks is None else train.masks[rows])
  render_grid(panels, out, config.data.normalize, class_ids=run.data.known_classes)
  panels["step"] = step
  return out, panels
