"""OOD legacy benchmark: all 10 CIFAR-10 classes known; the SVHN test set is unknown.

python -m experiments.train --config configs/ood_cifar10_vs_svhn.py --workdir runs/ood_svhn
There is no class split: trials differ only by --config.seed. Offline (npz files, see
docs/data.md): --config.data.source=npz:/path/to/cifar10.npz plus data.unknown_source for SVHN.
Other code bases' recipes (configs/default.py RECIPES):
    --config=configs/ood_cifar10_vs_svhn.py:cssr (or :arpl_cs, :medaf, :vaze; docs/recipes.md).
"""
from configs import ood_cifar10_vs_cifar100


def get_config(recipe: str = "arpl"):
  c = ood_cifar10_vs_cifar100.get_config(recipe)  # same training; only the unknown set differs
  c.dataset = "ood_cifar10_vs_svhn"
  c.data.unknown_source = ""  # '' = the split's: tfds svhn_cropped (whole test split)
  return c
