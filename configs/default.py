"""Shared defaults for every benchmark config: each configs/<benchmark>.py starts from these.

Defaults of the BackMix block reproduce the released wrapper (docs/method.md):
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
      source="digits",  # digits | npz:<path> | tfds:<name> | folder:<path> | arrayrecord:<dir>
      data_dir="",           # tfds data_dir (local or gs://)
      image_size=32,
      channels=0,            # 0: keep the source's channels; 1 or 3 to convert
      normalize="cssr",      # cssr: (x-0.5)/0.25 | unit: x in [0,1] (ARPL) | imagenet | half
      flip=True,             # random horizontal flip (on device, after mixing)
      crop_padding=4,        # zero-pad then random crop back (0 disables)
      # RandAugment (Vaze et al.; data/randaugment.py), first of all augmentation, on device:
      randaugment_n=0,       # ops per image; 0 = off
      randaugment_m=9,       # magnitude 0..30 of every op
      randaugment_ops="full",  # full: their 16 ops | digits: their 13 for SVHN/MNIST
      backend="auto",        # auto | tf | numpy: in memory | grain: streams arrayrecord:<dir>
      grain_workers=0,       # grain: decoding processes (0: threads here); same batches
      random_resized_crop=False,  # grain: RandomResizedCrop of the stored image, on the host
      cache_dir="",          # local copy of arrayrecord:gs://... ('' = ~/.cache/backmix_jax/shards)
      unknown_source="",     # CIFAR+N / OOD unknowns: '' = the split's (tfds cifar100 / svhn)
  ))

  c.model = "classifier32"
  # Local weights file for the backbone (safetensors, PyTorch .pth/.bin state dict or .npz of
  # PyTorch names; resnet50 / vit_b16, see README): applied to a fresh run's initial state,
  # never over a checkpoint, never downloaded. '' = random initialisation.
  c.pretrained = ""
  c.dtype = "float32"        # compute dtype; parameters are always float32
  c.framework = "softmax"
  c.score = ""               # open-set score; '' = the framework's default (softmax: mls)
  # Label smoothing of every cross-entropy term of the framework's loss: the label gets
  # 1 - eps, each other class eps / (K - 1) (Vaze et al.'s form; frameworks/losses.py).
  c.label_smoothing = 0.0

  c.num_devices = 0          # 0: every device of every host; n: the first n (tests, debugging)
  c.batch_size = 128         # global batch, split over every device of every host
  c.eval_batch_size = 256
  c.num_epochs = 100

  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd",            # sgd | adam
      learning_rate=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=1e-4,     # coupled (added to the gradient), as torch.optim.SGD
      schedule="multistep",  # multistep | cosine | constant | cosine_restarts
      milestones=(30, 60, 90, 120),  # epochs, for multistep
      decay=0.1,
      warmup_epochs=0,       # cosine_restarts: ramp from its floor to its rate (Vaze et al.)
      restarts=2,            # cosine_restarts: cycles of num_epochs // (restarts + 1) epochs
      min_lr_ratio=1e-3,     # cosine_restarts: floor = min_lr_ratio * learning_rate
  ))

  c.backmix = ml_collections.ConfigDict(dict(
      enabled=True,
      cam_source="live",     # live: CAMs of this batch | bank: per-example EMA bank (released code)
                             # | oracle: true masks (data with masks only) | teacher: CAMs of
                             # this batch under the trained run in `teacher`
      teacher="",            # cam_source=teacher: workdir of a finished run of the same data,
                             # network and framework (e.g. this config with BackMix off)
      fg_ratio=0.25,
      patch_frac=0.25,
      partner="permutation", # permutation | uniform | other_class (local batch; not bank mode)
      placement="anywhere",  # anywhere | background: the target's CAM foreground keeps its pixels
      replace="patch",       # patch: num_patches boxes | background: every target background cell
      num_patches=1,         # independent boxes per image (replace=patch)
      mix_prob=1.0,
      warmup_epochs=0,       # epochs of plain training before mixing starts
      train_on="mix",        # mix | mix+clean
      cam_norm="minmax",     # minmax | relu | softmax
      cam_batch_stats=False, # clean forward with batch statistics instead of running ones
      cam_grid=0,            # CAM cells per side: 0 = the network's grid, else resampled
                             # (bilinear) to this finer or coarser grid; not in bank mode
      fill=0.0,              # value of masked foreground pixels, in normalised space
      fill_mode="constant",  # constant: `fill` | dataset_mean: training images' channel mean
      bank_momentum=0.1,
  ))

  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  c.log_every_steps = 20
  # Evaluators (backmix_jax/evaluation/evaluators/): name -> every_epochs (0 = only at
  # the end), optionally `type` (the evaluator to run under this name; default: the name)
  # and the evaluator's options. open_set always runs at the end.
  c.evals = ml_collections.ConfigDict(dict(open_set=dict(every_epochs=0)))
  c.profile_steps = 0        # > 0: jax.profiler trace of that many steps in <workdir>/profile
  c.nan_policy = "stop"      # stop | skip_step
  c.max_skipped_steps = 10   # skip_step: stop after this many non-finite steps in a row
  # auto: resume a workdir of the same run, refuse another run's | override: continue it
  # with this config (appended to <workdir>/history.jsonl); see training/workdir.py
  c.resume = "auto"
  return c


# Training recipes of the base code bases (docs/method.md). Each sets every field that
# differs between them, so a benchmark config can switch wholesale; the split protocol is
# separate (--config.protocol). 'model' here is the 32 px backbone; see apply_recipe. A
# recipe naming a framework is that code base's own method (the others keep config.framework).
_ARPL_SGD = dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                 schedule="multistep", milestones=(30, 60, 90, 120), decay=0.1, warmup_epochs=0)
RECIPES = {
    # ARPL (iCGY96/ARPL osr.py): classifier32, inputs in [0,1], SGD, x0.1 every 30 epochs.
    "arpl": dict(model="classifier32", normalize="unit", batch_size=64, num_epochs=100,
                 optimizer=_ARPL_SGD),
    # ARPL+CS: the same script with --cs: ARPL's recipe for the classifier; the DCGAN's own
    # Adam(2e-4, b1 0.5) lives in frameworks/arpl_cs.py.
    "arpl_cs": dict(model="classifier32", normalize="unit", batch_size=64, num_epochs=100,
                    optimizer=_ARPL_SGD, framework="arpl_cs"),
    # CSSR (xyzedd/CSSR): WRN-40-4 (ResNet-18 at 64 px), (x-0.5)/0.25, SGD 0.4 without momentum.
    "cssr": dict(model="wrn40_4", normalize="cssr", batch_size=128, num_epochs=200,
                 optimizer=dict(name="sgd", learning_rate=0.4, momentum=0.0, nesterov=False,
                                weight_decay=5e-4, schedule="multistep", milestones=(120, 190),
                                decay=0.1, warmup_epochs=0)),
    # MEDAF (Vanixxz/MEDAF osr_main.py, misc/osr.yml): ResNet-18 at every size, (x-0.5)/0.25,
    # SGD 0.1 momentum 0.9 wd 1e-5, x0.1 at epoch 130 of 150, batch 128. Not reproduced: its
    # RandAugment(2, 10), random contrast scaling and reflect (not zero) crop padding.
    "medaf": dict(model="resnet18", normalize="cssr", batch_size=128, num_epochs=150,
                  optimizer=dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False,
                                 weight_decay=1e-5, schedule="multistep", milestones=(130,),
                                 decay=0.1, warmup_epochs=0),
                  framework="medaf"),
    # Vaze et al., "Open-Set Recognition: A Good Closed-Set Classifier is All You Need"
    # (sgvaze/osr_closed_set_all_you_need; docs/recipes.md): their Softmax rows of
    # utils/paper_hyperparameters.csv (lr, RandAugment N and M, label smoothing, batch 128)
    # and get_default_hyperparameters (utils/utils.py): classifier32, 600 epochs, SGD momentum
    # 0.9 wd 1e-4, cosine with 2 warm restarts, floor lr/1000, 10 warm-up epochs
    # (utils/schedulers.py); their 'rand-augment' transform: RandAugment, then pad-4 crop and
    # flip on every dataset. The common values are CIFAR-10's row (also CIFAR+N's, and used
    # for the OOD benchmarks, which they do not train); `per_dataset` holds the other rows.
    "vaze": dict(model="classifier32", normalize="cssr", batch_size=128, num_epochs=600,
                 optimizer=dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=False,
                                weight_decay=1e-4, schedule="cosine_restarts", milestones=(),
                                decay=0.1, warmup_epochs=10, restarts=2, min_lr_ratio=1e-3),
                 data=dict(flip=True, crop_padding=4, randaugment_n=1, randaugment_m=6,
                           randaugment_ops="full"),
                 label_smoothing=0.0,
                 per_dataset={
                     # Their 13-op list (no rotate, no translate) for SVHN and MNIST.
                     "mnist": {"data.randaugment_m": 8, "data.randaugment_ops": "digits"},
                     "svhn": {"data.randaugment_m": 18, "data.randaugment_ops": "digits"},
                     # Their get_optimizer: Adam without weight decay on TinyImageNet.
                     "tinyimagenet": {"optimizer.name": "adam", "optimizer.learning_rate": 0.01,
                                      "optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0,
                                      "data.randaugment_m": 9, "label_smoothing": 0.9},
                 }),
}


def apply_recipe(config: ml_collections.ConfigDict, recipe: str) -> ml_collections.ConfigDict:
  """Set model, normalisation, batch size, epochs and optimiser to `recipe` (see RECIPES),
  and the data augmentation and label smoothing where the recipe names them.

  Benchmark configs call it from get_config(recipe), so the command line picks one with
  `--config=configs/cifar10.py:cssr`; single fields stay overridable after it
  (`--config.optimizer.learning_rate=...`). 'arpl_cs' and 'medaf' also set the framework.
  Call after data.image_size and dataset are set: CSSR trains ResNet-18 on 64 px images,
  and a recipe's `per_dataset` rows (dotted field -> value) apply to config.dataset.
  Returns `config` (changed in place).
  """
  if recipe not in RECIPES:
    raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
  r = RECIPES[recipe]
  config.model = r["model"]
  if recipe == "cssr" and config.data.image_size == 64:
    config.model = "resnet18"
  config.data.normalize = r["normalize"]
  config.batch_size = r["batch_size"]
  config.num_epochs = r["num_epochs"]
  config.optimizer.update(r["optimizer"])
  config.data.update(r.get("data", {}))
  if "label_smoothing" in r:
    config.label_smoothing = r["label_smoothing"]
  if "framework" in r:
    config.framework = r["framework"]
  for dotted, value in r.get("per_dataset", {}).get(config.dataset, {}).items():
    *path, last = dotted.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config
