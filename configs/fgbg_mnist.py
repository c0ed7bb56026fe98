"""Fore-/background diagnostic: MNIST digits on CIFAR-10 photos (ARPL MNIST split).

python -m experiments.train --config configs/fgbg_mnist.py --workdir runs/fgbg_mnist_t0 \
    [--config.trial=0..4] [--config.data.composite.rho=0.5]
Offline, from npz copies (docs/data.md shows how to make them):
    --config.data.composite.foreground=npz:/path/to/mnist.npz \
    --config.data.composite.background=npz:/path/to/cifar10.npz

Known digit i is pasted onto CIFAR-10 class i's photos 90 % of the time (rho); CIFAR-10
classes 6..9 are backgrounds never seen in training (backmix_jax/data/composite.py,
docs/diagnostic.md). 2,000 training digits per known class, 1,000 images per test condition.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_base_config()
  c.dataset = "mnist"
  c.data.source = "composite"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.composite = ml_collections.ConfigDict(dict(
      foreground="tfds:mnist",   # offline: npz:/path/to/mnist.npz
      background="tfds:cifar10",  # offline: npz:/path/to/cifar10.npz
      rho=0.9,
      fg_size=20,
      copies=1,
      test_copies=1,
      max_train_per_class=2000,
      max_test_per_condition=1000,
      bg_known=(),
      bg_per_split=10000,        # CIFAR-10 photos read per split, evenly spaced (1,000 a class)
      bg_dim=0.6,
      seed=0,
  ))
  c.data.flip = False
  c.data.crop_padding = 2
  c.model = "cnn_small"
  c.batch_size = 128
  c.num_epochs = 30
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  # The diagnostic's own read-outs at the end: per-condition accuracy / AUROC, and how well
  # the CAMs BackMix masks with find the true foreground.
  c.evals.conditions = ml_collections.ConfigDict(dict(every_epochs=5))
  c.evals.cam_localization = ml_collections.ConfigDict(dict(every_epochs=1))
  return c
