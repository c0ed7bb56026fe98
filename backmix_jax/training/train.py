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
from backmix_jax.evaluation.evaluators import (build_evaluators, due, other_tables,
                                               run_evaluators)
from backmix_jax.training import checkpointing, identity, validate
from backmix_jax.training.loop import Clock, Hooks, Preempted, run_loop
from backmix_jax.training.records import MetricLogger, format_duration, log
from backmix_jax.training.run import Run, build_run
from backmix_jax.training.state import donatable_copy
from backmix_jax.training.step import make_run_step
from backmix_jax.training.workdir import checkpoint_steps, claim as claim_workdir


class NonFiniteError(RuntimeError):
  """Loss or gradients became NaN/inf under nan_policy='stop', or stayed so for
  max_skipped_steps steps in a row under nan_policy='skip_step'."""


class PreemptionWatch:
  """Notices SIGTERM (a preempted TPU VM or a scheduler's stop) and Ctrl-C between steps.

  With several processes, Orbax's preemption check makes every host agree on the same step
  to stop at (a signal reaches hosts at different times); alone, a signal handler sets a
  flag that the loop reads after each step, a plain Python check with no device sync. A
  second Ctrl-C raises KeyboardInterrupt at once, for a user who will not wait for the save.
  Ctrl-C is left to Python's default on several processes, which could not agree on a step.
  After the loop (`stop_at_once`: the final save and evaluation) a signal raises Preempted
  at once: the final checkpoint is complete, and the rerun evaluates it.
  """

  def __init__(self, ckpt=None):
    self.ckpt = ckpt  # set by watch_steps before the loop
    self.flag = False
    self.signal = "SIGTERM"
    self.previous = {}
    self.at_once = None  # set by stop_at_once

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      watched = [signal.SIGTERM] + ([signal.SIGINT] if jax.process_count() == 1 else [])
      self.previous = {s: signal.signal(s, self._handle) for s in watched}
    return self

  def _handle(self, signum, frame):
    if signum == signal.SIGINT and self.flag:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt
    self.flag = True
    self.signal = signal.Signals(signum).name
    if self.at_once is not None:
      self._stop()

  def stop_at_once(self, where: str) -> None:
    """From now on a signal raises Preempted at once, its line ending in `where` (after the
    loop: the final evaluation has no step to finish); one that came before raises now."""
    self.at_once = where
    if self.flag:
      self._stop()

  def watch_steps(self, ckpt) -> None:
    """From now on a signal stops the loop after the step it interrupts (see requested)."""
    self.ckpt = ckpt
    self.at_once = None

  def _stop(self):
    raise Preempted(f"stopped by {self.signal} {self.at_once}",
                    exit_code=130 if self.signal == "SIGINT" else 0)

  def requested(self, step: int) -> bool:
    if jax.process_count() > 1:
      return bool(self.ckpt.manager.reached_preemption(step))
    return self.flag

  def __exit__(self, *exc):
    for s, previous in self.previous.items():
      signal.signal(s, previous)
    return False


def run_record(run: Run, arpl_compat: bool = False) -> dict:
  """The `run` block of metrics.json: what was evaluated (`identity.run_record`)."""
  return identity.run_record(run.config, known_classes=run.data.known_classes,
                             total_steps=run.total_steps, arpl_compat=arpl_compat)


def log_evaluations(results: dict, evaluators, step: int, epoch: int, logger) -> None:
  """One progress line per evaluator and one `eval` record in metrics.jsonl/TensorBoard
  (the open-set metrics under their own names, the others as `<evaluator>/<metric>`)."""
  flat = {}
  for name, metrics in results.items():
    log(f"eval   step {step} epoch {epoch} | {name}: {evaluators[name][0].summary(metrics)}")
    flat |= {(k if name == "open_set" else f"{name}/{k}"): v for k, v in metrics.items()}
  if logger is not None:
    logger.write(step, dict(flat, epoch=epoch), prefix="eval")


def evaluate_run(run: Run, state, directory: str, logger: MetricLogger | None = None, *,
                 arpl_compat: bool = False, evaluators=None, tag: str = "") -> dict:
  """Every evaluator of the run on `state`, shared by train, evaluate and trials.

  Writes metrics{tag}.json (the open-set metrics, `score`, `step`, a `run` block naming what
  was evaluated, and one block per other evaluator), metrics{tag}.md, eval_outputs{tag}.npz,
  the ROC, score-histogram and OSCR plots and each evaluator's own files in `directory`.
  `evaluators` defaults to those of config.evals (`evaluators.build_evaluators`).
  """
  if evaluators is None:
    evaluators = build_evaluators(run, directory,
                                  overrides={"open_set": dict(arpl_compat=arpl_compat)})
  step = int(state.step)
  results = run_evaluators(evaluators, list(evaluators), state)
  log_evaluations(results, evaluators, step, -(-step // run.stream.steps_per_epoch), logger)
  open_set = evaluators["open_set"][0]
  metrics = dict(results.pop("open_set"), score=open_set.scorer().score, step=step,
                 run=run_record(run, open_set.opts["arpl_compat"]))
  metrics |= results
  if jax.process_index() == 0:
    sections = [evaluators[name][0].markdown(m) for name, m in results.items()]
    report.write_evaluation(directory, metrics, open_set.outputs, tag=tag, sections=sections)
    for name in results:
      evaluators[name][0].write(directory, tag)
  return metrics


def train_and_evaluate(config, workdir: str) -> dict:
  """Train per `config` in `workdir` (resuming if it holds checkpoints); return final metrics.

  The workdir is held for the whole run (training/workdir.py): one writer at a time, and a
  rerun continues only the run the workdir records (config.resume='override' to change it).
  """
  validate.check_config(config)
  with claim_workdir(config, workdir) as held:
    return _train_and_evaluate(config, workdir, held)


def _train_and_evaluate(config, workdir: str, held) -> dict:
  with PreemptionWatch() as preemption:
    if jax.process_count() == 1:  # several hosts could not agree on a stop before the loop
      # Loading data, building and restoring have no step to finish: a signal stops at once.
      preemption.stop_at_once("before the first step (loading data, building the model or "
                              "restoring); nothing new was saved. Run the same command again "
                              "to continue.")
    metrics, sections = _run(config, workdir, held, preemption)
  log(report.evaluation_markdown(metrics))
  for section in sections:  # the other evaluators' tables (e.g. one row per SSB difficulty)
    log(section)
  log(f"wrote metrics.json, metrics.md and plots in {workdir}")
  return metrics


def _run(config, workdir: str, held, preemption) -> tuple[dict, list[str]]:
  """Train and evaluate; (final metrics, the markdown tables of the evaluators other than
  open_set, for the closing printout)."""
  t_start = time.time()
  run = build_run(config)
  # Built before anything is written: an evaluator that cannot run (unknown set unreadable,
  # data without what it measures) stops here, with the workdir untouched.
  evaluators = build_evaluators(run, workdir)
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

  ckpt = logger = None
  try:
    if checkpoint_steps(workdir):
      ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
      state, start = ckpt.restore(run.state, run.signature)
      log(f"resume from checkpoint at step {start} in {ckpt.directory}")
    else:
      # The step donates (deletes) the buffers it is given: run.state must outlive the loop.
      state, start = donatable_copy(run.state), 0
    # Accepted: the config, its data and evaluators, and the checkpoint it resumes from (the
    # model an override names included) passed their checks. The workdir is written from here.
    held.accept()
    if ckpt is None:
      ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
    unfinished = ckpt.remove_unfinished()
    if unfinished:
      log(f"note   removed the unfinished checkpoint write(s) {', '.join(unfinished)} of an "
          "earlier start")
    logger = MetricLogger(workdir)
    if start:  # readers drop the records of steps > start written before: they are replayed
      logger.resumed_from(start)
    step_fn = make_run_step(run)
    preemption.watch_steps(ckpt)
    state = _loop(run, state, start, step_fn, ckpt, logger, preemption, evaluators, workdir)
    # A checkpoint past this schedule (resumed with resume=override and fewer steps) is
    # not saved again under the schedule's last step: that would mislabel its weights.
    if start < run.total_steps and ckpt.latest_step() != run.total_steps:
      ckpt.save(run.total_steps, state, run.signature, force=True)
    ckpt.wait()
    # No step is left to finish: a signal from here on (or one that came during the last
    # step or its save) stops at once; the final checkpoint is complete.
    preemption.stop_at_once(
        f"before the final evaluation of step {max(start, run.total_steps)} finished; checkpoint "
        f"saved in {ckpt.directory}. Run the same command again to evaluate it.")
    log(f"train  done in {format_duration(time.time() - t_start)}; evaluating step {run.total_steps}")
    metrics = evaluate_run(run, state, workdir, logger, evaluators=evaluators)
  finally:
    if ckpt is not None:
      ckpt.close()
    if logger is not None:
      logger.close()
  return metrics, other_tables(evaluators, metrics)


def _loop(run: Run, state, start: int, step_fn, ckpt, logger, preemption, evaluators,
          workdir: str) -> object:
  cfg = run.config
  total, spe = run.total_steps, run.stream.steps_per_epoch
  if start >= total:
    log(f"nothing to train: checkpoint step {start} >= {total} steps")
    return state
  clock = Clock(start)
  window = dict(sums={}, n=0, skipped=0)
  profiler = StepProfiler(os.path.join(workdir, "profile"), start, cfg.profile_steps)

  def read(step, metrics):
    metrics = jax.device_get(metrics)
    if not bool(metrics.pop("finite")):
      if cfg.nan_policy == "stop":
        raise NonFiniteError(
            f"non-finite loss or gradients at step {step}; last good checkpoint: "
            + (f"step {ckpt.latest_step()} in {ckpt.directory} (untouched)"
               if ckpt.latest_step() is not None else "none saved yet")
            + ". Lower the learning rate or set --config.nan_policy=skip_step")
      window["skipped"] += 1
      limit = cfg.get("max_skipped_steps", 10)
      if window["skipped"] >= limit:  # diverged: skipping more steps will not recover
        raise NonFiniteError(
            f"{window['skipped']} steps in a row (to step {step}) had non-finite loss or "
            f"gradients under nan_policy=skip_step (max_skipped_steps={limit}); "
            "last good checkpoint: "
            + (f"step {ckpt.latest_step()} in {ckpt.directory} (untouched)"
               if ckpt.latest_step() is not None else "none saved yet")
            + ". Lower the learning rate")
      log(f"warn   step {step}: non-finite loss or gradients, update skipped")
      return
    window["skipped"] = 0
    for k, v in metrics.items():
      window["sums"][k] = window["sums"].get(k, 0.0) + float(v)
    window["n"] += 1
    if step % cfg.log_every_steps == 0 or step == total:
      now = time.time()
      rate = clock.rate(step, cfg.batch_size, now)
      avg = {k: v / window["n"] for k, v in window["sums"].items()}
      left = (total - step) * cfg.batch_size / max(rate, 1e-9)
      log(f"step {step:>6}/{total} | epoch {(step - 1) // spe + 1:>3}/{cfg.num_epochs} | "
          f"loss {avg['loss']:.4f} | acc {avg['accuracy']:.3f} | lr {avg['learning_rate']:.3g} | "
          f"grad norm {avg['grad_norm']:.3g} | {rate:,.0f} img/s | "
          f"left {format_duration(left)}")
      logger.write(step, dict(avg, images_per_second=rate))
      clock.mark(step, now)
      window.update(sums={}, n=0)

  def evaluate(names, step, state):
    log_evaluations(run_evaluators(evaluators, names, state), evaluators, step, step // spe,
                    logger)

  hooks = Hooks(
      step=lambda state, batch: step_fn(state, parallel.to_global(batch, run.mesh)),
      read=read, save=lambda step, state, force: ckpt.save(step, state, run.signature,
                                                            force=force),
      wait=ckpt.wait, due=lambda epoch: due(evaluators, epoch), evaluate=evaluate,
      saved_where=f"checkpoint saved in {ckpt.directory}", after_step=profiler.after_step)
  batches = run.stream.batches(start, total)
  try:
    state = run_loop(state, batches, start=start, total=total, steps_per_epoch=spe,
                     checkpoint_every=cfg.checkpoint_every_steps, preemption=preemption,
                     clock=clock, hooks=hooks)
  finally:  # a stop request or an error: a streaming backend's workers end now, not at exit
    getattr(batches, "close", lambda: None)()
  profiler.stop(state)
  return state


class StepProfiler:
  """A jax.profiler trace of `num_steps` steps (TensorBoard's profile plugin reads it),
  starting two steps after `start` so compilation stays out of it; 0 steps = off."""

  def __init__(self, directory: str, start: int, num_steps: int):
    self.directory, self.first, self.last = directory, start + 2, start + 1 + num_steps
    self.on = False
    self.enabled = num_steps > 0

  def after_step(self, step: int, state):
    if self.enabled and step == self.first - 1:
      jax.block_until_ready(state)
      jax.profiler.start_trace(self.directory)
      self.on = True
    elif self.on and step == self.last:
      self.stop(state)

  def stop(self, state):
    if self.on:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.on = False
      log(f"profile steps {self.first}-{self.last} written to {self.directory}")
