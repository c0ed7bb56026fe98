"""Evaluate a checkpoint of a training run: open-set metrics, a markdown table and plots.

python -m experiments.evaluate --config configs/digits.py --workdir runs/digits
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits --step 40
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits --arpl_compat
python -m experiments.evaluate --config configs/digits.py --workdir runs/digits \
  --unknown=tfds:svhn_cropped,npz:/data/noise.npz,folder:/data/textures

Restores the newest checkpoint (or --step N) into the model the config describes and writes
metrics.json, metrics.md, eval_outputs.npz, roc.png, score_histogram.png and oscr.png in the
workdir (or --out), with the same evaluators training runs. Only the final checkpoint's
default evaluation uses those names (it reproduces training's own record); any other
evaluation adds a suffix (_step<N>, _arpl, _unknown) so it never overwrites it.
"""
import os

from absl import flags

from experiments import cli

STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the newest).")
ARPL_COMPAT = flags.DEFINE_bool(
    "arpl_compat", False, "Compute AUROC, OSCR, DTACC, AUPR and TNR with ARPL's "
    "core/evaluation.py conventions, to compare digit for digit with published tables.")
UNKNOWN = flags.DEFINE_string(
    "unknown", "", "Comma-separated extra unknown sets (source specs: tfds:<name>, "
    "npz:<path>, folder:<path>, ...) to score the known test set against, one row each.")
OUT = flags.DEFINE_string("out", "", "Directory for the files written (default: the workdir; "
                          "use it for read-only workdirs).")


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the checkpoints in `workdir` (sorted); [] when it has none.

  Looks before opening a Checkpointer, which would create the directory.
  """
  from backmix_jax.training.checkpointing import Checkpointer
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return []
  ckpt = Checkpointer(workdir)
  try:
    return sorted(ckpt.all_steps())
  finally:
    ckpt.close()


def check_trained_config(config, workdir: str):
  """Raise CheckpointError when `config` is not the run the workdir trained: its run
  identity (training/identity.py: data, classes, input preparation, network) differs from
  that of the config training recorded (config.json, or history.jsonl's newest entry after
  a resume=override). The checkpoint's model signature holds shapes only, so a checkpoint
  of another class split or normalisation would restore without complaint and give
  meaningless (or mislabelled) metrics. No recorded config: nothing to check."""
  from backmix_jax.training import identity
  from backmix_jax.training.checkpointing import CheckpointError
  from backmix_jax.training.workdir import trained_config
  saved, path = trained_config(workdir)
  if saved is None:
    return
  changed = identity.differences(identity.run_identity(saved), identity.run_identity(config))
  if changed:
    diffs = [f"{key}={trained!r} in training, {given!r} here"
             for key, (trained, given) in changed.items()]
    raise CheckpointError(f"{workdir} was trained with another config ({'; '.join(diffs)}); "
                          f"evaluate with the training config, saved in {path}")


def output_tag(step: int, total_steps: int, *, arpl_compat: bool = False,
               unknown: bool = False) -> str:
  """Suffix of the files an evaluation writes: '' only for the final checkpoint's default
  evaluation (the record training wrote itself), so other evaluations never overwrite it."""
  return ("" if step == total_steps else f"_step{step}") + ("_arpl" if arpl_compat else "") + (
      "_unknown" if unknown else "")


def evaluate_checkpoint(config, workdir: str, step: int | None = None, *,
                        arpl_compat: bool = False, run=None, unknown: str = "",
                        out: str = "") -> dict:
  """Restore checkpoint `step` (newest when None) of `workdir` and evaluate it.

  `run` (from `build_run(config)`) may be passed to reuse one already built. Runs the
  evaluators of config.evals (or, with `unknown`, the open-set evaluator and the extra
  unknown sets of that comma-separated list of source specs), writes the files of
  `train.evaluate_run` in `out` (default `workdir`) under the suffix of `output_tag`, and
  returns its metrics.

  Raises:
    CheckpointError: no checkpoint in `workdir`, no checkpoint at `step`, one of a model
      other than the one `config` describes, or one trained on other data
      (`check_trained_config`).
    ConfigError / DataError: as for training.
  """
  from backmix_jax.evaluation import report
  from backmix_jax.training import validate
  from backmix_jax.training.checkpointing import Checkpointer, CheckpointError
  from backmix_jax.training.logging import log
  from backmix_jax.training.setup import build_run
  from backmix_jax.evaluation.evaluators import build_evaluators
  from backmix_jax.training.train import evaluate_run

  validate.check_config(config)
  # Checked before the data is loaded and the model initialised: these fail in a second.
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"no checkpoint in {workdir}; train first: python -m "
                          f"experiments.train --config ... --workdir {workdir}")
  if step is not None and step not in steps:
    raise CheckpointError(f"no checkpoint at step {step} in {workdir}; available: {steps}")
  check_trained_config(config, workdir)
  run = build_run(config) if run is None else run
  # Unknown sets are read before the checkpoint: a bad one fails in a second, nothing written.
  only = {"unknown_sets": dict(sources=unknown)} if unknown else None
  evaluators = build_evaluators(run, workdir, only=only,
                                overrides={"open_set": dict(arpl_compat=arpl_compat)})
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
  try:
    state, step = ckpt.restore(run.state, run.signature, step)
  finally:
    ckpt.close()
  d = run.data
  final = "final" if step == run.total_steps else f"of {run.total_steps}"
  log(f"eval   {config.dataset} {config.protocol} trial {config.trial}: checkpoint step "
      f"{step} ({final}) in {workdir} | {config.model} + {config.framework}, score "
      f"{config.score or run.framework.default_score} | test known {len(d.test_known)} + "
      f"unknown {len(d.test_unknown)} samples | metrics "
      f"{'ARPL-compatible' if arpl_compat else 'exact'}")
  tag = output_tag(step, run.total_steps, arpl_compat=arpl_compat, unknown=bool(unknown))
  directory = out or workdir
  metrics = evaluate_run(run, state, directory, evaluators=evaluators, tag=tag)
  log(f"wrote metrics{tag}.json, metrics{tag}.md, eval_outputs{tag}.npz and plots in "
      f"{directory}\n")
  if unknown:
    log(evaluators["unknown_sets"][0].markdown(metrics["unknown_sets"]))
  log(report.evaluation_markdown(metrics))
  return metrics


def main(argv):
  del argv
  evaluate_checkpoint(cli.CONFIG.value, cli.WORKDIR.value, STEP.value,
                      arpl_compat=ARPL_COMPAT.value, unknown=UNKNOWN.value, out=OUT.value)


if __name__ == "__main__":
  cli.run_main(main)
