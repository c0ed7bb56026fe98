"""Fore-/background diagnostic, offline: scikit-learn digits on procedural textures.

python -m experiments.train --config configs/fgbg_digits.py --workdir runs/fgbg_digits \
    [--config.data.composite.rho=0.5] [--config.backmix.enabled=False]

Each known digit (the digits split: ARPL's MNIST lists) is pasted onto the texture class
paired with it 90 % of the time (rho); the test conditions then show known and unknown
digits on paired, swapped and never-seen textures (backmix_jax/data/composite/,
docs/diagnostic.md). About 3,000 training images (754 digits x 4 copies) at 32 px. At
rho 0.9 this budget's cnn_small classifies by the texture alone (known_swapped accuracy
~1 %); at rho 0.5 it learns the digits and a swapped background costs 5-11 points.
"""
import ml_collections

from configs import default


def get_config():
  c = default.get_base_config()
  c.dataset = "digits"
  c.data.source = "composite"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.composite = ml_collections.ConfigDict(dict(
      foreground="digits",   # any digit source spec: digits | mnist | npz:<path>
      background="textures",  # textures | a photo source spec (cifar10, npz:<path>)
      rho=0.9,               # P(training image shows its class's paired background)
      fg_size=18,            # pasted digit side, px
      copies=4,              # compositions of each training digit
      test_copies=3,         # compositions of each test digit (sklearn has ~54 per class)
      max_train_per_class=0,  # 0 = all digits
      max_test_per_condition=0,
      bg_known=(),           # background class of each known class; () = 0..K-1
      bg_per_split=0,        # photo backgrounds read per split (0 = all; unused by textures)
      bg_dim=0.6,            # backgrounds are dimmed so the white digit stays visible
      seed=0,
  ))
  c.data.flip = False        # digits are not mirror-symmetric
  c.data.crop_padding = 2
  c.model = "cnn_small"
  c.batch_size = 128
  c.num_epochs = 20
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  # The diagnostic's own read-outs: per-condition accuracy / AUROC every 5 epochs, and how
  # well the CAMs BackMix masks with find the true foreground every epoch.
  c.evals.conditions = ml_collections.ConfigDict(dict(every_epochs=5))
  c.evals.cam_localization = ml_collections.ConfigDict(dict(every_epochs=1))
  c.checkpoint_every_steps = 200
  c.log_every_steps = 20
  return c
