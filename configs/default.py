"""Shared defaults for every benchmark config: each configs/<benchmark>.py starts from these.

Defaults of the BackMix block reproduce the released wrapper (SPEC section 1):
top 25 % of CAM cells are foreground, one patch of side 0.25*S, every sample, every step.
"""
import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # What to train on: benchmark name, split protocol and trial pick the class lists.
  c.dataset = "digits"
  c.protocol = "arpl"
  c.trial = 0
  c.known_classes = ()      # overrides the split's known list when set, e.g. "(0,1,2)"
  c.data = ml_collections.ConfigDict(dict(
      source="digits",       # digits | npz:<path> | tfds:<name> | folder:<path>
      data_dir="",           # tfds data_dir (local or gs://)
      image_size=32,
      channels=0,            # 0: keep the source's channels; 1 or 3 to convert
      normalize="cssr",      # cssr: (x-0.5)/0.25 | unit: x in [0,1] (ARPL)
      flip=True,             # random horizontal flip (on device, after mixing)
      crop_padding=4,        # zero-pad then random crop back (0 disables)
      backend="auto",        # auto | tf | numpy: host input pipeline
  ))

  c.model = "classifier32"
  c.dtype = "float32"        # compute dtype; parameters are always float32
  c.framework = "softmax"
  c.score = "mls"            # open-set score: msp | mls | energy (framework default if '')

  c.batch_size = 128         # global batch, split over every device of every host
  c.eval_batch_size = 256
  c.num_epochs = 100

  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd",            # sgd | adam
      learning_rate=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=1e-4,     # coupled (added to the gradient), as torch.optim.SGD
      schedule="multistep",  # multistep | cosine | constant
      milestones=(30, 60, 90, 120),  # epochs, for multistep
      decay=0.1,
      warmup_epochs=0,
  ))

  c.backmix = ml_collections.ConfigDict(dict(
      enabled=True,
      cam_source="live",     # live: CAMs of this batch | bank: per-example EMA bank (released code)
      fg_ratio=0.25,
      patch_frac=0.25,
      partner="permutation", # permutation | uniform (partners from the local batch, live mode)
      mix_prob=1.0,
      warmup_epochs=0,       # epochs of plain training before mixing starts
      train_on="mix",        # mix | mix+clean
      cam_norm="minmax",     # minmax | relu | softmax
      cam_batch_stats=False, # clean forward with batch statistics instead of running ones
      fill=0.0,              # value of masked foreground pixels, in normalised space
      bank_momentum=0.1,
  ))

  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  c.log_every_steps = 20
  c.eval_every_epochs = 0    # 0: evaluate only at the end
  c.nan_policy = "stop"      # stop | skip_step
  return c
