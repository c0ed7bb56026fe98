"""Semantic Shift Benchmark, ImageNet: all 1000 ImageNet-1K classes known, 1,980
ImageNet-21K-P classes unknown in two difficulties (Easy 1000, Hard 980), one published
split (protocol `ssb`), 224 px.

python -m experiments.train --config configs/ssb_imagenet.py --workdir runs/ssb_imagenet \
    --config.data.source=imagenet:/path/to/imagenet \
    --config.data.unknown_source=imagenet21k:/path/to/imagenet21k_resized/imagenet21k_val \
    --config.pretrained=/path/to/resnet50-0676ba61.pth
Reads ImageNet-1K as train/<wnid>/ and val/<wnid>/ folders and the ImageNet-21K-P folders of
the SSB's classes (docs/data.md); ImageNet's evaluation transform (shorter side 256, centre
crop 224). One row per difficulty in metrics.md (the `unknown_sets` evaluator).

Vaze et al. evaluate ImageNet-pretrained models without training; the short fine-tuning
schedule here (1 epoch, SGD 1e-3, batch 256, BackMix on ResNet-50's 7 x 7 CAM grid) is this
project's choice. ImageNet-1K's 1.28 M training images do not fit the in-memory pipeline
(about 190 GB at 224 px): this config needs a host that holds them, or the streaming path.
"""
from configs import default


def get_config():
  c = default.get_base_config()
  c.dataset = "ssb_imagenet"
  c.protocol = "ssb"
  c.data.source = "imagenet:imagenet"  # relative to the working directory
  c.data.unknown_source = "imagenet21k:imagenet21k_resized/imagenet21k_val"
  c.data.image_size = 224
  c.data.flip = True
  c.data.crop_padding = 0
  c.model = "resnet50"
  # The statistics torchvision's ImageNet weights were trained with (Vaze et al. normalise
  # with CIFAR-10's: means within 0.041, standard deviations within 0.027 of these).
  c.data.normalize = "imagenet"
  c.batch_size = 256
  c.eval_batch_size = 256
  c.num_epochs = 1
  c.optimizer.update(dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                          schedule="cosine", milestones=(), warmup_epochs=0))
  # One row per difficulty of the split (data.unknown_groups), besides the overall table.
  c.evals.unknown_sets = dict(every_epochs=0)
  return c
