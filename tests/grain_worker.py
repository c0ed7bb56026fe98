"""Worker for test_multiprocess's streaming test: one of N JAX processes streams the training
batches of a prepared directory with data.backend=grain, builds the global arrays from its
share (parallel.to_global) and gathers them back.

python tests/grain_worker.py <process_id> <num_processes> <port> <prepared dir> <out prefix>
Writes <out prefix>.<process_id>.npz: the local and the gathered global image / index /
partner_index arrays of every step.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

STEPS, BATCH, SEED = 5, 8, 3


def main():
  pid, nproc, port, prepared, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                     sys.argv[4], sys.argv[5])
  if nproc > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
  import numpy as np
  from backmix_jax import parallel
  from backmix_jax.data import openset, sources
  from backmix_jax.data.pipeline import TrainStream
  spec = f"arrayrecord:{prepared}"
  src = sources.load_source(spec, image_size=8, channels=3)
  data = openset.make_open_set(src.train, src.test, (6, 3, 4, 9, 8, 2))
  stream = TrainStream(data.train, BATCH, SEED, jax.process_index(), jax.process_count(),
                       partner_stream=True, backend="grain", source=spec,
                       known_classes=data.known_classes)
  mesh = parallel.make_mesh()
  keys = ("image", "index", "partner_index")
  local = {k: [] for k in keys}
  gathered = {k: [] for k in keys}
  for batch in stream.batches(0, STEPS):
    on_device = parallel.to_global(batch, mesh)
    for k in keys:
      local[k].append(batch[k])
      gathered[k].append(parallel.to_host(on_device[k]))
  np.savez(f"{out}.{pid}.npz", **{f"local_{k}": np.stack(v) for k, v in local.items()},
           **{f"global_{k}": np.stack(v) for k, v in gathered.items()})


if __name__ == "__main__":
  main()
