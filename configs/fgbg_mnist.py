"""Fore-/background diagnostic: MNIST digits on CIFAR-10 photos (ARPL MNIST split).

python -m experiments.train --config configs/fgbg_mnist.py --workdir runs/fgbg_mnist_t0 \
    [--config.trial=0..4] [--config.data.composite.rho=0.5]
Offline, from npz copies (docs/data.md shows how to make them):
    --config.data.composite.foreground=npz:/path/to/mnist.npz \
    --config.data.composite.background=npz:/path/to/cifar10.npz

Known digit i is pasted onto CIFAR-10 class i's photos 90 % of the time (rho); CIFAR-10
classes 6..9 are backgrounds never seen in training (backmix_jax/data/composite/,
docs/diagnostic.md). 2,000 training digits per known class, 1,000 images per test condition.
"""
from configs import default, fgbg_digits


def get_config():
  """fgbg_digits' training and evaluation settings with MNIST digits on CIFAR-10 photos."""
  c = fgbg_digits.get_config()
  c.dataset = "mnist"
  c.data.composite.update(dict(
      foreground="tfds:mnist",   # offline: npz:/path/to/mnist.npz
      background="tfds:cifar10",  # offline: npz:/path/to/cifar10.npz
      fg_size=20,
      copies=1,
      test_copies=1,
      max_train_per_class=2000,
      max_test_per_condition=1000,
      bg_per_split=10000,        # CIFAR-10 photos read per split, evenly spaced (1,000 a class)
  ))
  c.num_epochs = 30
  base = default.get_base_config()  # 12,000 images: the default cadences, not digits' own
  c.checkpoint_every_steps = base.checkpoint_every_steps
  c.log_every_steps = base.log_every_steps
  return c
