"""Train a BackMix open-set classifier, resuming from the workdir, then evaluate it.

python -m experiments.train --config configs/digits.py --workdir runs/digits
python -m experiments.train --config configs/digits.py --workdir runs/plain --config.backmix.enabled=False

The work is `backmix_jax.training.train.train_and_evaluate`.
"""
from absl import flags

from backmix_jax.commands import cli

flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  # After flag parsing: --help and flag errors need no JAX.
  from backmix_jax.training.train import train_and_evaluate
  train_and_evaluate(cli.CONFIG.value, cli.WORKDIR.value)


if __name__ == "__main__":
  cli.run_main(main)
