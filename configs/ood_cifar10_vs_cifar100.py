"""OOD legacy benchmark: all 10 CIFAR-10 classes known; the CIFAR-100 test set is unknown.

python -m experiments.train --config configs/ood_cifar10_vs_cifar100.py --workdir runs/ood_c100
There is no class split: trials differ only by --config.seed. Offline (npz files, see
docs/data.md): --config.data.source=npz:/path/to/cifar10.npz plus data.unknown_source.
Other code bases' recipes (configs/default.py RECIPES):
    --config=configs/ood_cifar10_vs_cifar100.py:cssr (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import default


def get_config(recipe: str = "arpl"):
  c = default.get_base_config()
  c.dataset = "ood_cifar10_vs_cifar100"
  c.data.source = "tfds:cifar10"  # offline: npz:/path/to/cifar10.npz (docs/data.md)
  c.data.unknown_source = ""      # '' = the split's: tfds cifar100 (whole test split)
  c.data.image_size = 32
  c.data.flip = True
  c.data.crop_padding = 4
  default.apply_recipe(c, recipe)
  c.model = "resnet34"  # the backbone of the paper's OOD table (docs/method.md)
  return c
