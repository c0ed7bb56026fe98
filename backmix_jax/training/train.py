"""The training loop: `train_and_evaluate(config, workdir)`.

Resumes from the newest checkpoint in the workdir, runs the jitted data-parallel step
over the host pipeline, logs progress without stalling the device (metrics are read one
step behind), checkpoints periodically and at the end, then evaluates the final model.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import jax

from backmix_jax import parallel
from backmix_jax.evaluation import report
from backmix_jax.evaluation.predict import evaluate_open_set
from backmix_jax.training import checkpointing, validate
from backmix_jax.training.logging import MetricLogger, format_duration, log
from backmix_jax.training.setup import Run, build_run
from backmix_jax.training.step import make_train_step


class NonFiniteError(RuntimeError):
  """Loss or gradients became NaN/inf under nan_policy='stop'."""


class Preempted(Exception):
  """Training stopped on SIGTERM after saving a checkpoint; rerunning resumes."""


class PreemptionWatch:
  """Notices SIGTERM (a preempted TPU VM or a scheduler's stop) between steps.

  With several processes, Orbax's preemption check makes every host agree on the same step
  to stop at (a signal reaches hosts at different times); alone, a signal handler sets a
  flag that the loop reads after each step, a plain Python check with no device sync.
  """

  def __init__(self, ckpt):
    self.ckpt = ckpt
    self.flag = False
    self.previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.flag = True

  def requested(self, step: int) -> bool:
    if jax.process_count() > 1:
      return bool(self.ckpt.manager.reached_preemption(step))
    return self.flag

  def __exit__(self, *exc):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
    return False


def save_config(config, workdir: str):
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def evaluate_run(run: Run, state, workdir: str, logger: MetricLogger | None = None, *,
                 arpl_compat: bool = False) -> dict:
  """Open-set metrics of `state` on the run's test data, shared by train and evaluate.

  Writes metrics.json (with a `run` block naming what was evaluated), metrics.md,
  eval_outputs.npz and the ROC, score-histogram and OSCR plots in `workdir`.
  """
  cfg = run.config
  metrics, outputs = evaluate_open_set(
      run.eval_model, run.framework, run.variables(state), run.data, score=cfg.score,
      batch_size=cfg.eval_batch_size, normalization=cfg.data.normalize, mesh=run.mesh,
      arpl_compat=arpl_compat)
  metrics["step"] = int(state.step)
  metrics["run"] = dict(
      dataset=cfg.dataset, protocol=cfg.protocol, trial=int(cfg.trial),
      known_classes=[int(c) for c in run.data.known_classes], model=cfg.model,
      framework=cfg.framework, backmix=bool(cfg.backmix.enabled),
      num_epochs=int(cfg.num_epochs), total_steps=int(run.total_steps),
      arpl_compat=bool(arpl_compat))
  if jax.process_index() == 0:
    report.write_evaluation(workdir, metrics, outputs)
  if logger is not None:
    logger.write(int(state.step), {k: v for k, v in metrics.items()
                                   if isinstance(v, (int, float))}, prefix="eval")
  return metrics


def train_and_evaluate(config, workdir: str) -> dict:
  """Train per `config` in `workdir` (resuming if it holds checkpoints); return final metrics."""
  validate.check_config(config)
  t_start = time.time()
  run = build_run(config)
  d = run.data
  log(f"data   {config.dataset} trial {config.trial} ({config.protocol}): known classes "
      f"{list(d.known_classes)} | train {len(d.train)} | test known {len(d.test_known)} | "
      f"test unknown {len(d.test_unknown)} | images {d.train.images.shape[1:]}")
  n_params = sum(x.size for x in jax.tree.leaves(run.state.params))
  log(f"model  {config.model} + {config.framework} head, {n_params:,} parameters, "
      f"{config.dtype} compute | BackMix "
      f"{'on (' + config.backmix.cam_source + ')' if config.backmix.enabled else 'off'}")
  log(f"device {jax.device_count()} x {jax.devices()[0].platform} over {jax.process_count()} "
      f"process(es) | global batch {config.batch_size} | {run.stream.steps_per_epoch} steps/epoch "
      f"x {config.num_epochs} epochs = {run.total_steps} steps")

  ckpt = checkpointing.Checkpointer(workdir, every_steps=config.checkpoint_every_steps,
                                    keep=config.keep_checkpoints)
  state, start = run.state, 0
  if ckpt.latest_step() is not None:
    state, start = ckpt.restore(run.state, run.signature)
    log(f"resume from checkpoint at step {start} in {ckpt.directory}")
  save_config(config, workdir)
  logger = MetricLogger(workdir)
  step_fn = make_train_step(run.mesh, model=run.train_model, framework=run.framework, tx=run.tx,
                            config=config, steps_per_epoch=run.stream.steps_per_epoch)
  try:
    with PreemptionWatch(ckpt) as preemption:
      state = _loop(run, state, start, step_fn, ckpt, logger, preemption)
    if ckpt.latest_step() != run.total_steps:
      ckpt.save(run.total_steps, state, run.signature, force=True)
    ckpt.wait()
    log(f"train  done in {format_duration(time.time() - t_start)}; evaluating step {run.total_steps}")
    metrics = evaluate_run(run, state, workdir, logger)
  finally:
    ckpt.close()
    logger.close()
  log(report.evaluation_markdown(metrics))
  log(f"wrote metrics.json, metrics.md and plots in {workdir}")
  return metrics


def _loop(run: Run, state, start: int, step_fn, ckpt, logger, preemption) -> object:
  cfg = run.config
  total, spe = run.total_steps, run.stream.steps_per_epoch
  if start >= total:
    log(f"nothing to train: checkpoint step {start} >= {total} steps")
    return state
  window = dict(t=time.time(), step=start, sums={}, n=0)
  pending = None  # (step, metrics) of the step before, read while this one runs

  def absorb(step, metrics):
    metrics = jax.device_get(metrics)
    if not bool(metrics.pop("finite")):
      if cfg.nan_policy == "stop":
        raise NonFiniteError(
            f"non-finite loss or gradients at step {step}; last good checkpoint: "
            + (f"step {ckpt.latest_step()} in {ckpt.directory} (untouched)"
               if ckpt.latest_step() is not None else "none saved yet")
            + ". Lower the learning rate or set --config.nan_policy=skip_step")
      log(f"warn   step {step}: non-finite loss or gradients, update skipped")
      return
    for k, v in metrics.items():
      window["sums"][k] = window["sums"].get(k, 0.0) + float(v)
    window["n"] += 1
    if step % cfg.log_every_steps == 0 or step == total:
      now = time.time()
      rate = (step - window["step"]) * cfg.batch_size / max(now - window["t"], 1e-9)
      avg = {k: v / window["n"] for k, v in window["sums"].items()}
      left = (total - step) * cfg.batch_size / max(rate, 1e-9)
      log(f"step {step:>6}/{total} | epoch {(step - 1) // spe + 1:>3}/{cfg.num_epochs} | "
          f"loss {avg['loss']:.4f} | acc {avg['accuracy']:.3f} | {rate:,.0f} img/s | "
          f"left {format_duration(left)}")
      logger.write(step, dict(avg, images_per_second=rate))
      window.update(t=now, step=step, sums={}, n=0)

  for step, batch in enumerate(run.stream.batches(start, total), start=start + 1):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
    if step == start + 1:  # keep compilation out of the images/s figure
      jax.block_until_ready(metrics)
      window.update(t=time.time(), step=step - 1)
    if pending is not None:
      absorb(*pending)
    pending = (step, metrics)
    if preemption.requested(step) and step != total:
      absorb(*pending)  # never checkpoint a state that went non-finite
      ckpt.save(step, state, run.signature, force=True)
      ckpt.wait()
      raise Preempted(f"stopped by SIGTERM at step {step}/{total}; checkpoint saved in "
                      f"{ckpt.directory}. Run the same command again to resume.")
    if step % max(cfg.checkpoint_every_steps, 1) == 0 and step != total:
      absorb(*pending)  # never checkpoint a state that went non-finite
      pending = None
      ckpt.save(step, state, run.signature)
  if pending is not None:
    absorb(*pending)
  return state
