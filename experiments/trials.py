"""Train or collect the trials of a benchmark; mean +- std beside the published numbers.

python -m experiments.trials --config configs/digits.py --workdir runs/trials --trials 0-4 --train
python -m experiments.trials ... --train --baseline   # also BackMix off, in trial_<t>_plain
python -m experiments.trials ...                      # only collect what is already there
python -m experiments.trials ... --train --baseline --sweep [--seeds 0-2]  # one program

Trial t runs in <workdir>/trial_<t> with --config.trial=t. Finished trials are collected,
trials with a final checkpoint evaluated, the others trained with --train (resuming) or
reported missing. Writes trials.json and trials.md in the workdir. The work is
`backmix_jax.commands.trials.run_trials`.
"""
from absl import flags

from backmix_jax.commands import cli


def _check_trials(spec: str) -> bool:
  # Loaded when --trials is checked, not at import: --help needs no JAX.
  from backmix_jax.commands.trials import parse_trials
  try:
    parse_trials(spec)
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


TRIALS = flags.DEFINE_string("trials", "0-4", "Trials to run or collect: '0-4', '0,2', '0-1,3'.")
flags.register_validator("trials", _check_trials)
TRAIN = flags.DEFINE_bool("train", False, "Train the trials that have no final result yet "
                          "(resuming partial runs). Without it, only collect.")
BASELINE = flags.DEFINE_bool("baseline", False, "Also the same trials with BackMix off, in "
                             "<workdir>/trial_<t>_plain.")
SWEEP = flags.DEFINE_bool("sweep", False, "Train the runs that need training together, as one "
                          "jitted program (vmapped over runs); each run keeps its own workdir "
                          "and record. Only seed, trial and BackMix on/off may differ.")
SEEDS = flags.DEFINE_string("seeds", None, "Also these seeds for every trial and method "
                            "('0-2', '0,3'), in <workdir>/trial_<t>[_plain]_seed<s>.")
flags.adopt_module_key_flags(cli)


def _seeds(spec):
  if spec is None:
    return None
  from backmix_jax.commands.trials import parse_trials  # after flag parsing: no JAX for --help
  return parse_trials(spec, num_trials=10**6)


def main(argv):
  del argv
  # After flag parsing: --help and flag errors need no JAX.
  from backmix_jax.commands.trials import parse_trials, run_trials
  run_trials(cli.CONFIG.value, cli.WORKDIR.value, parse_trials(TRIALS.value),
             train=TRAIN.value, baseline=BASELINE.value, sweep=SWEEP.value,
             seeds=_seeds(SEEDS.value))


if __name__ == "__main__":
  cli.run_main(main)
