"""Semantic Shift Benchmark, CUB-200-2011: 100 known bird species, 100 unknown ones in three
difficulties (Easy, Medium, Hard), one published split (protocol `ssb`), 448 px.

python -m experiments.train --config configs/ssb_cub.py --workdir runs/ssb_cub \
    --config.data.source=cub:/path/to/CUB_200_2011 \
    --config.pretrained=/path/to/resnet50-0676ba61.pth
Reads the released folder (images.txt, image_class_labels.txt, train_test_split.txt,
images/; docs/data.md). The end of the run prints the open-set table against every unknown
class and writes one row per difficulty (and Medium+Hard, Vaze et al.'s 'Hard') to
metrics.md (the `unknown_sets` evaluator).

Training follows Vaze et al.'s fine-grained runs (sgvaze/osr_closed_set_all_you_need,
bash_scripts/osr_finegrained_train.sh and the Softmax CUB row of
utils/paper_hyperparameters.csv): ResNet-50, 448 px, batch 32, SGD lr 0.001 (momentum 0.9,
weight decay 1e-4), 600 epochs of cosine with 2 warm restarts and 10 warm-up epochs,
RandAugment N 2 M 30, label smoothing 0.3, then their 'rand-augment' transform's pad-4 crop
and flip; inputs normalised with ImageNet's statistics (theirs: CIFAR-10's, close to them). They start from MoCo-v2 Places weights; any resnet50 file given as `pretrained`
is used (README, "Pretrained backbones"). BackMix runs on ResNet-50's 14 x 14 CAM grid.
"""
from configs import default


def get_config():
  c = default.get_base_config()
  c.dataset = "ssb_cub"
  c.protocol = "ssb"
  c.data.source = "cub:CUB_200_2011"  # relative to the working directory
  c.data.image_size = 448
  c.data.flip = True
  c.data.crop_padding = 4
  c.data.randaugment_n = 2
  c.data.randaugment_m = 30
  c.model = "resnet50"
  # The statistics torchvision's ImageNet weights were trained with (Vaze et al. normalise
  # with CIFAR-10's: means within 0.041, standard deviations within 0.027 of these).
  c.data.normalize = "imagenet"
  c.label_smoothing = 0.3
  c.batch_size = 32
  c.eval_batch_size = 64  # 448 px ResNet-50 activations: a quarter of the default batch
  c.num_epochs = 600
  c.optimizer.update(dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=1e-4,
                          schedule="cosine_restarts", milestones=(), warmup_epochs=10,
                          restarts=2, min_lr_ratio=1e-3))
  # One row per difficulty of the split (data.unknown_groups), besides the overall table.
  c.evals.unknown_sets = dict(every_epochs=0)
  return c
