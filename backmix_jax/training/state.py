"""The train state: everything needed to continue a run exactly, as one pytree."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp

from backmix_jax import backmix
from backmix_jax.models.pretrained import load_pretrained
from backmix_jax.models.weight_files import WeightsError


@flax.struct.dataclass
class TrainState:
  """step int32 []; params/batch_stats/opt_state pytrees; rng uint32 key data (fixed:
  per-step keys are fold_in(rng, step), so resuming needs no RNG bookkeeping);
  bank float32 [N,g,g] per-example CAM bank (a [1,g,g] placeholder unless BackMix bank
  mode: Orbax cannot save zero-size arrays); extra: the state of the framework's auxiliary
  networks (`Framework.auxiliary`: ARPL+CS's GAN; {} for every other framework);
  teacher: {'params', 'batch_stats'} of the fixed network whose CAMs BackMix masks with
  (cam_source='teacher', training/teacher.py), {} otherwise. The teacher is never saved:
  checkpoints hold what training changes, and a restore keeps the template's teacher.
  The data position is `step` (see data.pipeline)."""
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray
  bank: jnp.ndarray
  extra: Any = flax.struct.field(default_factory=dict)
  teacher: Any = flax.struct.field(default_factory=dict)

# Fields a checkpoint does not hold (see TrainState).
_UNSAVED = ("teacher",)


def _to_state_dict(state: TrainState) -> dict:
  out = {f.name: flax.serialization.to_state_dict(getattr(state, f.name))
         for f in dataclasses.fields(state) if f.name not in _UNSAVED}
  # An empty extra is left out: checkpoints of frameworks without one keep the layout they
  # had before `extra` existed, and those older checkpoints still restore (Orbax refuses a
  # target with keys the saved tree lacks).
  if isinstance(state.extra, dict) and not state.extra:
    del out["extra"]
  return out


def _from_state_dict(target: TrainState, state_dict: dict) -> TrainState:
  names = [f.name for f in dataclasses.fields(target) if f.name not in _UNSAVED]
  unknown = set(state_dict) - set(names)
  missing = set(names) - set(state_dict) - ({"extra"} if target.extra == {} else set())
  if unknown or missing:
    raise ValueError(f"train state dict does not match: unknown {sorted(unknown)}, "
                     f"missing {sorted(missing)}")
  return target.replace(**{n: flax.serialization.from_state_dict(getattr(target, n), state_dict[n],
                                                                  name=n)
                           for n in names if n in state_dict})


flax.serialization.register_serialization_state(TrainState, _to_state_dict, _from_state_dict,
                                                override=True)


def donatable_copy(state):
  """A copy of `state` (any pytree) in new device buffers, for a step that donates its input.

  The train step reuses its input's buffers for its output (`jax.jit(donate_argnums=0)`), so
  the buffers handed to it are deleted on every backend that honours donation (CPU, GPU,
  TPU). Handing it this copy keeps `state` itself readable afterwards.
  """
  return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)


def create_train_state(model, tx, rng: jax.Array, sample_images: jnp.ndarray,
                       bank_size: int, framework=None) -> TrainState:
  """Initialise parameters from a sample batch [b,H,W,C] (float) and an empty or 0.5 bank;
  the auxiliary networks of `framework` (optional), if it has any, initialise `extra`."""
  k_init, k_drop, k_train = jax.random.split(rng, 3)
  variables = model.init({"params": k_init, "dropout": k_drop}, sample_images, train=False)
  params = variables["params"]
  grid = model.apply(variables, sample_images, train=False)["class_maps"].shape[1]
  bank = backmix.init_bank(bank_size, grid) if bank_size else jnp.zeros((1, grid, grid), jnp.float32)
  aux = framework.auxiliary if framework is not None else None
  extra = {} if aux is None else aux.init(jax.random.fold_in(rng, 1), variables, sample_images,
                                          tx)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    rng=jax.random.key_data(k_train), bank=bank, extra=extra)


def with_pretrained_backbone(state: TrainState, path: str, tx) -> tuple[TrainState, list[str]]:
  """`state` (a fresh one) with its backbone's parameters and batch statistics read from the
  local weights file `path` (models/pretrained.py: PyTorch names, the classifier head
  skipped), the head and auxiliary networks kept as initialised, and the optimiser state
  initialised again for the new parameters. Returns (host-side state, report lines).

  Only the initial state: a resumed run restores its checkpoint over it (training/train.py),
  so weights are never applied over trained ones. Raises WeightsError (a DataError)."""
  if "backbone" not in state.params:
    raise WeightsError("pretrained weights load into a network of one backbone plus a head; "
                       f"this one has {sorted(state.params)}")
  host = jax.device_get(state)
  backbone = {"params": host.params["backbone"]}
  if "backbone" in host.batch_stats:
    backbone["batch_stats"] = host.batch_stats["backbone"]
  loaded, report = load_pretrained(backbone, path)
  params = dict(host.params, backbone=loaded["params"])
  batch_stats = dict(host.batch_stats)
  if "batch_stats" in loaded:
    batch_stats["backbone"] = loaded["batch_stats"]
  return host.replace(params=params, batch_stats=batch_stats, opt_state=tx.init(params)), report
