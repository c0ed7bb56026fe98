"""`cub:<path>`: CUB-200-2011 in its released layout (the SSB's bird benchmark).

<path>/CUB_200_2011/ (or <path> itself) holds images.txt (`<image id> <relative file>`),
image_class_labels.txt (`<image id> <class 1..200>`), train_test_split.txt (`<image id>
<1 = train, 0 = test>`) and images/<relative file>; classes.txt (`<class> <name>`) gives
the names when present. Class id = the released class number - 1 (0..199, the ids of the
SSB split lists); samples in images.txt order, as Vaze et al.'s loader reads them.
"""
from __future__ import annotations

import pathlib

from backmix_jax.data.core import DataError
from backmix_jax.data.readers import ReadRequest, Reader, decode_files, existing_dir, read_lines

LAYOUT = "CUB_200_2011/ with images.txt, image_class_labels.txt, train_test_split.txt, images/"
_IS_TRAIN = {"train": "1", "test": "0"}


def read(path: str, request: ReadRequest):
  """The train / test images of the released split, labels 0..199."""
  root = pathlib.Path(path)
  if not (root / "images.txt").is_file() and (root / "CUB_200_2011").is_dir():
    root = root / "CUB_200_2011"
  existing_dir(root / "images", "cub", LAYOUT)
  files = {i: f for i, f in read_lines(root / "images.txt", "cub")}
  labels = {i: int(c) - 1 for i, c in read_lines(root / "image_class_labels.txt", "cub")}
  split_of = {i: t for i, t in read_lines(root / "train_test_split.txt", "cub")}
  out = {}
  for split in request.splits:
    if split not in _IS_TRAIN:
      raise DataError(f"cub source has splits train and test, not {split!r}")
    chosen = [(labels[i], root / "images" / f) for i, f in files.items()
              if split_of.get(i) == _IS_TRAIN[split]]
    out[split] = decode_files(chosen, request, f"cub source {path!r}, split {split!r}")
  names_file = root / "classes.txt"
  names = ([line.split(maxsplit=1)[1] for line in names_file.read_text().splitlines()
            if line.strip()] if names_file.is_file() else [str(c) for c in range(200)])
  return out, tuple(names)


READER = Reader("cub", "<path>", read)
