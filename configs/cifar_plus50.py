"""CIFAR+50: 4 known CIFAR-10 classes; unknowns = test images of 50 CIFAR-100 classes.

python -m experiments.train --config configs/cifar_plus50.py --workdir runs/cifar_plus50_t0 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|neal|dias]   (neal: trial 0 only)
The unknowns come from tfds cifar100 (the split's unknown_source); another source for them:
--config.data.unknown_source=<spec>. Offline (npz files, see docs/data.md):
--config.data.source=npz:/path/to/cifar10.npz --config.data.unknown_source=npz:/path/to/cifar100.npz
Other code bases' recipes (configs/default.py RECIPES):
    --config=configs/cifar_plus50.py:cssr (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import cifar_plus10


def get_config(recipe: str = "arpl"):
  c = cifar_plus10.get_config(recipe)  # same data and recipe; only the unknown list differs
  c.dataset = "cifar_plus50"
  return c
