"""Train a BackMix open-set classifier, resuming from the workdir, then evaluate it.

python -m experiments.train --config configs/digits.py --workdir runs/digits
python -m experiments.train --config configs/digits.py --workdir runs/plain --config.backmix.enabled=False
"""
from experiments import cli


def main(argv):
  from backmix_jax.training.train import train_and_evaluate
  train_and_evaluate(cli.CONFIG.value, cli.WORKDIR.value)


if __name__ == "__main__":
  cli.run_main(main)
