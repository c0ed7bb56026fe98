"""`imagenet:<path>` and `imagenet21k:<path>`: ImageNet folders of wnid sub-folders, for the
SSB's ImageNet benchmark (ImageNet-1K known, ImageNet-21K-P unknown).

imagenet: <path>/train/<wnid>/ and <path>/val/<wnid>/ (the validation images sorted into
class folders, as torchvision's ImageFolder reads them); class id = index of the wnid in
sorted(train/), the order of ImageNet-1K classifiers' outputs. imagenet21k: <path>/<wnid>/
folders of ImageNet-21K-P (e.g. its imagenet21k_val/), read as a test split only; class id
= the wnid's position in the SSB's unknown list (Easy, then Hard; data/split_lists.py),
folders of other classes ignored. Images get ImageNet's evaluation transform at
data.image_size (shorter side to size / 0.875, centre crop: `images.resize_shorter_center_crop`).
"""
from __future__ import annotations

import functools
import pathlib

from backmix_jax.data import split_lists
from backmix_jax.data.core import DataError
from backmix_jax.data.images import resize_shorter_center_crop
from backmix_jax.data.readers import ReadRequest, Reader, decode_files, existing_dir
from backmix_jax.data.readers.folder import image_files

LAYOUT = "train/<wnid>/ and val/<wnid>/ image folders"
LAYOUT_21K = "<wnid>/ image folders of ImageNet-21K-P"


def _crop(request: ReadRequest, kind: str):
  if request.image_size is None:
    raise DataError(f"{kind} source needs an image size (its images differ in size)")
  return functools.partial(resize_shorter_center_crop, size=request.image_size)


def _wnids(folder: pathlib.Path) -> list[str]:
  return sorted(d.name for d in folder.iterdir() if d.is_dir())


def read_imagenet(path: str, request: ReadRequest):
  """train/ and val/ of ImageNet-1K; labels = index of the wnid in sorted(train/)."""
  root = pathlib.Path(path)
  wnids = _wnids(existing_dir(root / "train", "imagenet", LAYOUT))
  class_id = {w: i for i, w in enumerate(wnids)}
  folders = {"train": "train", "test": "val"}
  out = {}
  for split in request.splits:
    if split not in folders:
      raise DataError(f"imagenet source has splits train and test (= val/), not {split!r}")
    folder = existing_dir(root / folders[split], "imagenet", LAYOUT)
    stray = [w for w in _wnids(folder) if w not in class_id]
    if stray:
      raise DataError(f"{folder} has class folders that train/ lacks: {stray[:5]}")
    files = [(class_id[w], f) for w in _wnids(folder) for f in image_files(folder / w)]
    out[split] = decode_files(files, request, f"imagenet source {path!r}, split {split!r}",
                              _crop(request, "imagenet"))
  return out, tuple(wnids)


def read_imagenet21k(path: str, request: ReadRequest):
  """The SSB classes' <wnid>/ folders as a test split; labels = positions in
  split_lists.SSB_IMAGENET_21K_WNIDS."""
  root = existing_dir(pathlib.Path(path), "imagenet21k", LAYOUT_21K)
  class_id = {w: i for i, w in enumerate(split_lists.SSB_IMAGENET_21K_WNIDS)}
  out = {}
  for split in request.splits:
    if split != "test":
      raise DataError(f"imagenet21k source has only a test split, not {split!r}")
    files = [(class_id[w], f) for w in _wnids(root) if w in class_id
             for f in image_files(root / w)]
    out[split] = decode_files(files, request, f"imagenet21k source {path!r} (the SSB's "
                              "ImageNet-21K-P classes)", _crop(request, "imagenet21k"))
  return out, split_lists.SSB_IMAGENET_21K_WNIDS


READER = Reader("imagenet", "<path>", read_imagenet)
READER_21K = Reader("imagenet21k", "<path>", read_imagenet21k)
