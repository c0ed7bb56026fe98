"""scikit-learn digits, 6 known / 4 unknown: the one-minute CPU demo of the whole pipeline.

python -m experiments.train --config configs/digits.py --workdir runs/digits
"""
from configs import default


def get_config():
  c = default.get_base_config()
  c.dataset = "digits"
  c.data.source = "digits"
  c.data.image_size = 32
  c.data.channels = 3        # grey repeated, as ARPL does for MNIST: classifier32's channel
                             # dropout on a 1-channel input would blank whole images
  c.data.flip = False        # digits are not mirror-symmetric
  c.data.crop_padding = 2
  c.model = "classifier32"
  c.batch_size = 64
  c.num_epochs = 6
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  c.checkpoint_every_steps = 40
  c.log_every_steps = 10
  c.evals.open_set.every_epochs = 2
  return c
