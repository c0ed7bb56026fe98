"""Data sources: each turns a source spec into in-memory uint8 image arrays.

Every source returns the same thing (`SourceData`), so the open-set split, the
pipelines and the trainer never know where the images came from. Specs:

  digits                      scikit-learn's bundled 8x8 digits, upscaled (ships offline)
  npz:<path>                  a local array file with train/test splits: CIFAR-10 as JPEG bytes
                              ({split}_jpeg, {split}_offsets, {split}_labels, class_names) or
                              plain arrays ({split}_images [N,H,W(,C)] uint8, {split}_labels)
  tfds:<name>                 a prepared TFDS dataset (mnist, svhn_cropped, cifar10, cifar100)
                              under data_dir; never downloads unless download=True
  folder:<path>               TinyImageNet layout: train/<wnid>/[images/]*.JPEG; val/images +
                              val/val_annotations.txt, or val/<wnid>/ (the test split);
                              class id = index of the wnid in sorted(train wnids)
  arrayrecord:<dir>           shards written by `python -m experiments.prepare` (data/shards.py);
                              data.backend=grain streams its training split from them; a URL
                              (gs://...) is staged into data.cache_dir first (data/staging.py)
  cub:<path>                  CUB-200-2011 as released (images.txt, image_class_labels.txt,
                              train_test_split.txt, images/); class id = class number - 1
  aircraft:<path>             FGVC-Aircraft 2013b (data/images_variant_{trainval,test}.txt,
                              data/images/); class id = index of the sorted variant name
  scars:<path>                Stanford Cars (cars_train/, cars_test/, devkit/*.mat annotations);
                              class id = devkit class - 1
  imagenet:<path>             ImageNet-1K train/<wnid>/, val/<wnid>/; class id = index of the
                              wnid in sorted(train/); shorter side resized, centre crop
  imagenet21k:<path>          ImageNet-21K-P <wnid>/ folders of the SSB's unknown classes (test
                              split only); class id = position in the SSB's Easy + Hard list
  mnist|svhn|cifar10|cifar100 shorthand for tfds:<tfds name> (svhn = svhn_cropped, whose
                              labels are already 0..9); `splits.Split.unknown_source` uses these

Labels are the source's own class ids. All sources then get the same treatment
(`conform`): resize to `image_size` with Pillow's bilinear filter, as torchvision's
Resize on PIL images does in ARPL (MNIST 28 -> 32 px), and set `channels` (grey -> RGB
by repetition as ARPL's MNIST loader does; RGB -> grey with Pillow's luma weights).
Only `tfds:` needs TensorFlow; the others run on NumPy and Pillow alone.

Each kind of spec is one reader (data/readers/<kind>.py) with one entry in `READERS`; the
shorthands are the registered datasets with a TFDS name (`benchmarks.DATASETS`). The core
types (DataError, ArraySplit, SourceData) live in data/core.py, the image helpers
(resize, to_channels, conform, decode_images) in data/images.py.
"""
from __future__ import annotations

from typing import Sequence

from backmix_jax.data.core import ArraySplit, DataError, SourceData
from backmix_jax.data.images import conform
from backmix_jax.data.readers import (ReadRequest, Reader, aircraft, arrayrecord, cub, digits,
                                      folder, imagenet, npz, scars)
from backmix_jax.data.readers import tfds as tfds_reader

# Spec kind -> reader, in the order messages list them.
READERS: dict[str, Reader] = {r.kind: r for r in (digits.READER, npz.READER, tfds_reader.READER,
                                                  folder.READER, arrayrecord.READER, cub.READER,
                                                  aircraft.READER, scars.READER, imagenet.READER,
                                                  imagenet.READER_21K)}
_SPLITS = ("train", "test")


def _reader(spec: str) -> tuple[Reader, str]:
  """(reader, argument) of a spec; a bare dataset short name is tfds:<name>."""
  kind, sep, arg = spec.partition(":")
  if not sep and kind in tfds_reader.TFDS_NAMES:
    kind, sep, arg = "tfds", ":", kind
  reader = READERS.get(kind)
  # A reader that takes an argument needs a non-empty one; a bare one (digits) takes none.
  if reader is None or not (arg if reader.argument else not sep):
    raise DataError(f"unknown data source {spec!r}; known: "
                    f"{', '.join(r.usage for r in READERS.values())}, "
                    f"{', '.join(tfds_reader.TFDS_NAMES)}")
  return reader, arg


def _read(spec: str, splits: Sequence[str], *, data_dir: str | None, image_size: int | None,
          channels: int | None, download: bool, max_per_split: int | None, decoder: str,
          cache_dir: str):
  """Spec -> ({split: ArraySplit}, class_names), conformed to image_size and channels."""
  reader, arg = _reader(spec)
  out, names = reader.read(arg, ReadRequest(tuple(splits), data_dir, image_size, download,
                                            max_per_split, decoder, cache_dir))
  result = {}
  for split in splits:
    if split not in out:
      raise DataError(f"source {spec!r} has splits {', '.join(out)}, not {split!r}")
    s = out[split]
    if not len(s.labels):  # every source passes here: one message for any empty split
      raise DataError(f"source {spec!r} holds no images in its {split!r} split")
    result[split] = ArraySplit(conform(s.images, image_size, channels), s.labels)
  return result, names


def load_source(spec: str, *, data_dir: str | None = None, image_size: int | None = 32,
                channels: int | None = None, download: bool = False,
                max_per_split: int | None = None, decoder: str = "auto",
                cache_dir: str = "") -> SourceData:
  """Read the train and test splits of a source spec (see the module docstring).

  data_dir: TFDS data directory (local or gs://) for tfds specs.
  image_size: output side in pixels (None keeps the source's; TinyImageNet wants 64).
  channels: 1 or 3 (None keeps the source's: MNIST 1, the rest 3).
  download: let TFDS download and prepare a missing dataset (never done otherwise).
  max_per_split: keep only this many evenly spaced samples per split (quick tests).
  decoder: JPEG decoder for npz/folder sources, see `images.decode_images`.
  cache_dir: local cache of remote arrayrecord directories ('' = `staging.CACHE_ROOT`).
  """
  out, names = _read(spec, _SPLITS, data_dir=data_dir, image_size=image_size,
                     channels=channels, download=download, max_per_split=max_per_split,
                     decoder=decoder, cache_dir=cache_dir)
  return SourceData(train=out["train"], test=out["test"], class_names=names)


def load_unknown_source(spec: str, *, data_dir: str | None = None,
                        image_size: int | None = 32, channels: int | None = None,
                        download: bool = False, max_per_split: int | None = None,
                        decoder: str = "auto", split: str = "test",
                        cache_dir: str = "") -> ArraySplit:
  """One split (the test split by default) of a second source whose images are unknowns.

  E.g. 'cifar100' (CIFAR+N, OOD) or 'svhn' (OOD) with the same options as `load_source`,
  so the images match the known dataset's size and channels. Labels stay the source's own
  class ids: `openset.make_open_set` keeps the listed unknown classes and relabels them -1.
  """
  out, _ = _read(spec, (split,), data_dir=data_dir, image_size=image_size, channels=channels,
                 download=download, max_per_split=max_per_split, decoder=decoder,
                 cache_dir=cache_dir)
  return out[split]
