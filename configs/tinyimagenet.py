"""TinyImageNet open-set benchmark: 20 known / 180 unknown classes at 64 px, 5 trials.

TinyImageNet is not in the tfds catalog: it is read from the unpacked tiny-imagenet-200
folder (train/<wnid>/, val/ with val_annotations.txt; class id = index of the sorted wnid).
python -m experiments.train --config configs/tinyimagenet.py --workdir runs/tin_t0 \
    --config.data.source=folder:/path/to/tiny-imagenet-200 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|cssr|dias]
Other code bases' recipes (configs/default.py RECIPES): --config=configs/tinyimagenet.py:cssr
    (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "tinyimagenet"
  c.data.source = "folder:tiny-imagenet-200"  # relative to the working directory
  c.data.image_size = 64
  c.data.flip = True
  c.data.crop_padding = 4  # ARPL pads 4 px at 64 px too
  default.apply_recipe(c, recipe)
  if recipe in ("arpl", "arpl_cs"):
    # ARPL's osr.py trains TinyImageNet with Adam at lr 0.001 and no weight decay (the same
    # classifier32 and x0.1 steps at epochs 30/60/90/120).
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.0
    c.optimizer.weight_decay = 0.0
  return c
