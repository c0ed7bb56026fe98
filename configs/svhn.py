"""SVHN open-set benchmark: 6 known / 4 unknown digits, 5 trials (docs/data.md).

python -m experiments.train --config configs/svhn.py --workdir runs/svhn_t0 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|neal|cssr|dias]
tfds svhn_cropped stores digit 0 as label 0, the ids the split lists use. No offline copy here.
Other code bases' recipes (configs/default.py RECIPES): --config=configs/svhn.py:cssr
    (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "svhn"
  c.data.source = "tfds:svhn_cropped"
  c.data.image_size = 32
  # ARPL augments SVHN like CIFAR (pad-4 crop and horizontal flip), though digits are not
  # mirror-symmetric: kept so results compare with its tables.
  c.data.flip = True
  c.data.crop_padding = 4
  return default.apply_recipe(c, recipe)
