"""Prepare a dataset for streaming: ArrayRecord shards and a manifest, written once.

python -m experiments.prepare --config configs/cifar10.py --source=npz:/data/cifar10.npz \
    --out=/data/cifar10_ar [--known_only] [--records_per_shard=10000]

Reads the source spec (default: the config's data.source) at the config's data.image_size
and data.channels and writes its train and test splits to --out (a new or empty directory);
then train with --config.data.source=arrayrecord:<out> (any backend) and
--config.data.backend=grain to stream the training images. --known_only keeps only the
config's known classes in the training split. The work is
`backmix_jax.commands.prepare.prepare`.
"""
from absl import flags

from backmix_jax.commands import cli

SOURCE = flags.DEFINE_string("source", "", "Source spec to read (digits, npz:<path>, "
                             "tfds:<name>, folder:<path>); default: the config's data.source.")
OUT = flags.DEFINE_string("out", "", "Directory to write (new or empty); required.")
KNOWN_ONLY = flags.DEFINE_bool("known_only", False, "Training split: only the known classes "
                               "of the config's split (the test split is kept whole).")
RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 10_000, "Images per shard file.")
flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  from backmix_jax.commands.prepare import prepare  # after flag parsing: fast --help
  prepare(cli.CONFIG.value, SOURCE.value, OUT.value, known_only=KNOWN_ONLY.value,
          records_per_shard=RECORDS_PER_SHARD.value)


if __name__ == "__main__":
  cli.run_main(main, require_workdir=False)
