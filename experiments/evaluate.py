"""Evaluate a checkpoint of a training run: open-set metrics, a markdown table and plots.

python -m experiments.evaluate --workdir runs/digits    # with the config it was trained with
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits --step 40
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits --arpl_compat
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits \
  --unknown=tfds:svhn_cropped,npz:/data/noise.npz,folder:/data/textures

Without --config the run's recorded training config is used; a --config given must describe
the same run (data, classes, input, network). Writes metrics.json, metrics.md,
eval_outputs.npz and plots in the workdir (or --out); any evaluation but the final
checkpoint's default one adds a suffix (_step<N>, _arpl, _unknown).
The work is `backmix_jax.commands.evaluate.evaluate_checkpoint`.
"""
from absl import flags

from backmix_jax.commands import cli

STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
ARPL_COMPAT = flags.DEFINE_bool(
    "arpl_compat", False, "Compute AUROC, OSCR, DTACC, AUPR and TNR with ARPL's "
    "core/evaluation.py conventions, to compare digit for digit with published tables.")
UNKNOWN = flags.DEFINE_string(
    "unknown", "", "Comma-separated extra unknown sets (source specs: tfds:<name>, "
    "npz:<path>, folder:<path>, ...) to score the known test set against, one row each.")
OUT = flags.DEFINE_string("out", "", "Directory for the files written (default: the workdir; "
                          "use it for read-only workdirs). One holding another run's record "
                          "or metrics is refused.")
flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  # After flag parsing: --help and flag errors need no JAX.
  from backmix_jax.commands.evaluate import evaluate_checkpoint
  evaluate_checkpoint(cli.config_or_recorded(), cli.WORKDIR.value, STEP.value,
                      arpl_compat=ARPL_COMPAT.value, unknown=UNKNOWN.value, out=OUT.value)


if __name__ == "__main__":
  cli.run_main(main, config_from_workdir=True)
