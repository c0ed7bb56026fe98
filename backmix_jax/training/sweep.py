"""Sweeps: R runs trained together as one jitted program (`train_sweep(configs, workdirs)`).

A classifier32 step at batch 64 leaves an accelerator mostly idle, so R runs that share
their architecture and schedule are trained as one program: the single-run per-device step
(`step.per_device_step`, the one home of the algorithm) is `jax.vmap`ped over a leading run
axis inside the usual `jit(shard_map(...))`. Runs are on the leading axis of the state and
the batch, devices stay on 'data': the stacked state [R, ...] is replicated, the batch
[R, B, ...] is sharded on its second axis. Every run keeps its own parameters, optimiser
state, batch statistics, BackMix bank and RNG, and reads its own data stream (its split,
seed and order), so each run trains exactly what it would alone (up to XLA's numerics of
the batched program; tests/test_sweep.py).

What may differ between the runs of a sweep: `SWEEP_VARIES` (seed, trial or known classes,
BackMix on/off). BackMix off is a traced mix_prob=0 inside the BackMix step, which returns
the clean images exactly; the price is the CAM forward those runs compute and never use.
Everything else (architecture, image size, batch size, epochs, optimiser, framework, ...)
must match, and so must what the data makes of it (steps per epoch, image shape, number
of classes): `check_sweep` and `build_sweep` refuse a sweep in one line naming the field.
Runs whose steps per epoch differ (MNIST's trials) are refused, not grouped: the trials
command trains them one by one.

Record: every run has its own workdir, claimed and recorded exactly as a single run's
(training/workdir.py), with its own metrics.jsonl, checkpoints (the single-run format,
sliced out of the stacked state at every save, restorable by evaluate/visualize and by
the single-run trainer) and metrics.json. Resume: the sweep restarts from the newest step
that every run has a checkpoint of; a run that already has later checkpoints keeps them
(its trajectory is the same) and saves only past them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from backmix_jax import backmix, parallel
from backmix_jax.data.pipeline import TrainStream
from backmix_jax.evaluation.evaluators import build_evaluators, due, run_evaluators
from backmix_jax.training import checkpointing, validate
from backmix_jax.training.errors import ConfigError
from backmix_jax.training.records import MetricLogger, format_duration, log
from backmix_jax.training.run import Run, build_run
from backmix_jax.training.step import per_device_step
from backmix_jax.training.loop import Clock, Hooks, run_loop
from backmix_jax.training.train import (NonFiniteError, PreemptionWatch, evaluate_run,
                                        log_evaluations)
from backmix_jax.training.workdir import checkpoint_steps, claim as claim_workdir

# Config fields that may differ between the runs of one sweep; every other field must match.
SWEEP_VARIES = ("seed", "trial", "known_classes", "backmix.enabled")


def _flat(tree, prefix="") -> dict:
  """Dotted field -> value of a ConfigDict (or nested dict)."""
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.update(_flat(v, key + "."))
    else:
      out[key] = tuple(v) if isinstance(v, list) else v
  return out


def _shared_fields(config) -> dict:
  return {k: v for k, v in _flat(config).items() if k not in SWEEP_VARIES}


def check_sweep(configs) -> None:
  """ConfigError (one line, naming the field) unless `configs` can train as one sweep:
  every field but SWEEP_VARIES equal, and what the vmapped step cannot vary per run."""
  if not configs:
    raise ConfigError("a sweep needs at least one run")
  first = _shared_fields(configs[0])
  for i, config in enumerate(configs[1:], 1):
    fields = _shared_fields(config)
    for key in list(first) + [k for k in fields if k not in first]:
      a, b = first.get(key, "<unset>"), fields.get(key, "<unset>")
      if a != b:
        raise ConfigError(f"sweep runs must share {key}: run 0 has {a!r}, run {i} has {b!r} "
                          f"(only {', '.join(SWEEP_VARIES)} may differ)")
  bcfg = configs[0].backmix
  on = [bool(c.backmix.enabled) for c in configs]
  if any(on) and bcfg.cam_source == "teacher":
    raise ConfigError("backmix.cam_source='teacher' cannot train in a sweep (each run has its "
                      "own teacher); train these runs one by one")
  if any(on) and not all(on) and bcfg.train_on != "mix":
    raise ConfigError(f"backmix.train_on={bcfg.train_on!r} doubles the batch of BackMix runs "
                      "only; a sweep mixing BackMix on and off needs train_on='mix'")
  if configs[0].profile_steps:
    raise ConfigError("profile_steps: profile one run alone, not a sweep")


@dataclasses.dataclass
class Sweep:
  """R runs built for one program. runs[i] is the single run of configs[i] (its data, model,
  initial state, checkpoint signature); streams[i] its training stream (with the partner
  stream in bank mode, BackMix-off runs included, so every run's batch has the same keys)."""
  runs: list[Run]
  streams: list[TrainStream]
  mesh: jax.sharding.Mesh
  step_fn: object       # (stacked state, [R, B, ...] batch) -> (stacked state, metrics [R])
  bank_rows: int        # rows of the stacked bank: the largest training set in bank mode, else 1

  @property
  def size(self) -> int:
    return len(self.runs)

  @property
  def steps_per_epoch(self) -> int:
    return self.streams[0].steps_per_epoch

  @property
  def total_steps(self) -> int:
    return self.runs[0].total_steps


def _data_key(config):
  """Runs with the same key read the same data (they differ only in seed / BackMix)."""
  return (config.trial, tuple(config.known_classes or ()))


def _check_built(runs: list[Run]) -> None:
  """What the data makes of the shared config must match too (one line naming it)."""
  def what(run):
    return dict(steps_per_epoch=run.stream.steps_per_epoch,
                image_shape=tuple(run.data.train.images.shape[1:]),
                num_classes=run.data.num_classes)
  first = what(runs[0])
  for i, run in enumerate(runs[1:], 1):
    for key, value in what(run).items():
      if value != first[key]:
        raise ConfigError(
            f"sweep runs must share {key}: run 0 (trial {runs[0].config.trial}, "
            f"{len(runs[0].data.train)} training images) has {first[key]}, run {i} (trial "
            f"{run.config.trial}, {len(run.data.train)} training images) has {value}; train "
            "them in separate sweeps or one by one")


def make_sweep_step(mesh, *, model, framework, tx, config, steps_per_epoch: int, fill,
                    per_run_fill: bool, unroll: bool = False):
  """jit(shard_map(vmap(per_device_step))): (stacked state [R, ...], batch [R, B, ...],
  mix_prob float32 [R], fill float32 [R] or [R, C]) -> (stacked state, metrics, each [R]).

  `config` is the runs' shared config with BackMix on when any run has it (the off runs
  pass mix_prob=0). `fill`: the static fill when `per_run_fill` is False (then the fill
  argument is ignored). The stacked state is donated. `unroll`: the runs as R copies of the
  single-run program inside one jit instead of one vmapped program (the same results as
  training each alone, bit for bit on CPU, but no batching: for checking the sweep's
  plumbing; vmap's batched convolutions round differently, see docs/sweeps.md).
  """
  def one(state, batch, mix_prob, run_fill):
    return per_device_step(state, batch, model=model, framework=framework, tx=tx, config=config,
                           steps_per_epoch=steps_per_epoch,
                           fill=run_fill if per_run_fill else fill, mix_prob=mix_prob)

  def unrolled(states, batches, mix_probs, fills):
    outs = [one(*jax.tree.map(lambda x: x[i], (states, batches, mix_probs, fills)))
            for i in range(mix_probs.shape[0])]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  body = unrolled if unroll else jax.vmap(one)
  mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(None, parallel.DATA_AXIS), P(), P()),
                         out_specs=(P(), P()))
  return jax.jit(mapped, donate_argnums=0)


def build_sweep(configs, data=None, *, unroll: bool = False) -> Sweep:
  """The `Sweep` of `configs` (checked with `check_sweep`): each run built as alone
  (`build_run`; runs of the same trial share one load of the data; `data`, when given, is
  every run's), and the vmapped step (`unroll`: see make_sweep_step). Raises ConfigError /
  DataError."""
  check_sweep(configs)
  loaded, runs = {}, []
  for config in configs:
    key = _data_key(config)
    run = build_run(config, data if data is not None else loaded.get(key))
    loaded.setdefault(key, run.data)
    runs.append(run)
  _check_built(runs)
  on = [bool(r.config.backmix.enabled) for r in runs]
  bcfg = configs[0].backmix
  bank = any(on) and bcfg.cam_source == "bank"
  streams = [dataclasses.replace(r.stream, partner_stream=True) if bank else r.stream
             for r in runs]
  step_config = runs[on.index(True)].config if any(on) else runs[0].config
  per_run_fill = any(on) and bcfg.fill_mode == "dataset_mean"
  step_fn = make_sweep_step(
      runs[0].mesh, model=runs[0].train_model, framework=runs[0].framework, tx=runs[0].tx,
      config=step_config, steps_per_epoch=runs[0].stream.steps_per_epoch,
      fill=runs[on.index(True)].fill if any(on) else None, per_run_fill=per_run_fill,
      unroll=unroll)
  rows = max(len(r.data.train) for r in runs) if bank else 1
  return Sweep(runs, streams, runs[0].mesh, step_fn, rows)


def sweep_inputs(sweep: Sweep) -> tuple[jax.Array, jax.Array]:
  """(mix_prob float32 [R], fill float32 [R] or [R, C]), replicated: the per-run values the
  step takes beside the state (mix_prob 0 for BackMix-off runs)."""
  mix = np.array([float(r.config.backmix.mix_prob) if r.config.backmix.enabled else 0.0
                  for r in sweep.runs], np.float32)
  fill = np.stack([np.asarray(r.fill, np.float32) for r in sweep.runs])
  rep = parallel.replicated(sweep.mesh)
  return jax.device_put(mix, rep), jax.device_put(fill, rep)


def _widen(sweep: Sweep, i: int, state):
  """Run i's own state as a member of the stack: its bank grown to `bank_rows` rows (the
  rows past its training set are never read; a BackMix-off run's bank is never read)."""
  rows = sweep.bank_rows
  if state.bank.shape[0] == rows:
    return state
  grid = state.bank.shape[-1]
  if sweep.runs[i].config.backmix.enabled:
    bank = jnp.concatenate([state.bank, backmix.init_bank(rows - state.bank.shape[0], grid)])
  else:
    bank = backmix.init_bank(rows, grid)
  return state.replace(bank=bank)


def stack_states(sweep: Sweep, states: list):
  """Per-run states -> the stacked state [R, ...], replicated over the mesh (new buffers)."""
  states = [_widen(sweep, i, s) for i, s in enumerate(states)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  return jax.device_put(stacked, parallel.replicated(sweep.mesh))


def run_state(sweep: Sweep, stacked, i: int):
  """Run i's slice of the stacked state, shaped as the single run's (its bank cut back to its
  own rows; a BackMix-off run's placeholder bank is the single run's, untouched)."""
  template = sweep.runs[i].state
  state = jax.tree.map(lambda x: x[i], stacked)
  rows = template.bank.shape[0]
  if state.bank.shape[0] != rows:
    bank = state.bank[:rows] if sweep.runs[i].config.backmix.enabled else template.bank
    state = state.replace(bank=bank)
  return state.replace(teacher=template.teacher)


def run_batch_sharding(mesh) -> NamedSharding:
  """[R, B, ...]: runs unsharded, each run's batch split over 'data'."""
  return NamedSharding(mesh, P(None, parallel.DATA_AXIS))


def to_global(batch: dict, mesh) -> dict:
  """This process's share [R, b, ...] of a sweep batch (NumPy) -> global arrays [R, B, ...]."""
  sharding = run_batch_sharding(mesh)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    shape = (v.shape[0], v.shape[1] * jax.process_count()) + v.shape[2:]
    out[k] = jax.make_array_from_process_local_data(sharding, v, shape)
  return out


def sweep_batches(streams, start_step: int, end_step: int):
  """The stacked batches [R, b, ...] of steps start_step .. end_step - 1: run i's row is
  exactly the batch its own stream gives it alone."""
  for group in zip(*(s.batches(start_step, end_step) for s in streams)):
    yield {k: np.stack([b[k] for b in group]) for k in group[0]}


def common_start(workdirs) -> int:
  """The newest step every run's workdir has a checkpoint of; 0 when there is none."""
  common = None
  for workdir in workdirs:
    steps = set(checkpoint_steps(workdir))
    common = steps if common is None else common & steps
  return max(common) if common else 0


def train_sweep(configs, workdirs) -> list[dict]:
  """Train the runs of `configs` as one sweep, run i in workdirs[i] (each claimed and recorded
  as a single run's, resumed from the newest step all of them have); return each run's
  final metrics, as `train.train_and_evaluate` returns a single run's."""
  if len(configs) != len(workdirs):
    raise ConfigError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if len({str(w) for w in workdirs}) != len(workdirs):
    raise ConfigError("every run of a sweep needs its own workdir")
  for config in configs:
    validate.check_config(config)
  check_sweep(configs)
  with contextlib.ExitStack() as stack:
    claims = [stack.enter_context(claim_workdir(config, str(workdir)))
              for config, workdir in zip(configs, workdirs)]
    return _train_sweep(configs, [str(w) for w in workdirs], claims)


def _describe(run: Run) -> str:
  c = run.config
  return (f"trial {c.trial} seed {c.seed} BackMix {'on' if c.backmix.enabled else 'off'}")


def _train_sweep(configs, workdirs: list[str], claims) -> list[dict]:
  t_start = time.time()
  sweep = build_sweep(configs)
  evaluators = [build_evaluators(run, w) for run, w in zip(sweep.runs, workdirs)]
  c0 = configs[0]
  log(f"sweep  {sweep.size} runs of {c0.model} + {c0.framework} on {c0.dataset} "
      f"({c0.protocol}), {c0.dtype} compute | {jax.device_count()} x "
      f"{jax.devices()[0].platform} | batch {sweep.size} x {c0.batch_size} | "
      f"{sweep.steps_per_epoch} steps/epoch x {c0.num_epochs} epochs = {sweep.total_steps} steps")
  for run, w in zip(sweep.runs, workdirs):
    log(f"run    {_describe(run)}: known classes {list(run.data.known_classes)} | train "
        f"{len(run.data.train)} | {w}")
  ckpts, loggers = [], []
  try:
    start = common_start(workdirs)
    if start:
      ckpts = [checkpointing.Checkpointer(w, keep=c.keep_checkpoints)
               for c, w in zip(configs, workdirs)]
      states = [ckpt.restore(run.state, run.signature, step=start)[0]
                for ckpt, run in zip(ckpts, sweep.runs)]
      log(f"resume every run from its checkpoint at step {start}")
    else:
      states = [run.state for run in sweep.runs]
    # Every run accepted (config, data, evaluators, the checkpoint it resumes from checked):
    # the workdirs are written from here (training/workdir.py).
    for held in claims:
      held.accept()
    if not ckpts:
      ckpts = [checkpointing.Checkpointer(w, keep=c.keep_checkpoints)
               for c, w in zip(configs, workdirs)]
    for ckpt, w in zip(ckpts, workdirs):
      unfinished = ckpt.remove_unfinished()
      if unfinished:
        log(f"note   {w}: removed the unfinished checkpoint write(s) {', '.join(unfinished)} "
            "of an earlier start")
    loggers = [MetricLogger(w) for w in workdirs]
    if start:
      for logger in loggers:
        logger.resumed_from(start)
    stacked = stack_states(sweep, states)
    del states
    with PreemptionWatch(ckpts[0]) as preemption:
      stacked = _loop(sweep, stacked, start, ckpts, loggers, preemption, evaluators)
    if start < sweep.total_steps:
      _save_all(sweep, stacked, sweep.total_steps, ckpts, force=True)
    for ckpt in ckpts:
      ckpt.wait()
    log(f"sweep  trained in {format_duration(time.time() - t_start)}; evaluating each run at "
        f"step {sweep.total_steps}")
    results = []
    for i, (run, w) in enumerate(zip(sweep.runs, workdirs)):
      log(f"\nrun    {_describe(run)}: {w}")
      results.append(evaluate_run(run, run_state(sweep, stacked, i), w, loggers[i],
                                  evaluators=evaluators[i]))
  finally:
    for ckpt in ckpts:
      ckpt.close()
    for logger in loggers:
      logger.close()
  return results


def _save_all(sweep: Sweep, stacked, step: int, ckpts, *, force: bool = False):
  """Each run's slice into its own workdir, in the single-run format; a run that already has
  a checkpoint at or past `step` (an earlier, longer attempt of the same trajectory) keeps it."""
  for i, (run, ckpt) in enumerate(zip(sweep.runs, ckpts)):
    latest = ckpt.latest_step()
    if latest is not None and latest >= step:
      continue
    ckpt.save(step, run_state(sweep, stacked, i), run.signature, force=force)


def _loop(sweep: Sweep, stacked, start: int, ckpts, loggers, preemption, evaluators):
  cfg = sweep.runs[0].config
  total, spe, r = sweep.total_steps, sweep.steps_per_epoch, sweep.size
  if start >= total:
    log(f"nothing to train: checkpoint step {start} >= {total} steps")
    return stacked
  mix_prob, fill = sweep_inputs(sweep)
  clock = Clock(start)
  window = dict(sums=[{} for _ in range(r)], n=[0] * r, skipped=[0] * r)

  def read(step, metrics):
    metrics = jax.device_get(metrics)
    finite = np.asarray(metrics.pop("finite"))
    for i in range(r):
      if not finite[i]:
        where = f"run {i} ({_describe(sweep.runs[i])}, {ckpts[i].directory})"
        if cfg.nan_policy == "stop":
          raise NonFiniteError(f"non-finite loss or gradients at step {step} in {where}; the "
                               "sweep stops (its last checkpoints are untouched). Lower the "
                               "learning rate or set --config.nan_policy=skip_step")
        window["skipped"][i] += 1
        if window["skipped"][i] >= cfg.get("max_skipped_steps", 10):
          raise NonFiniteError(f"{window['skipped'][i]} steps in a row (to step {step}) had "
                               f"non-finite loss or gradients in {where} under "
                               "nan_policy=skip_step. Lower the learning rate")
        log(f"warn   step {step}: non-finite loss or gradients in {where}, update skipped")
        continue
      window["skipped"][i] = 0
      for k, v in metrics.items():
        window["sums"][i][k] = window["sums"][i].get(k, 0.0) + float(v[i])
      window["n"][i] += 1
    if step % cfg.log_every_steps == 0 or step == total:
      now = time.time()
      rate = clock.rate(step, cfg.batch_size, now)
      avgs = [{k: v / max(n, 1) for k, v in sums.items()}
              for sums, n in zip(window["sums"], window["n"])]
      for logger, avg in zip(loggers, avgs):
        if avg:
          logger.write(step, dict(avg, images_per_second=rate))
      done = [a for a in avgs if a]
      loss = np.mean([a["loss"] for a in done]) if done else float("nan")
      acc = np.mean([a["accuracy"] for a in done]) if done else float("nan")
      left = (total - step) * cfg.batch_size / max(rate, 1e-9)
      log(f"step {step:>6}/{total} | epoch {(step - 1) // spe + 1:>3}/{cfg.num_epochs} | "
          f"mean of {r} runs: loss {loss:.4f} acc {acc:.3f} | {r} x {rate:,.0f} = "
          f"{r * rate:,.0f} img/s | left {format_duration(left)}")
      clock.mark(step, now)
      window.update(sums=[{} for _ in range(r)], n=[0] * r)

  def evaluate(names, step, stacked):
    for i, (run, logger) in enumerate(zip(sweep.runs, loggers)):
      log(f"eval   run {i} ({_describe(run)})")
      log_evaluations(run_evaluators(evaluators[i], names, run_state(sweep, stacked, i)),
                      evaluators[i], step, step // spe, logger)

  def wait():
    for ckpt in ckpts:
      ckpt.wait()

  hooks = Hooks(
      step=lambda stacked, batch: sweep.step_fn(stacked, to_global(batch, sweep.mesh),
                                                mix_prob, fill),
      read=read, save=lambda step, stacked, force: _save_all(sweep, stacked, step, ckpts,
                                                              force=force),
      wait=wait, due=lambda epoch: due(evaluators[0], epoch), evaluate=evaluate,
      saved_where="each run's checkpoint saved in its workdir")
  return run_loop(stacked, sweep_batches(sweep.streams, start, total), start=start,
                  total=total, steps_per_epoch=spe, checkpoint_every=cfg.checkpoint_every_steps,
                  preemption=preemption, clock=clock, hooks=hooks)
