"""Two JAX processes on localhost (CPU collectives) train the same model as one process.

This is the multi-host path of a TPU VM pod slice: jax.distributed.initialize, each process
feeding its own slice of every global batch, global arrays built from process-local data,
gradients and batch-norm statistics averaged across processes, Orbax saving from both.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices_per_process: int) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  return env


def test_two_processes_train_like_one(tmp_path):
  """2 processes x 1 device == 1 process x 2 devices: same global batches, same per-device
  random draws (BackMix partners, boxes, crops), same final parameters and metrics."""
  single = tmp_path / "single.npz"
  subprocess.run([sys.executable, WORKER, "0", "1", "0", str(tmp_path / "one"), str(single)],
                 env=_env(2), check=True, cwd=ROOT, timeout=600, capture_output=True)
  port = str(_free_port())
  multi = tmp_path / "multi.npz"
  procs = [subprocess.Popen([sys.executable, WORKER, str(i), "2", port, str(tmp_path / "two"),
                             str(multi)], env=_env(1), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  a, b = np.load(single), np.load(multi)
  assert int(a["devices"]) == 2 and int(a["processes"]) == 1
  assert int(b["devices"]) == 2 and int(b["processes"]) == 2
  np.testing.assert_allclose(b["params"], a["params"], rtol=1e-3, atol=5e-4)
  assert abs(float(a["auroc"]) - float(b["auroc"])) < 1e-3
  assert abs(float(a["acc"]) - float(b["acc"])) < 1e-3
  # Process 0's log says it ran as one of two processes over 2 devices.
  assert "2 x cpu over 2 process(es)" in outputs[0]
