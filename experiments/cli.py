"""Shared command-line plumbing: --config/--workdir flags, quiet TensorFlow, one-line errors."""
from __future__ import annotations

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

absl_logging.set_verbosity(absl_logging.WARNING)

CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/digits.py",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")



def user_errors() -> tuple[type[BaseException], ...]:
  from backmix_jax.data.sources import DataError
  from backmix_jax.training.checkpointing import CheckpointError
  from backmix_jax.training.train import NonFiniteError
  from backmix_jax.training.validate import ConfigError
  return (ConfigError, DataError, CheckpointError, NonFiniteError)


DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Call jax.distributed.initialize(): auto = when a multi-host TPU slice "
    "(TPU_WORKER_HOSTNAMES lists several hosts) or JAX_COORDINATOR_ADDRESS is set.")


def maybe_initialize_distributed():
  """Join the other hosts of a pod slice before any JAX computation (a no-op on one host)."""
  import jax
  hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  wanted = DISTRIBUTED.value == "on" or (
      DISTRIBUTED.value == "auto" and (len(hosts) > 1 or "JAX_COORDINATOR_ADDRESS" in os.environ))
  if wanted:
    jax.distributed.initialize()


def _parse_flags(argv, *, require_workdir: bool = True):
  """Unknown fields and bad override values end in one line, not a traceback."""
  try:
    rest = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # A config file that fails to load arrives with its traceback inside the message: keep
    # the last line, which names the problem.
    lines = [line for line in str(e).strip().splitlines() if line.strip()] or [repr(e)]
    msg = lines[-1].strip()
    if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":  # KeyError quotes its message
      msg = msg[1:-1]
    if isinstance(e, (AttributeError, KeyError)):
      msg = f"unknown config field {msg}"
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
  missing = [f"--{name}" for name, flag in (("config", CONFIG), ("workdir", WORKDIR))
             if flag.value is None and (name == "config" or require_workdir)]
  if missing:
    print(f"error: {' and '.join(missing)} required", file=sys.stderr)
    sys.exit(2)
  return rest


def run_main(main, *, require_workdir: bool = True):
  """absl app.run with bad flags and user errors (bad config, data, checkpoint) in one line."""
  from absl import app

  def wrapped(argv):
    from backmix_jax.training.train import Preempted
    try:
      maybe_initialize_distributed()
      main(argv)
    except Preempted as e:  # a clean stop: the checkpoint is saved, the rerun resumes
      print(str(e), flush=True)
      sys.exit(0)
    except user_errors() as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(wrapped, flags_parser=functools.partial(_parse_flags, require_workdir=require_workdir))
