"""The train state: everything needed to continue a run exactly, as one pytree."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """step int32 []; params/batch_stats/opt_state pytrees; rng uint32 key data (fixed:
  per-step keys are fold_in(rng, step), so resuming needs no RNG bookkeeping);
  bank float32 [N,g,g] per-example CAM bank (a [1,g,g] placeholder unless BackMix bank
  mode: Orbax cannot save zero-size arrays).
  The data position is `step` (see data.pipeline)."""
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray
  bank: jnp.ndarray


def create_train_state(model, tx, rng: jax.Array, sample_images: jnp.ndarray,
                       bank_size: int) -> TrainState:
  """Initialise parameters from a sample batch [b,H,W,C] (float) and an empty or 0.5 bank."""
  from backmix_jax import backmix
  k_init, k_drop, k_train = jax.random.split(rng, 3)
  variables = model.init({"params": k_init, "dropout": k_drop}, sample_images, train=False)
  params = variables["params"]
  grid = model.apply(variables, sample_images, train=False)["class_maps"].shape[1]
  bank = backmix.init_bank(bank_size, grid) if bank_size else jnp.zeros((1, grid, grid), jnp.float32)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    rng=jax.random.key_data(k_train), bank=bank)
