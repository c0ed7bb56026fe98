"""Run records: a progress line on stdout, metrics.jsonl and TensorBoard events in the workdir.

Only process 0 writes, so a pod slice produces one record.
"""
from __future__ import annotations

import json
import os
import time

import jax

from backmix_jax.training.fields import is_int


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MetricLogger:
  def __init__(self, workdir: str, *, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:  # optional on minimal GPU images
        self.tb = None

  def write(self, step: int, metrics: dict, prefix: str = "train"):
    """One `prefix` record at `step`. The step stays an integer (a metric named "step"
    cannot turn it into a float); integer metrics (counts, epochs) stay integers."""
    if not self.enabled:
      return
    metrics = {k: v for k, v in metrics.items() if k != "step"}
    record = {"step": int(step), "kind": prefix, "time": time.time(),
              **{k: int(v) if is_int(v) else float(v) for k, v in metrics.items()}}
    self._append(record)
    if self.tb is not None:
      for k, v in metrics.items():
        self.tb.add_scalar(f"{prefix}/{k}", float(v), int(step))
      self.tb.flush()

  def resumed_from(self, step: int):
    """Mark a resume from the checkpoint of `step`: the records of steps after it that
    precede this marker were written by the interrupted run and are replayed after it."""
    if self.enabled:
      self._append({"step": int(step), "kind": "resumed_from", "time": time.time()})

  def _append(self, record: dict):
    self.jsonl.write(json.dumps(record) + "\n")
    self.jsonl.flush()

  def close(self):
    if self.enabled:
      self.jsonl.close()
      if self.tb is not None:
        self.tb.close()


def log(message: str):
  """Print from process 0 only, flushed so progress shows under nohup and in CI logs."""
  if jax.process_index() == 0:
    print(message, flush=True)
