"""`folder:<path>`: the TinyImageNet layout.

train/<wnid>/[images/]*.JPEG; the test split is val/: val/images + val/val_annotations.txt,
or val/<wnid>/ folders. Class id = index of the wnid in sorted(train wnids); sample order
is ImageFolder's (class, then file path). A path holding tiny-imagenet-200/ is accepted.
"""
from __future__ import annotations

import pathlib

from backmix_jax.data.core import DataError
from backmix_jax.data.readers import ReadRequest, Reader, decode_files

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """The image files under `folder` (any depth), sorted by path."""
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def read(path: str, request: ReadRequest):
  """TinyImageNet-style folder; sample order is ImageFolder's (class, then file path)."""
  root = pathlib.Path(path)
  if not (root / "train").is_dir() and (root / "tiny-imagenet-200" / "train").is_dir():
    root = root / "tiny-imagenet-200"
  train_dir = root / "train"
  if not train_dir.is_dir():
    raise DataError(f"folder source {path!r} has no train/ directory (TinyImageNet layout)")
  wnids = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
  if not wnids:
    raise DataError(f"{train_dir} has no class directories")
  class_id = {w: i for i, w in enumerate(wnids)}
  out = {}
  for split in request.splits:
    if split == "train":
      files = [(class_id[w], f) for w in wnids for f in image_files(train_dir / w)]
    elif split == "test":
      files = _val_files(root / "val", class_id)
    else:
      raise DataError(f"folder source has splits train and test (= val/), not {split!r}")
    out[split] = decode_files(files, request, f"folder source {path!r}, split {split!r}")
  return out, tuple(wnids)


def _val_files(val_dir: pathlib.Path, class_id: dict[str, int]) -> list:
  """(class id, file) of val/: val_annotations.txt + images/, or val/<wnid>/ folders."""
  annotations = val_dir / "val_annotations.txt"
  if (val_dir / "images").is_dir() and annotations.is_file():
    files = []
    for line in annotations.read_text().splitlines():
      if not line.strip():
        continue
      name, wnid = line.split("\t")[:2]
      if wnid not in class_id:
        raise DataError(f"{annotations}: wnid {wnid!r} is not a train/ class")
      files.append((class_id[wnid], val_dir / "images" / name))
    return sorted(files)
  folders = sorted(d.name for d in val_dir.iterdir() if d.is_dir()) if val_dir.is_dir() else []
  if not folders:
    raise DataError(f"{val_dir} has neither images/ + val_annotations.txt nor class folders")
  stray = [w for w in folders if w not in class_id]
  if stray:
    raise DataError(f"{val_dir} has class folders that train/ lacks: {stray[:5]}")
  return [(class_id[w], f) for w in folders for f in image_files(val_dir / w)]


READER = Reader("folder", "<path>", read)
