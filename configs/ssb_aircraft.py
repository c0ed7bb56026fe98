"""Semantic Shift Benchmark, FGVC-Aircraft: 50 known aircraft variants, 50 unknown ones in
three difficulties (Easy, Medium, Hard), one published split (protocol `ssb`), 448 px.

python -m experiments.train --config configs/ssb_aircraft.py --workdir runs/ssb_aircraft \
    --config.data.source=aircraft:/path/to/fgvc-aircraft-2013b \
    --config.pretrained=/path/to/resnet50-0676ba61.pth
Reads the released folder (data/images_variant_{trainval,test}.txt, data/images/); trains
on trainval. Training as configs/ssb_cub.py except the Softmax FGVC-Aircraft row of Vaze et
al.'s utils/paper_hyperparameters.csv: RandAugment M 15, label smoothing 0.2.
"""
from configs import ssb_cub


def get_config():
  c = ssb_cub.get_config()
  c.dataset = "ssb_aircraft"
  c.data.source = "aircraft:fgvc-aircraft-2013b"  # relative to the working directory
  c.data.randaugment_m = 15
  c.label_smoothing = 0.2
  return c
