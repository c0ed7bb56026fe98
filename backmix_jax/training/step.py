"""The data-parallel train step, with BackMix inside it.

`per_device_step` is the program one device runs on its shard of the batch (pmap
style): RandAugment when asked (data.randaugment_n) -> clean forward without gradients ->
CAMs -> background patches pasted -> flip and crop -> forward/backward (the framework's
loss, label-smoothed when asked) -> gradients and metrics averaged with lax.pmean
over 'data' (batch-norm statistics are averaged inside BatchNorm via its axis_name).
`make_train_step` maps it over every device with jax.shard_map under jax.jit, the
train state replicated and the batch sharded.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
import optax
from jax.sharding import PartitionSpec as P

from backmix_jax import backmix
from backmix_jax.cams import batch_cams
from backmix_jax.data import augment as aug
from backmix_jax.data.randaugment import randaugment
from backmix_jax.parallel import DATA_AXIS
from backmix_jax.training.errors import ConfigError
from backmix_jax.training.optimizer import learning_rate_schedule
from backmix_jax.training.state import TrainState

# config.backmix.train_on: the mixed batch alone, or mixed and clean images together.
TRAIN_ON = ("mix", "mix+clean")
# config.nan_policy: 'stop' ends the run (the loop raises), 'skip_step' keeps the old state.
NAN_POLICIES = ("stop", "skip_step")


def backmix_images(rng, model, framework, state: TrainState, images, labels, batch, bcfg,
                   normalization: str, steps_per_epoch: int, fill=None, mix_prob=None):
  """Mix background patches into normalised images [b,H,W,C] of one device.

  Returns (images [b,H,W,C], new bank). The CAMs come from a gradient-free forward of
  the clean images, under the network being trained or (cam_source='teacher') the fixed
  teacher in state.teacher (cam_source='oracle': from the batch's true masks fg_mask [b,H,W]);
  in bank mode partners come from the batch's second stream and their CAMs from the
  bank, which is refreshed (EMA) with the CAMs of this batch. `fill`: the value of
  masked pixels, scalar or [C]; None means bcfg.fill (fill_mode='constant'). `mix_prob`:
  bcfg.mix_prob when None, else a (traced) replacement: a sweep (training/sweep.py) turns
  BackMix off for some of its runs with mix_prob=0, which returns the clean images exactly.
  """
  if mix_prob is None:
    mix_prob = bcfg.mix_prob
  if fill is None:
    if bcfg.fill_mode != "constant":
      raise ValueError(f"backmix.fill_mode={bcfg.fill_mode!r} needs its fill value passed in "
                       "(training.run.Run.fill)")
    fill = bcfg.fill
  cams = batch_cams(model, framework, state, images, labels, bcfg, masks=batch.get("fg_mask"),
                    rng=jax.random.fold_in(rng, 1))
  bank = state.bank
  if bcfg.cam_source == "bank":
    partner_images = aug.normalize(batch["partner_image"], normalization)
    # Targets' own foreground (placement/replace='background'): their bank rows, before
    # this batch refreshes them.
    own = backmix.needs_target_cams(bcfg.placement, bcfg.replace)
    mixed = backmix.apply_backmix_from_sources(
        rng, images, partner_images, bank[batch["partner_index"]],
        target_cams=bank[batch["index"]] if own else None,
        **dict(backmix.config_kwargs(bcfg, fill, from_sources=True), mix_prob=mix_prob))
    # Every device refreshes its own rows; gathering keeps the bank replicated.
    all_idx = lax.all_gather(batch["index"], DATA_AXIS, tiled=True, to="invarying")
    all_cams = lax.all_gather(cams, DATA_AXIS, tiled=True, to="invarying")
    bank = backmix.update_bank(bank, all_idx, all_cams, momentum=bcfg.bank_momentum)
  else:
    mixed = backmix.apply_backmix(rng, images, cams, labels=labels,
                                  **dict(backmix.config_kwargs(bcfg, fill), mix_prob=mix_prob))
  if bcfg.warmup_epochs:
    active = state.step >= int(bcfg.warmup_epochs * steps_per_epoch)
    mixed = jnp.where(active, mixed, images)
  return mixed, bank


def randaugment_batch(key: jax.Array, batch: dict, dcfg) -> dict:
  """The batch with RandAugment applied (data.randaugment_n ops of magnitude randaugment_m)
  to image uint8 [b,H,W,C], and with its own key to partner_image (bank mode), which lends
  backgrounds as a training image would; `batch` itself when randaugment_n is 0.

  Vaze et al.'s order: RandAugment is the first augmentation, before BackMix's mixing and
  the flip and pad-crop; keyed per step and device like every other draw of the step.
  """
  if not dcfg.randaugment_n:
    return batch
  ra = functools.partial(randaugment, num_ops=dcfg.randaugment_n, magnitude=dcfg.randaugment_m,
                         ops=dcfg.randaugment_ops)
  out = dict(batch, image=ra(jax.random.fold_in(key, 0), batch["image"]))
  if "partner_image" in batch:
    out["partner_image"] = ra(jax.random.fold_in(key, 1), batch["partner_image"])
  return out


def per_device_step(state: TrainState, batch: dict, *, model, framework, tx, config,
                    steps_per_epoch: int, fill=None, mix_prob=None):
  """One device's part of a train step. batch: image uint8 [b,H,W,C], label int32 [b],
  index int32 [b] (+ partner_image, partner_index in bank mode; + fg_mask bool [b,H,W] when
  the data has true masks). fill, mix_prob: see `backmix_images` (a sweep passes both
  traced, one value per run). Returns (state, metrics)."""
  dcfg, bcfg = config.data, config.backmix
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  key = jax.random.fold_in(key, lax.axis_index(DATA_AXIS))  # each device its own draws
  k_mix, k_aug, k_drop = jax.random.split(key, 3)
  # Its own key: the split above stays as it was, so runs without RandAugment draw as before.
  batch = randaugment_batch(jax.random.fold_in(key, 4), batch, dcfg)
  labels = batch["label"]
  images = aug.normalize(batch["image"], dcfg.normalize)
  bank = state.bank
  if bcfg.enabled:
    mixed, bank = backmix_images(k_mix, model, framework, state, images, labels, batch, bcfg,
                                 dcfg.normalize, steps_per_epoch, fill, mix_prob)
    if bcfg.train_on == "mix+clean":
      mixed = jnp.concatenate([mixed, images])
      labels = jnp.concatenate([labels, labels])
    images = mixed
  images = aug.augment(k_aug, images, flip=dcfg.flip, crop_padding=dcfg.crop_padding,
                       normalization=dcfg.normalize)

  def loss_fn(params):
    outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                   train=True, mutable=["batch_stats"], rngs={"dropout": k_drop})
    loss, extras = framework.loss(outputs, labels, label_smoothing=config.label_smoothing)
    return loss, (outputs, updates.get("batch_stats", {}), extras)

  # Differentiate w.r.t. a device-varying view of the replicated parameters: the gradient
  # is then this shard's own, and the explicit pmean below averages it (pmap semantics).
  # Differentiating the replicated value directly would make shard_map psum it instead.
  local_params = lax.pcast(state.params, DATA_AXIS, to="varying")
  (loss, (outputs, batch_stats, extras)), grads = jax.value_and_grad(loss_fn, has_aux=True)(local_params)
  extra, extra_metrics = state.extra, {}
  aux = framework.auxiliary  # networks trained beside the classifier (ARPL+CS's GAN), or None
  if aux is not None:
    # Its own key: the split above stays as it was, so other frameworks draw as before.
    extra, aux_grads, extra_metrics = aux.step(
        jax.random.fold_in(key, 3), state.extra, local_params, batch["image"], model=model,
        tx=tx, normalize_fn=lambda x01: aug.normalize(x01 * 255.0, dcfg.normalize))
    if aux_grads is not None:
      grads = jax.tree.map(jnp.add, grads, aux_grads)
  grads = lax.pmean(grads, DATA_AXIS)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, bank=bank, extra=extra)
  finite = jnp.isfinite(loss) & jnp.all(jnp.array(
      [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves((grads, extra_metrics))]))
  finite = lax.pmin(finite.astype(jnp.int32), DATA_AXIS).astype(bool)
  if config.nan_policy == "skip_step":
    # Keep the old state but count the step, so the data position still advances.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state,
                             state.replace(step=state.step + 1))
  accuracy = jnp.mean(jnp.argmax(outputs["logits"], -1) == labels)
  # The rate this step applied and the norm of the averaged gradient it applied it to.
  learning_rate = learning_rate_schedule(config.optimizer, steps_per_epoch,
                                         config.num_epochs)(state.step)
  metrics = dict(loss=loss, accuracy=accuracy, learning_rate=learning_rate,
                 grad_norm=optax.tree.norm(grads), **extras, **extra_metrics)
  metrics = lax.pmean(metrics, DATA_AXIS)
  metrics["finite"] = finite
  return new_state, metrics


def make_train_step(mesh, *, model, framework, tx, config, steps_per_epoch: int, fill=None):
  """jit(shard_map(per_device_step)): (state, global batch) -> (state, metrics).

  The state is donated: its buffers are reused for the new state. fill: BackMix's value of
  masked pixels, scalar or [C] (`Run.fill`); None means config.backmix.fill, which only
  fill_mode='constant' allows.
  """
  bcfg = config.backmix
  if bcfg.enabled and fill is None and bcfg.fill_mode != "constant":
    raise ConfigError(f"backmix.fill_mode={bcfg.fill_mode!r}: pass fill=run.fill (the training "
                      "set's channel mean, computed by training.run.build_run)")
  body = functools.partial(per_device_step, model=model, framework=framework, tx=tx,
                           config=config, steps_per_epoch=steps_per_epoch, fill=fill)
  mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
  return jax.jit(mapped, donate_argnums=0)


def make_run_step(run, framework=None, config=None):
  """`make_train_step` for a built run (`training.run.build_run`): its mesh, networks,
  optimiser, steps per epoch and BackMix fill; `framework` or `config` replace the run's."""
  return make_train_step(run.mesh, model=run.train_model, framework=framework or run.framework,
                         tx=run.tx, config=config or run.config,
                         steps_per_epoch=run.stream.steps_per_epoch, fill=run.fill)
