"""Is the project's train step slower than a bare one? classifier32, batch 128, float32, CPU.

python tools/minimal_step_speed.py [--batch 128] [--steps 4] [--repeats 3]

Times, in alternating blocks, (a) a minimal `jax.jit` SGD step written directly against
the classifier32 backbone (train-mode batch norm, channel dropout, GAP, a bias-free dense
layer, cross-entropy, SGD with momentum) and (b) the project's plain step
(`training.step.make_run_step`, BackMix off: shard_map, pmean, metrics, finiteness check)
on the same synthetic batch, and prints the median images/s of each. Used for
docs/benchmarks.md's CPU note; it measures, it asserts nothing.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from backmix_jax import parallel  # noqa: E402
from backmix_jax.models import get_backbone  # noqa: E402
from backmix_jax.training.run import build_run  # noqa: E402
from backmix_jax.training.state import donatable_copy  # noqa: E402
from backmix_jax.training.step import make_run_step  # noqa: E402
from configs import digits  # noqa: E402
from backmix_jax.commands.benchmark import step_block, synthetic_open_set, time_blocks  # noqa: E402


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    f = get_backbone("classifier32")(x, train=train)
    return nn.Dense(6, use_bias=False)(f.mean((1, 2)))


def minimal_block(batch: int):
  """A block runner for the bare step: n -> None (blocks until the n-th step is done)."""
  net = _Net()
  x = jnp.asarray(np.random.default_rng(0).random((batch, 32, 32, 3)), jnp.float32)
  y = jnp.asarray(np.random.default_rng(1).integers(0, 6, batch))
  v = net.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False)
  tx = optax.sgd(0.1, momentum=0.9)

  @jax.jit
  def step(params, stats, opt, key):
    def loss_fn(p):
      logits, upd = net.apply({"params": p, "batch_stats": stats}, x, train=True,
                              mutable=["batch_stats"], rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd["batch_stats"]
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), stats, opt, loss

  carry = [v["params"], v["batch_stats"], tx.init(v["params"])]

  def block(n):
    for i in range(n):
      params, stats, opt, loss = step(*carry, jax.random.key(i))
      carry[:] = [params, stats, opt]
    jax.block_until_ready(loss)
  return block


def project_block(batch: int):
  """The same for the project's plain train step on a synthetic 6-class batch."""
  c = digits.get_config()
  c.model, c.batch_size, c.backmix.enabled, c.data.backend = "classifier32", batch, False, "numpy"
  run = build_run(c, data=synthetic_open_set(32, 3, 6, 8 * batch))
  step = make_run_step(run)
  data = parallel.to_global(next(iter(run.stream.batches(0, 1))), run.mesh)
  state = donatable_copy(run.state)  # the step donates its input state
  return step_block(step, state, [data])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"devices {jax.devices()} | classifier32 batch {args.batch} float32")
  blocks = {"minimal jit step": minimal_block(args.batch),
            "project plain step": project_block(args.batch)}
  for name, block in blocks.items():
    print(f"compiling and warming up: {name}")
    block(2)
  # The blocks take turns, so drifting load hits both alike.
  seconds = time_blocks(blocks, steps=args.steps, repeats=args.repeats)
  for name, times in seconds.items():
    values = [args.batch * args.steps / t for t in times]
    print(f"{name:20s} median {statistics.median(values):8.1f} img/s  "
          f"(repeats: {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
  main()
