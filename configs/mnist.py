"""MNIST open-set benchmark: 6 known / 4 unknown digits, 5 trials (docs/data.md).

python -m experiments.train --config configs/mnist.py --workdir runs/mnist_t0 \
    [--config.trial=0..4] [--config.protocol=arpl|vaze|neal|dias]
Offline (an npz file, see docs/data.md): --config.data.source=npz:/path/to/mnist.npz
Other code bases' recipes (configs/default.py RECIPES): --config=configs/mnist.py:cssr
    (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "mnist"
  c.data.source = "tfds:mnist"  # offline: npz:/path/to/mnist.npz (docs/data.md)
  c.data.image_size = 32        # ARPL resizes 28 -> 32 px (bilinear)
  c.data.channels = 3           # ARPL's MNISTRGB: grey repeated to RGB for classifier32
  # ARPL trains MNIST without augmentation (its MNIST_OSR transform is Resize + ToTensor).
  c.data.flip = False
  c.data.crop_padding = 0
  return default.apply_recipe(c, recipe)
