"""Pictures of BackMix on real training images, with the CAMs of a trained checkpoint.

python -m experiments.visualize --config configs/digits.py --workdir runs/digits \
    [--num 8] [--out grid.png]

One row per sample: target, partner (another row's target), partner CAM over the partner,
masked partner (its foreground set to `fill`, outlined in cyan) with the source box in
yellow, and the mixed image with the target box in red.
The config must be the one the workdir was trained with (as for evaluation).
"""
from __future__ import annotations

import os

from absl import flags

from experiments import cli

NUM = flags.DEFINE_integer("num", 8, "Number of samples (rows); also the batch partners come from.")
OUT = flags.DEFINE_string("out", None, "PNG path (default: <workdir>/backmix_grid.png).")

COLUMNS = ("target", "partner", "partner CAM", "masked partner", "mixed")


def mixing_panels(run, state, images, labels, indices, rng) -> dict:
  """Everything one grid shows, computed as the train step does (live CAMs, or the bank).

  Args:
    run: a `training.setup.Run`; its config gives normalisation and BackMix settings.
    state: the trained TrainState.
    images: uint8 [B,H,W,C] training images; labels: int [B] (0..K-1); indices: int [B]
      their rows in the training set (read in bank mode).
    rng: PRNG key for partners and boxes.
  Returns:
    dict of NumPy arrays: images, partner_images, masked, mixed (normalised, [B,H,W,C]),
    partner_cams [B,H,W] (nearest-upsampled), partner_masks bool [B,H,W] (the partner's
    foreground pixels), labels, partner [B], target_box, source_box [B,2] (top-left row,
    col), and patch (int). Every sample is mixed (mix_prob 1): an unmixed row shows nothing.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from backmix_jax import backmix
  from backmix_jax.data import augment

  cfg, b = run.config, run.config.backmix
  x = augment.normalize(jnp.asarray(images), cfg.data.normalize)
  labels = jnp.asarray(labels, jnp.int32)
  if b.cam_source == "bank":
    cams = state.bank[jnp.asarray(indices)]
  else:
    variables = run.variables(state)
    if b.cam_batch_stats:
      outputs, _ = run.eval_model.apply(variables, x, train=True, mutable=["batch_stats"],
                                        rngs={"dropout": jax.random.key(0)})
    else:
      outputs = run.eval_model.apply(variables, x, train=False)
    cams = backmix.class_activation_maps(run.framework.cam_maps(outputs), labels, norm=b.cam_norm)
  mixed, info = backmix.apply_backmix(rng, x, cams, fg_ratio=b.fg_ratio, patch_frac=b.patch_frac,
                                      fill=b.fill, partner=b.partner, mix_prob=1.0,
                                      return_info=True)
  size = x.shape[1]
  partner = info["partner"]
  fg = backmix.upsample_mask(backmix.foreground_mask(cams[partner], b.fg_ratio), size)
  masked = jnp.where(fg[..., None], jnp.asarray(b.fill, x.dtype), x[partner])
  g = cams.shape[1]
  up = jnp.repeat(jnp.repeat(cams[partner], size // g, axis=1), size // g, axis=2)
  out = dict(images=x, partner_images=x[partner], partner_cams=up, partner_masks=fg,
             masked=masked, mixed=mixed, labels=labels, partner=partner,
             target_box=info["target_box"], source_box=info["source_box"])
  out = {k: np.asarray(v) for k, v in out.items()}
  out["patch"] = int(info["patch"])
  return out


def denormalize(x, normalization: str):
  """Normalised [...,C] -> display values in [0, 1] (inverse of augment.normalize)."""
  import numpy as np
  x = np.asarray(x, np.float32)
  if normalization == "cssr":
    x = x * 0.25 + 0.5
  return np.clip(x, 0.0, 1.0)


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

  def box(ax, corner, color):
    # (row, col) top-left corner; pixel centres sit on integers, so edges are at -0.5.
    ax.add_patch(Rectangle((corner[1] - 0.5, corner[0] - 0.5), p, p, fill=False,
                           edgecolor=color, linewidth=1.5))

  name = (lambda k: str(k)) if class_ids is None else (lambda k: str(class_ids[k]))
  for i in range(n):
    j = panels["partner"][i]
    row = axes[i]
    show(row[0], panels["images"][i])
    show(row[1], panels["partner_images"][i])
    show(row[2], panels["partner_images"][i])
    row[2].imshow(panels["partner_cams"][i], cmap="jet", alpha=0.5, vmin=0.0,
                  vmax=max(float(panels["partner_cams"][i].max()), 1e-6), interpolation="nearest")
    show(row[3], panels["masked"][i])
    # Outline the filled foreground: on a dark background a black fill is otherwise invisible.
    row[3].contour(panels["partner_masks"][i].astype(float), levels=[0.5], colors="cyan",
                   linewidths=0.8)
    box(row[3], panels["source_box"][i], "yellow")
    show(row[4], panels["mixed"][i])
    box(row[4], panels["target_box"][i], "red")
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


def visualize(config, workdir: str, num: int = 8, out: str | None = None) -> tuple[str, dict]:
  """Restore the newest checkpoint of `workdir`, mix `num` training images, write the PNG.

  Returns (path of the PNG, the panels of `mixing_panels`).
  """
  import jax
  import numpy as np

  from backmix_jax.training import checkpointing, validate
  from backmix_jax.training.setup import build_run

  validate.check_config(config)
  if num < 2:
    raise validate.ConfigError(f"--num must be >= 2 (partners come from the shown rows), got {num}")
  if not os.path.isdir(workdir):  # the Checkpointer would create it
    raise checkpointing.CheckpointError(f"no checkpoint: workdir {workdir} does not exist")
  ckpt = checkpointing.Checkpointer(workdir)
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
                         jax.random.key(config.seed))
  out = out or os.path.join(workdir, "backmix_grid.png")
  render_grid(panels, out, config.data.normalize, class_ids=run.data.known_classes)
  panels["step"] = step
  return out, panels


def main(argv):
  del argv
  path, panels = visualize(cli.CONFIG.value, cli.WORKDIR.value, NUM.value, OUT.value)
  print(f"wrote {path} ({len(panels['images'])} samples, checkpoint step {panels['step']})")


if __name__ == "__main__":
  cli.run_main(main)
