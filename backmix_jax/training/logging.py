"""Run records: a progress line on stdout, metrics.jsonl and TensorBoard events in the workdir.

Only process 0 writes, so a pod slice produces one record.
"""
from __future__ import annotations

import json
import os
import time

import jax


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
    if not self.enabled:
      return
    record = {"step": int(step), "kind": prefix, "time": time.time(),
              **{k: float(v) for k, v in metrics.items()}}
    self.jsonl.write(json.dumps(record) + "\n")
    self.jsonl.flush()
    if self.tb is not None:
      for k, v in metrics.items():
        self.tb.add_scalar(f"{prefix}/{k}", float(v), int(step))
      self.tb.flush()

  def close(self):
    if self.enabled:
      self.jsonl.close()
      if self.tb is not None:
        self.tb.close()


def log(message: str):
  """Print from process 0 only, flushed so progress shows under nohup and in CI logs."""
  if jax.process_index() == 0:
    print(message, flush=True)
