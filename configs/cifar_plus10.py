"""CIFAR+10: 4 known CIFAR-10 classes; unknowns = test images of 10 CIFAR-100 classes.

python -m experiments.train --config configs/cifar_plus10.py --workdir runs/cifar_plus10_t0 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|neal|dias]   (neal: trial 0 only)
The unknowns come from tfds cifar100 (the split's unknown_source); another source for them:
--config.data.unknown_source=<spec>. Offline (npz files, see docs/data.md):
--config.data.source=npz:/path/to/cifar10.npz --config.data.unknown_source=npz:/path/to/cifar100.npz
Other code bases' recipes (configs/default.py RECIPES): --config=configs/cifar_plus10.py:cssr
    (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "cifar_plus10"
  c.data.source = "tfds:cifar10"  # offline: npz:/path/to/cifar10.npz (docs/data.md)
  c.data.unknown_source = ""      # '' = the split's: tfds cifar100 (test split)
  c.data.image_size = 32
  c.data.flip = True
  c.data.crop_padding = 4
  return default.apply_recipe(c, recipe)
