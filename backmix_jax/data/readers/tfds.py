"""`tfds:<name>`: a prepared TensorFlow Datasets dataset under data_dir (never downloaded
unless asked). A dataset's short name (mnist, svhn, cub, ...) reads its registered tfds name
(`benchmarks.DATASETS`: svhn = svhn_cropped, whose labels are already 0..9; cub =
caltech_birds2011 and scars = cars196, whose labels are the released class number - 1, the
ids of the cub: and scars: readers and of the SSB lists).

Datasets of one image shape are read decoded, in large batches. Datasets whose images differ
in size (CUB, Cars) are read as their stored encoded bytes and decoded by `decode_images` at
the requested size, the path the folder readers take, so the same JPEG file gives the same
pixels from either.
"""
from __future__ import annotations

import difflib

import numpy as np

from backmix_jax.data.benchmarks import DATASETS
from backmix_jax.data.core import ArraySplit, DataError, UndecodableImage, evenly_spaced
from backmix_jax.data.images import decode_images
from backmix_jax.data.readers import ReadRequest, Reader, class_names

# Short name -> tfds name, of every registered dataset that TFDS has.
TFDS_NAMES = {d.name: d.tfds_name for d in DATASETS.values() if d.tfds_name}


def unknown_name(name: str, known) -> str:
  """One line for a tfds name that is not registered, with the closest registered names
  (difflib; a config or version after '/' or ':' is not part of the name)."""
  base = name.split("/")[0].split(":")[0]
  close = difflib.get_close_matches(base, list(known), n=3, cutoff=0.6)
  hint = (f"closest: {', '.join(close)}" if close else
          "tensorflow_datasets.list_builders() lists them")
  return f"tfds has no dataset {base!r} ({hint})"


def read(name: str, request: ReadRequest):
  """The requested splits of a prepared TFDS dataset, read whole in batches into arrays, then
  at most max_per_split evenly spaced samples of each kept."""
  name = TFDS_NAMES.get(name, name)
  data_dir = request.data_dir
  try:
    import tensorflow_datasets as tfds  # optional: only this reader needs TensorFlow
  except ImportError as e:
    raise DataError(f"tfds:{name} needs tensorflow-datasets, which cannot be imported ({e}); "
                    "use an npz: or folder: source instead") from None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    # tfds' own message lists all of its ~450 names, one per line: name the closest few.
    raise DataError(unknown_name(name, tfds.list_builders(with_community_datasets=False))) from None
  except Exception as e:  # tfds' registry errors (a bad config or version of a known name)
    raise DataError(f"tfds cannot build dataset {name!r}: {e}") from None
  if request.download:
    builder.download_and_prepare()
  image_key, label_key = builder.info.supervised_keys
  ragged = None in builder.info.features[image_key].shape[:2]
  out = {}
  for split in request.splits:
    try:
      if ragged:
        out[split] = _encoded_split(tfds, builder, split, image_key, request, f"tfds:{name}")
      else:
        # batch_size=-1 would size the batch from the split metadata; fixed batches need none.
        ds = builder.as_dataset(split=split, as_supervised=True, batch_size=10_000,
                                shuffle_files=False)
        parts = list(tfds.as_numpy(ds))
        if not parts:
          raise DataError(f"tfds dataset {name!r} split {split!r} is empty")
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
        out[split] = ArraySplit(images.astype(np.uint8, copy=False), labels)
    except AssertionError:
      where = data_dir or "the default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
      raise DataError(f"tfds dataset {name!r} is not prepared under {where}; prepare it once "
                      f"where there is internet (`tfds build {name} --data_dir=DIR`, then copy "
                      "DIR or point data.data_dir at it or at a gs:// copy), or from Python call "
                      "sources.load_source(..., download=True)") from None
  feature = builder.info.features[label_key]
  names = feature.names if getattr(feature, "names", None) else None
  names = class_names(names, [s.labels for s in out.values()])  # of the whole splits
  return {split: s.take(evenly_spaced(len(s), request.max_per_split))
          for split, s in out.items()}, names


def _encoded_split(tfds, builder, split: str, image_key: str, request: ReadRequest,
                   what: str) -> ArraySplit:
  """One split of a dataset whose images differ in size: the stored encoded images, of which
  at most max_per_split evenly spaced ones are decoded, at request.image_size."""
  ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                          decoders={image_key: tfds.decode.SkipDecoding()})
  pairs = list(tfds.as_numpy(ds))
  if not pairs:
    raise DataError(f"{what} split {split!r} is empty")
  pairs = [pairs[i] for i in evenly_spaced(len(pairs), request.max_per_split)]
  try:
    images = decode_images([blob for blob, _ in pairs], request.image_size, request.decoder)
  except UndecodableImage as e:
    raise DataError(f"{what} split {split!r}: image {e.index} cannot be decoded "
                    f"({e.reason})") from None
  except DataError as e:  # e.g. images of several sizes and no image_size to resize to
    raise DataError(f"{what} split {split!r}: {e}") from None
  return ArraySplit(images, np.array([label for _, label in pairs], np.int64))


READER = Reader("tfds", "<name>", read)
