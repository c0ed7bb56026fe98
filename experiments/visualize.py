"""Pictures of BackMix on real training images, with the CAMs of a trained checkpoint.

python -m experiments.visualize --config configs/digits.py --workdir runs/digits \
    [--num 8] [--out grid.png]

One row per sample: target, partner, partner CAM, masked partner and the mixed image, as
the train step mixes them. Without --config the workdir's recorded training config is used;
a --config given must be the one the workdir was trained with (as for evaluation). The work is `backmix_jax.commands.visualize.visualize`.
"""
from absl import flags

from backmix_jax.commands import cli

NUM = flags.DEFINE_integer("num", 8, "Number of samples (rows); also the batch partners come from.")
OUT = flags.DEFINE_string("out", None, "PNG path, or a directory to write backmix_grid.png in "
                          "(default: <workdir>/backmix_grid.png).")
flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  # After flag parsing: --help and flag errors need no JAX.
  from backmix_jax.commands.visualize import visualize
  path, panels = visualize(cli.config_or_recorded(), cli.WORKDIR.value, NUM.value, OUT.value)
  print(f"wrote {path} ({len(panels['images'])} samples, checkpoint step {panels['step']})")


if __name__ == "__main__":
  cli.run_main(main, config_from_workdir=True)
