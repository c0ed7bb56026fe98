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


def test_two_processes_stream_their_shares_of_one_batch(tmp_path):
  """data.backend=grain on 2 processes: each streams a different half of every global batch
  (its own rows only), and the global arrays built from the halves are exactly the
  single-process stream's batches."""
  from backmix_jax.commands.prepare import prepare
  from backmix_jax.data import openset, sources
  from backmix_jax.data.pipeline import TrainStream
  from tests.helpers import quick_config
  prepared = str(tmp_path / "digits8")
  prepare(quick_config(**{"data.image_size": 8}), "", prepared, progress=lambda s: None)
  port = str(_free_port())
  worker = os.path.join(ROOT, "tests", "grain_worker.py")
  procs = [subprocess.Popen([sys.executable, worker, str(i), "2", port, prepared,
                             str(tmp_path / "out")], env=_env(1), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  spec = f"arrayrecord:{prepared}"
  src = sources.load_source(spec, image_size=8, channels=3)
  data = openset.make_open_set(src.train, src.test, (6, 3, 4, 9, 8, 2))
  single = list(TrainStream(data.train, 8, 3, partner_stream=True, backend="grain", source=spec,
                            known_classes=data.known_classes).batches(0, 5))
  shares = [np.load(tmp_path / f"out.{i}.npz") for i in range(2)]
  for k in ("image", "index", "partner_index"):
    want = np.stack([b[k] for b in single])                       # [steps, 8, ...]
    for i, share in enumerate(shares):
      np.testing.assert_array_equal(share[f"global_{k}"], want, err_msg=k)
      np.testing.assert_array_equal(share[f"local_{k}"], want[:, 4 * i:4 * (i + 1)], err_msg=k)
