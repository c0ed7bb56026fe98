"""`npz:<path>`: a local array file with train/test splits.

Either CIFAR-10 as JPEG bytes ({split}_jpeg uint8 [total bytes], {split}_offsets [N+1]:
image i is jpeg[offsets[i]:offsets[i+1]], {split}_labels, optional class_names), decoded
here, or plain arrays ({split}_images uint8 [N,H,W(,C)], {split}_labels [N]). Labels are
checked (`core.check_labels`); arrays of Python objects are refused (no unpickling).
"""
from __future__ import annotations

import zipfile
import zlib

import numpy as np

from backmix_jax.data.core import (ArraySplit, DataError, UndecodableImage, check_labels,
                                   evenly_spaced)
from backmix_jax.data.images import decode_images
from backmix_jax.data.readers import ReadRequest, Reader, class_names


def _npz_array(data, key: str, path: str) -> np.ndarray:
  """data[key], or DataError naming the file and the array that cannot be read."""
  try:
    return data[key]
  except ValueError as e:
    if "allow_pickle" in str(e):  # object arrays would need unpickling: code, not data
      raise DataError(f"{path}: {key} holds Python objects (dtype object); save plain "
                      "numeric arrays (uint8 images, integer labels)") from None
    raise DataError(f"{path}: {key} cannot be read ({e})") from None
  except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise DataError(f"{path}: {key} cannot be read, the file is damaged "
                    f"({type(e).__name__}: {e})") from None


def read(path: str, request: ReadRequest):
  """CIFAR-10 JPEG-bytes files (decoded here) or plain image arrays; see the module doc."""
  try:
    data = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise DataError(f"npz source: no such file {path!r}") from None
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    # np.load falls back on unpickling what is not a zip: its message then speaks of pickles.
    raise DataError(f"npz source {path}: not a readable .npz archive (a zip of named "
                    f"arrays, as np.savez writes): {type(e).__name__}: {str(e)[:120]}") from None
  if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
    raise DataError(f"npz source {path}: holds a single array, not the named arrays of an "
                    "npz ({split}_images or {split}_jpeg, {split}_labels)")
  with data:
    names = _npz_array(data, "class_names", path) if "class_names" in data.files else None
    out = {}
    for split in request.splits:
      labels_key = f"{split}_labels"
      if labels_key not in data.files:
        raise DataError(f"{path} has no {labels_key!r} (keys: {', '.join(data.files)})")
      labels = check_labels(_npz_array(data, labels_key, path), f"{path}: {labels_key}",
                            None if names is None else len(names))
      keep = evenly_spaced(len(labels), request.max_per_split)
      if f"{split}_jpeg" in data.files:
        buf = _npz_array(data, f"{split}_jpeg", path)
        offsets = _npz_array(data, f"{split}_offsets", path)
        if len(offsets) != len(labels) + 1:
          raise DataError(f"{path}: {len(offsets)} {split} offsets for {len(labels)} labels "
                          "(image i is buf[off[i]:off[i+1]])")
        raw = buf.tobytes()
        blobs = [raw[offsets[i]:offsets[i + 1]] for i in keep]
        try:
          images = decode_images(blobs, request.image_size, request.decoder)
        except UndecodableImage as e:
          raise DataError(f"{path}: {split}_jpeg image {keep[e.index]} cannot be decoded "
                          f"({e.reason})") from None
      elif f"{split}_images" in data.files:
        images = _npz_array(data, f"{split}_images", path)
        if len(images) != len(labels):
          raise DataError(f"{path}: {len(images)} {split}_images but {len(labels)} "
                          f"{labels_key}; every image needs exactly one label")
        images = images[keep]
        if images.dtype != np.uint8:
          raise DataError(f"{path}: {split}_images must be uint8, got {images.dtype}")
        if images.ndim not in (3, 4):
          raise DataError(f"{path}: {split}_images must be [N,H,W] or [N,H,W,C], "
                          f"got shape {images.shape}")
        images = images[..., None] if images.ndim == 3 else images
      else:
        raise DataError(f"{path} has neither {split}_jpeg nor {split}_images "
                        f"(keys: {', '.join(data.files)})")
      out[split] = ArraySplit(images, labels[keep])
  return out, class_names(names, [s.labels for s in out.values()])


READER = Reader("npz", "<path>", read)
