"""Host side of data.backend=grain: images/s per worker count and resident memory across an
epoch, on a generated prepared set (written once into --dir, reused after).

  python -m tools.stream_bench --dir /tmp/stream64 --count 200000 --size 64 --workers 0,2

Generated images: 8x8 random blocks scaled to --size plus per-pixel noise of 0..15, as PNG
(about the compressibility of a photo; real JPEG-sourced PNGs decode at other rates). The
training split is read as the trainer reads it (`arrayrecord:<dir>`, a lazy split) and
streamed by `TrainStream(backend='grain')` with no train step: what is timed is read +
decode + batch. Memory is the resident set summed over this process and its Grain workers
(tools/peak_memory.py's tree sum), sampled ten times per pass; images/s leaves out the
first batch (worker start). Prints one line per worker count and the samples.
"""
import argparse
import os
import time

import numpy as np

from backmix_jax.data import shards, sources
from backmix_jax.data.pipeline import TrainStream
from tools.peak_memory import tree_rss_kb


def generated(count: int, size: int, seed: int = 0):
  """`count` examples (image uint8 [size, size, 3], label i % 10, index i, no mask)."""
  rng = np.random.default_rng(seed)
  scale = -(-size // 8)
  for i in range(count):
    blocks = rng.integers(0, 240, (8, 8, 3), np.uint8)
    image = np.kron(blocks, np.ones((scale, scale, 1), np.uint8))[:size, :size]
    yield image + rng.integers(0, 16, image.shape, np.uint8), i % 10, i, None


def ensure_set(directory: str, count: int, size: int) -> None:
  if os.path.exists(os.path.join(directory, shards.MANIFEST)):
    return
  t0 = time.time()
  shards.write_prepared(directory, dict(train=(generated(count, size), count),
                                        test=(generated(20, size, seed=1), 20)),
                        source=f"generated:{count}x{size}", image_shape=(size, size, 3),
                        class_names=range(10), progress=print)
  print(f"generated {count} images of {size} px in {time.time() - t0:.0f} s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dir", required=True)
  parser.add_argument("--count", type=int, default=20_000)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--steps", type=int, default=0, help="steps per pass (0: one epoch)")
  args = parser.parse_args()
  ensure_set(args.dir, args.count, args.size)
  spec = f"arrayrecord:{args.dir}"
  train = sources.load_source(spec, image_size=args.size, channels=3).train
  decoded_gb = train.images.nbytes / 1e9
  for workers in [int(w) for w in args.workers.split(",")]:
    stream = TrainStream(train, args.batch, 0, backend="grain", source=spec,
                         known_classes=tuple(range(10)), workers=workers)
    steps = args.steps or stream.steps_per_epoch
    samples, t_first = [], None
    for step, batch in enumerate(stream.batches(0, steps)):
      if step == 0:
        t_first = time.time()
      if step % max(1, steps // 10) == 0 or step == steps - 1:
        samples.append((step, tree_rss_kb(os.getpid())[0] / 2**20))
    rate = (steps - 1) * args.batch / max(time.time() - t_first, 1e-9)
    rss = [r for _, r in samples]
    print(f"workers {workers}: {steps} steps x {args.batch} images of {args.size} px "
          f"(decoded epoch {decoded_gb:.2f} GB): {rate:,.0f} img/s | RSS tree "
          f"{min(rss):.2f}-{max(rss):.2f} GiB")
    print("  RSS GiB by step: " + ", ".join(f"{s}: {r:.2f}" for s, r in samples))


if __name__ == "__main__":
  main()
