"""`scars:<path>`: Stanford Cars with its devkit, the layout Vaze et al.'s loader reads.

<path>/cars_train/<file>, <path>/cars_test/<file> and the devkit's MATLAB files
<path>/devkit/cars_train_annos.mat and <path>/devkit/cars_test_annos_withlabels.mat
(`annotations`: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class 1..196, fname per image);
devkit/cars_meta.mat (`class_names`) gives the names when present. Class id = class - 1
(0..195, in cars_meta.mat order: the ids of the SSB split lists); samples in annotation
order. The .mat files are read with scipy.io (scipy comes with scikit-learn).
"""
from __future__ import annotations

import pathlib

import scipy.io

from backmix_jax.data.core import DataError
from backmix_jax.data.readers import ReadRequest, Reader, decode_files, existing_dir

LAYOUT = ("cars_train/, cars_test/, devkit/cars_train_annos.mat, "
          "devkit/cars_test_annos_withlabels.mat")
_ANNOTATIONS = {"train": "cars_train_annos.mat", "test": "cars_test_annos_withlabels.mat"}


def _load_mat(path: pathlib.Path) -> dict:
  if not path.is_file():
    raise DataError(f"scars source: no file {str(path)!r} (the devkit's annotations)")
  try:
    return scipy.io.loadmat(str(path))
  except (ValueError, OSError) as e:
    raise DataError(f"{path} cannot be read as a MATLAB file ({e})") from None


def read(path: str, request: ReadRequest):
  """The cars_train / cars_test images, labels = devkit class - 1."""
  root = pathlib.Path(path)
  devkit = existing_dir(root / "devkit", "scars", LAYOUT)
  out = {}
  for split in request.splits:
    if split not in _ANNOTATIONS:
      raise DataError(f"scars source has splits train and test, not {split!r}")
    folder = existing_dir(root / f"cars_{split}", "scars", LAYOUT)
    records = _load_mat(devkit / _ANNOTATIONS[split])["annotations"][0]
    # Fields by position as the devkit orders them: class is the 5th, fname the 6th.
    chosen = [(int(r[4][0][0]) - 1, folder / str(r[5][0])) for r in records]
    out[split] = decode_files(chosen, request, f"scars source {path!r}, split {split!r}")
  meta = devkit / "cars_meta.mat"
  names = (tuple(str(n[0]) for n in _load_mat(meta)["class_names"][0]) if meta.is_file()
           else tuple(str(c) for c in range(196)))
  return out, names


READER = Reader("scars", "<path>", read)
