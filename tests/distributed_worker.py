"""Worker for test_multiprocess: trains the quick digits config as one of N JAX processes.

python tests/distributed_worker.py <process_id> <num_processes> <port> <workdir> <out.npz>
With num_processes=1 it trains alone (on however many local devices XLA_FLAGS gives it).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402


def main():
  pid, nproc, port, workdir, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
  if nproc > 1:
    # The path a TPU VM pod slice takes: one process per host, collectives between them.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
  import numpy as np
  from backmix_jax.training.train import train_and_evaluate
  from tests.helpers import quick_config
  cfg = quick_config(num_epochs=2, checkpoint_every_steps=20)
  metrics = train_and_evaluate(cfg, workdir)
  # Every process trained the same replicated state; process 0 reports it.
  from backmix_jax.training.checkpointing import Checkpointer
  from backmix_jax.training.run import build_run
  run = build_run(cfg)
  state, _ = Checkpointer(workdir).restore(run.state, run.signature)
  params = np.concatenate([np.ravel(np.asarray(jax.device_get(x))) for x in jax.tree.leaves(state.params)])
  if jax.process_index() == 0:
    np.savez(out, params=params, auroc=metrics["auroc"], acc=metrics["acc"],
             devices=jax.device_count(), processes=jax.process_count())


if __name__ == "__main__":
  main()
