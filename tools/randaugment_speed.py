"""Cost of RandAugment alone (docs/benchmarks.md): the jitted on-device RandAugment of
backmix_jax/data/randaugment.py against a per-image Pillow loop of the same ops (what one
PyTorch data-loader worker of Vaze et al.'s code spends), on random uint8 images.

python tools/randaugment_speed.py [--batch 128] [--size 32] [--repeats 5] [--blocks 20]

Prints img/s per setting: the median over `--repeats` timed blocks (each `--blocks` batches,
after one warm-up call that also compiles), settings interleaved so that drifting load on a
shared machine affects all alike, plus the compile time and the load average.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageOps  # noqa: E402

from backmix_jax.data import randaugment as ra  # noqa: E402

# (N, M, op list): Vaze et al.'s CIFAR-10 and SVHN rows, their default M 9, and two ops.
SETTINGS = ((1, 6, "full"), (1, 18, "digits"), (1, 9, "full"), (2, 9, "full"))


def pillow_op(op: str, img: Image.Image, value: float) -> Image.Image:
  """One op as their randaugment.py calls Pillow (random sign, cutout place)."""
  v = -value if op in ra.GEOMETRIC and random.random() > 0.5 else value
  w, h = img.size
  if op == "auto_contrast":
    return ImageOps.autocontrast(img)
  if op == "equalize":
    return ImageOps.equalize(img)
  if op == "invert":
    return ImageOps.invert(img)
  if op == "rotate":
    return img.rotate(v)
  if op == "posterize":
    return ImageOps.posterize(img, max(1, int(value)))
  if op == "solarize":
    return ImageOps.solarize(img, value)
  if op == "solarize_add":
    added = np.clip(np.asarray(img).astype(np.int64) + value, 0, 255).astype(np.uint8)
    return ImageOps.solarize(Image.fromarray(added), 128)
  if op in ("color", "contrast", "brightness", "sharpness"):
    return getattr(ImageEnhance, op.capitalize())(img).enhance(value)
  if op == "cutout":
    x0 = int(max(0, np.random.uniform(w) - value / 2))
    y0 = int(max(0, np.random.uniform(h) - value / 2))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + value), min(h, y0 + value)),
                                  tuple(int(c) for c in ra.CUTOUT_COLOR))
    return img
  data = {"shear_x": (1, v, 0, 0, 1, 0), "shear_y": (1, 0, 0, v, 1, 0),
          "translate_x": (1, 0, v, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, v)}[op]
  return img.transform(img.size, Image.AFFINE, data)


def pillow_batch(images: np.ndarray, n: int, m: int, ops: str) -> np.ndarray:
  names = ra.OP_SETS[ops]
  out = []
  for x in images:
    img = Image.fromarray(x)
    for op in random.choices(names, k=n):
      img = pillow_op(op, img, ra.op_value(op, m))
    out.append(np.asarray(img))
  return np.stack(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--blocks", type=int, default=20)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
  device_images = jax.device_put(images)
  runners, compile_s = {}, {}
  for n, m, ops in SETTINGS:
    fn = jax.jit(lambda key, x, n=n, m=m, ops=ops: ra.randaugment(key, x, num_ops=n, magnitude=m,
                                                                    ops=ops))
    name = f"N={n} M={m} {ops}"
    start = time.perf_counter()
    fn(jax.random.key(0), device_images).block_until_ready()
    compile_s[f"jax {name}"] = time.perf_counter() - start

    def device_block(fn=fn):
      for i in range(args.blocks):
        out = fn(jax.random.key(i), device_images)
      out.block_until_ready()

    runners[f"jax {name}"] = (device_block, args.blocks)
    runners[f"pillow {name}"] = (
        lambda n=n, m=m, ops=ops: pillow_batch(images, n, m, ops), 1)
  times = {name: [] for name in runners}
  for _ in range(args.repeats):
    for name, (block, batches) in runners.items():
      start = time.perf_counter()
      block()
      times[name].append((time.perf_counter() - start) / batches)
  print(f"batch {args.batch}, {args.size} px, {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end, "
        f"jax {jax.__version__}")
  print("| setting | img/s (median) | img/s (all repeats) | compile s |")
  print("|---|---:|---:|---:|")
  for name, ts in times.items():
    comp = f"{compile_s[name]:.1f}" if name in compile_s else ""
    rates = [args.batch / t for t in ts]
    print(f"| {name} | {args.batch / np.median(ts):,.0f} | "
          f"{', '.join(f'{r:,.0f}' for r in rates)} | {comp} |")


if __name__ == "__main__":
  main()
