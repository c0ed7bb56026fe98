"""Semantic Shift Benchmark, Stanford Cars: 98 known car models, 98 unknown ones in three
difficulties (Easy, Medium, Hard), one published split (protocol `ssb`), 448 px.

python -m experiments.train --config configs/ssb_scars.py --workdir runs/ssb_scars \
    --config.data.source=scars:/path/to/stanford_cars \
    --config.pretrained=/path/to/resnet50-0676ba61.pth
Reads the folder Vaze et al.'s loader reads (cars_train/, cars_test/ and the devkit's
cars_train_annos.mat / cars_test_annos_withlabels.mat in devkit/). Their
utils/paper_hyperparameters.csv has no Stanford Cars row: this trains as configs/ssb_cub.py
(CUB's row), which is a choice of this project, not theirs.
"""
from configs import ssb_cub


def get_config():
  c = ssb_cub.get_config()
  c.dataset = "ssb_scars"
  c.data.source = "scars:stanford_cars"  # relative to the working directory
  return c
