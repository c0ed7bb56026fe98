"""Training speed, side by side in one run: plain step, BackMix step, input pipeline, whole loop.

python -m experiments.benchmark --config configs/digits.py [--config.model=wrn40_4
    --config.batch_size=128 --config.dtype=bfloat16] [--steps 20 --repeats 3] [--json out.json]
python -m experiments.benchmark --config configs/digits.py --synthetic --config.data.backend=numpy
python -m experiments.benchmark --config configs/cifar10.py --synthetic --sweep 4  # R runs vs one

Each figure is the median over --repeats blocks of --steps steps after --warmup untimed
steps; compilation is timed separately. --synthetic needs no dataset. No checkpoint is
written: --workdir is accepted, not required. The work is
`backmix_jax.commands.benchmark.run_and_report`.
"""
from absl import flags

from backmix_jax.commands import cli

STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per repeat.")
REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
DEVICE_BATCHES = flags.DEFINE_integer("device_batches", 4,
                                      "Batches kept on the device for the step-only figures.")
SYNTHETIC = flags.DEFINE_bool("synthetic", False, "Random uint8 images instead of the dataset.")
SYNTHETIC_CLASSES = flags.DEFINE_integer("synthetic_classes", 6, "Known classes of --synthetic.")
SYNTHETIC_BATCHES = flags.DEFINE_integer("synthetic_batches", 8,
                                         "Training set of --synthetic, in global batches.")
SWEEP = flags.DEFINE_integer("sweep", 0, "R > 0: aggregate images/s of a sweep of R runs "
                             "(seeds 0..R-1, one program) against one run, interleaved.")
JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.adopt_module_key_flags(cli)


def main(argv):
  del argv
  # After flag parsing: --help and flag errors need no JAX.
  from backmix_jax.commands.benchmark import run_and_report
  run_and_report(
      cli.CONFIG.value, json_path=JSON.value, steps=STEPS.value, repeats=REPEATS.value,
      warmup=WARMUP.value, device_batches=DEVICE_BATCHES.value, synthetic=SYNTHETIC.value,
      synthetic_classes=SYNTHETIC_CLASSES.value, synthetic_batches=SYNTHETIC_BATCHES.value,
      sweep=SWEEP.value)


if __name__ == "__main__":
  cli.run_main(main, require_workdir=False)
