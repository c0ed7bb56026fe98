"""Picture of every RandAugment op at one magnitude (docs/recipes.md), on real images.

python tools/randaugment_grid.py --npz /path/to/cifar10.npz [--magnitude 6] [--images 6] \
    [--out docs/randaugment_ops.png]

Reads the first training images of each of a few classes from an npz with train_images
(uint8 [N,H,W] or [N,H,W,C]) and train_labels, or with the JPEG-bytes layout
(train_jpeg, train_offsets, train_labels); draws one row per op of
backmix_jax/data/randaugment.py at the magnitude (positive sign, cutout at the centre), the
first row the originals.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from backmix_jax.data import randaugment as ra  # noqa: E402


def first_images(path: str, count: int) -> np.ndarray:
  """uint8 [count,H,W,3]: the first training image of each of the first `count` labels."""
  with np.load(path) as f:
    labels = f["train_labels"]
    rows = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:count]]
    if "train_images" in f:
      images = f["train_images"][rows]
    else:
      buf, off = f["train_jpeg"], f["train_offsets"]
      images = np.stack([np.asarray(Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())))
                         for i in rows])
  if images.ndim == 3:
    images = np.repeat(images[..., None], 3, axis=-1)
  return images.astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--npz", required=True)
  parser.add_argument("--magnitude", type=int, default=6)
  parser.add_argument("--images", type=int, default=6)
  parser.add_argument("--out", default="docs/randaugment_ops.png")
  args = parser.parse_args()
  x = jnp.asarray(first_images(args.npz, args.images), jnp.float32)
  rows = [("original", np.asarray(x))]
  for op in ra.OPS:
    value = ra.op_value(op, args.magnitude)
    label = op if op in ("auto_contrast", "equalize", "invert") else f"{op} ({value:.3g})"
    rows.append((label, np.asarray(ra.apply_op(op, x, args.magnitude))))
  fig, axes = plt.subplots(len(rows), args.images, figsize=(args.images * 0.9, len(rows) * 0.9))
  for r, (name, images) in enumerate(rows):
    for c in range(args.images):
      ax = axes[r, c]
      ax.imshow(images[c].astype(np.uint8), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
  fig.suptitle(f"RandAugment ops at M = {args.magnitude} (values in brackets)", fontsize=9)
  fig.tight_layout()
  fig.savefig(args.out, dpi=80)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
