"""Examples of the fore-/background diagnostic's images, one panel per composite config.

python -m experiments.fgbg_examples --config configs/fgbg_digits.py \
    [--config2 configs/fgbg_mnist.py] [--out docs/fgbg_examples.png] [--num 6]

Rows: training images, then each test condition, with the true mask outlined. Every
--config.<field> / --config2.<field> override applies; --workdir is accepted, not needed.
The work is `backmix_jax.commands.fgbg_examples.fgbg_examples`.
"""
from absl import flags
from ml_collections import config_flags

from backmix_jax.commands import cli

CONFIG2 = config_flags.DEFINE_config_file("config2", None, "A second composite config, "
                                          "drawn beside the first.")
OUT = flags.DEFINE_string("out", "docs/fgbg_examples.png", "PNG path.")
NUM = flags.DEFINE_integer("num", 6, "Examples per row.")
flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  from backmix_jax.commands.fgbg_examples import fgbg_examples  # after flag parsing: fast --help
  configs = [holder.value for holder in (cli.CONFIG, CONFIG2) if holder.value is not None]
  print(f"wrote {fgbg_examples(configs, OUT.value, NUM.value)}")


if __name__ == "__main__":
  cli.run_main(main, require_workdir=False)
