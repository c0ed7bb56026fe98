"""The step loop both trainers run (training/train.py: one run; training/sweep.py: R runs as
one program), so the order of what follows a step is decided in one place.

After step s is dispatched: the metrics of step s-1 are read (one step behind: reading never
waits for the step just dispatched); on a stop request (SIGTERM, Ctrl-C) step s's metrics
are read and a checkpoint saved, then Preempted is raised; every `checkpoint_every` steps a
checkpoint is saved, its step's metrics read first (a non-finite state is never saved); at
an epoch's end the due evaluators run, their step's metrics read first (only a finite state
is evaluated). The final step is neither saved nor evaluated here: the trainers do that
after the loop.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable

import jax


class Preempted(Exception):
  """Training stopped on SIGTERM or Ctrl-C after saving a checkpoint; rerunning resumes.

  exit_code: 0 for SIGTERM (a scheduler's stop is a clean end), 130 for Ctrl-C (128 +
  SIGINT, as a shell reports an interrupted command).
  """

  def __init__(self, message: str, exit_code: int = 0):
    super().__init__(message)
    self.exit_code = exit_code


class Clock:
  """The images/s window since the last log line, with compilation and evaluation kept out
  of it."""

  def __init__(self, step: int):
    self.mark(step)

  def mark(self, step: int, now: float | None = None) -> None:
    self.t, self.step = time.time() if now is None else now, step

  def exclude(self, seconds: float) -> None:
    self.t += seconds

  def rate(self, step: int, batch_size: int, now: float) -> float:
    """Images per second from the mark to `step` at time `now`."""
    return (step - self.step) * batch_size / max(now - self.t, 1e-9)


@dataclasses.dataclass(frozen=True)
class Hooks:
  """What one trainer does at each point of the loop.

  step(state, batch) -> (state, metrics): one dispatched step.
  read(step, metrics): reads one step's metrics (logging; raises on a non-finite step).
  save(step, state, force): starts a checkpoint of `state` at `step`.
  wait(): until the started checkpoints are complete.
  due(epoch) -> names of the evaluators due after `epoch`.
  evaluate(names, step, state): runs and logs them.
  saved_where: how the stop line names the checkpoint ('checkpoint saved in <dir>').
  after_step(step, state): anything else per step (the profiler).
  """
  step: Callable
  read: Callable
  save: Callable
  wait: Callable
  due: Callable
  evaluate: Callable
  saved_where: str
  after_step: Callable = lambda step, state: None


def run_loop(state, batches: Iterable, *, start: int, total: int, steps_per_epoch: int,
             checkpoint_every: int, preemption, clock: Clock, hooks: Hooks):
  """Steps start+1..total over `batches` (the batches of those steps); returns the state
  after the last. Raises Preempted on a stop request (see the module doc)."""
  pending = None  # (step, metrics) of the step before, read while this one runs
  for step, batch in enumerate(batches, start=start + 1):
    state, metrics = hooks.step(state, batch)
    if step == start + 1:  # keep compilation out of the images/s figure
      jax.block_until_ready(metrics)
      clock.mark(step - 1)
    if pending is not None:
      hooks.read(*pending)
    pending = (step, metrics)
    if preemption.requested(step) and step != total:
      hooks.read(*pending)  # never checkpoint a state that went non-finite
      hooks.save(step, state, True)
      hooks.wait()
      raise Preempted(f"stopped by {preemption.signal} at step {step}/{total}; "
                      f"{hooks.saved_where}. Run the same command again to resume.",
                      exit_code=130 if preemption.signal == "SIGINT" else 0)
    # The one place that decides the periodic saves (the final one follows the loop).
    if step % checkpoint_every == 0 and step != total:
      hooks.read(*pending)  # never checkpoint a state that went non-finite
      pending = None
      hooks.save(step, state, False)
    names = hooks.due(step // steps_per_epoch) if step % steps_per_epoch == 0 and \
        step != total else []
    if names:
      if pending is not None:
        hooks.read(*pending)  # evaluate only a state whose step was finite
        pending = None
      t_eval = time.time()
      hooks.evaluate(names, step, state)
      clock.exclude(time.time() - t_eval)
    hooks.after_step(step, state)
  if pending is not None:
    hooks.read(*pending)
  return state
