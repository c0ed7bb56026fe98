"""Examples of the fore-/background diagnostic's images, one panel per composite config.

python -m experiments.fgbg_examples --config configs/fgbg_digits.py \
    [--config2 configs/fgbg_mnist.py] [--out docs/fgbg_examples.png] [--num 6]

Rows: training images, then each test condition, with the true mask outlined. Every
--config.<field> / --config2.<field> override applies. The work is
`backmix_jax.commands.fgbg_examples.fgbg_examples`.
"""
from absl import app, flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file("config", None, "A composite config.")
CONFIG2 = config_flags.DEFINE_config_file("config2", None, "A second one, drawn beside it.")
OUT = flags.DEFINE_string("out", "docs/fgbg_examples.png", "PNG path.")
NUM = flags.DEFINE_integer("num", 6, "Examples per row.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  from backmix_jax.commands.fgbg_examples import fgbg_examples  # after flag parsing: fast --help
  configs = [holder.value for holder in (CONFIG, CONFIG2) if holder.value is not None]
  print(f"wrote {fgbg_examples(configs, OUT.value, NUM.value)}")


if __name__ == "__main__":
  app.run(main)
