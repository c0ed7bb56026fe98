"""`aircraft:<path>`: FGVC-Aircraft (fgvc-aircraft-2013b) in its released layout.

<path>/ (or <path>/fgvc-aircraft-2013b/) holds data/images_variant_trainval.txt and
data/images_variant_test.txt (`<image id> <variant name>`, names may hold spaces) and
data/images/<image id>.jpg. Train = trainval, test = test (Vaze et al.'s SSB runs). Class
id = the variant's index in the sorted variant names of trainval (0..99, the ids of the
SSB split lists, as their loader numbers them); samples in list-file order.
"""
from __future__ import annotations

import pathlib

from backmix_jax.data.core import DataError
from backmix_jax.data.readers import ReadRequest, Reader, decode_files, existing_dir, read_lines

LAYOUT = "data/images_variant_trainval.txt, data/images_variant_test.txt, data/images/"
_LISTS = {"train": "trainval", "test": "test"}


def _pairs(data: pathlib.Path, split: str) -> list[tuple[str, str]]:
  """(image id, variant name) of one list file."""
  return [(parts[0], " ".join(parts[1:]))
          for parts in read_lines(data / f"images_variant_{_LISTS[split]}.txt", "aircraft")]


def read(path: str, request: ReadRequest):
  """The trainval / test images, labels = index of the variant in sorted trainval names."""
  root = pathlib.Path(path)
  if not (root / "data").is_dir() and (root / "fgvc-aircraft-2013b" / "data").is_dir():
    root = root / "fgvc-aircraft-2013b"
  data = existing_dir(root / "data", "aircraft", LAYOUT)
  names = sorted({name for _, name in _pairs(data, "train")})
  class_id = {n: i for i, n in enumerate(names)}
  out = {}
  for split in request.splits:
    if split not in _LISTS:
      raise DataError(f"aircraft source has splits train (= trainval) and test, not {split!r}")
    pairs = _pairs(data, split)
    stray = sorted({n for _, n in pairs} - set(class_id))
    if stray:
      raise DataError(f"aircraft source {path!r}: test variants absent from trainval: "
                      f"{stray[:5]}")
    chosen = [(class_id[n], data / "images" / f"{i}.jpg") for i, n in pairs]
    out[split] = decode_files(chosen, request, f"aircraft source {path!r}, split {split!r}")
  return out, tuple(names)


READER = Reader("aircraft", "<path>", read)
