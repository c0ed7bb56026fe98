"""CIFAR-10 open-set benchmark: 6 known / 4 unknown classes, 5 trials (docs/data.md).

python -m experiments.train --config configs/cifar10.py --workdir runs/cifar10_t0 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|neal|cssr|dias]
Offline (an npz file, see docs/data.md): --config.data.source=npz:/path/to/cifar10.npz
Other code bases' recipes (configs/default.py RECIPES): --config=configs/cifar10.py:cssr
    (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "cifar10"
  c.data.source = "tfds:cifar10"  # offline: npz:/path/to/cifar10.npz (docs/data.md)
  c.data.image_size = 32
  c.data.flip = True
  c.data.crop_padding = 4
  return default.apply_recipe(c, recipe)
