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
  mnist|svhn|cifar10|cifar100 shorthand for tfds:<tfds name> (svhn = svhn_cropped, whose
                              labels are already 0..9); `splits.Split.unknown_source` uses these

Labels are the source's own class ids. All sources then get the same treatment
(`conform`): resize to `image_size` with Pillow's bilinear filter, as torchvision's
Resize on PIL images does in ARPL (MNIST 28 -> 32 px), and set `channels` (grey -> RGB
by repetition as ARPL's MNIST loader does; RGB -> grey with Pillow's luma weights).
Only `tfds:` needs TensorFlow; the others run on NumPy and Pillow alone.
"""
from __future__ import annotations

import dataclasses
import io
import pathlib
import sys
import zipfile
import zlib
from typing import Sequence

import numpy as np


class DataError(ValueError):
  """A data source cannot be read (missing file, unknown source, bad layout)."""


class UndecodableImage(DataError):
  """Entry `index` of a list of encoded images cannot be decoded; callers that know where
  the bytes came from (a file, an array entry) name that instead."""

  def __init__(self, index: int, error: Exception):
    self.index = index
    self.reason = f"{type(error).__name__}: {error}"
    super().__init__(f"image {index} cannot be decoded ({self.reason})")


def check_labels(labels, where: str, num_classes: int | None = None) -> np.ndarray:
  """`labels` as int64 [N], or DataError naming `where` and the first bad entry: labels
  must be whole numbers (a float label would be truncated), >= 0 (NumPy would read -1 as
  the last class) and below `num_classes` when it is known."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise DataError(f"{where}: labels must be one class id per image, got shape {labels.shape}")
  if labels.dtype.kind == "f":
    with np.errstate(invalid="ignore"):
      bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
    if bad.size:
      raise DataError(f"{where}: labels must be integers; entry {bad[0]} is "
                      f"{labels[bad[0]].item()}")
  elif labels.dtype.kind not in "iu":
    raise DataError(f"{where}: labels must be integers, got dtype {labels.dtype}")
  labels = labels.astype(np.int64)
  bad = np.flatnonzero(labels < 0)
  if bad.size:
    raise DataError(f"{where}: labels must be class ids >= 0; entry {bad[0]} is {labels[bad[0]]}")
  if num_classes is not None:
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
      raise DataError(f"{where}: entry {bad[0]} is label {labels[bad[0]]}, outside the "
                      f"{num_classes} classes 0..{num_classes - 1} of class_names")
  return labels


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """One split held in memory.

  images: uint8 [N, H, W, C]; labels: int64 [N] (original class ids of the source);
  masks: optional bool [N, H, W], True on each image's true foreground pixels (only the
  composed diagnostic benchmark knows them; every other source leaves None).
  """
  images: np.ndarray
  labels: np.ndarray
  masks: np.ndarray | None = None

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise DataError(f"images must be uint8 [N,H,W,C], got {self.images.dtype} {self.images.shape}")
    if len(self.images) != len(self.labels):
      raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
    if self.masks is not None and (self.masks.dtype != np.bool_
                                   or self.masks.shape != self.images.shape[:3]):
      raise DataError(f"masks must be bool {self.images.shape[:3]}, got {self.masks.dtype} "
                      f"{self.masks.shape}")

  def __len__(self):
    return len(self.labels)

  def take(self, index: np.ndarray) -> "ArraySplit":
    masks = None if self.masks is None else self.masks[index]
    return ArraySplit(self.images[index], self.labels[index], masks)


@dataclasses.dataclass(frozen=True)
class SourceData:
  train: ArraySplit
  test: ArraySplit
  class_names: tuple[str, ...]


def resize_nearest(images: np.ndarray, size: int) -> np.ndarray:
  """[N,h,w,C] -> [N,size,size,C] by nearest-neighbour index mapping (exact for integer scales)."""
  n, h, w, c = images.shape
  rows = (np.arange(size) * h) // size
  cols = (np.arange(size) * w) // size
  return images[:, rows][:, :, cols]


def load_digits(image_size: int = 32, test_fraction: float = 0.3, seed: int = 0) -> SourceData:
  """scikit-learn's 1,797 8x8 digits (16 grey levels), split train/test per class.

  sklearn ships no train/test split: a seeded stratified split is used so every class
  keeps `test_fraction` of its images for testing. Images are scaled to 0..255 and
  upscaled to `image_size` so the same backbones as MNIST apply.
  """
  from sklearn.datasets import load_digits as sk_load_digits
  d = sk_load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  if image_size % 8:
    raise DataError(f"digits image_size must be a multiple of 8, got {image_size}")
  images = resize_nearest(images, image_size)
  labels = d.target.astype(np.int64)
  rng = np.random.default_rng(seed)
  test_idx = []
  for c in range(10):
    idx = np.flatnonzero(labels == c)
    test_idx.append(rng.permutation(idx)[: int(round(test_fraction * len(idx)))])
  is_test = np.zeros(len(labels), bool)
  is_test[np.concatenate(test_idx)] = True
  return SourceData(
      train=ArraySplit(images[~is_test], labels[~is_test]),
      test=ArraySplit(images[is_test], labels[is_test]),
      class_names=tuple(str(i) for i in range(10)))


_TFDS_NAMES = {"mnist": "mnist", "svhn": "svhn_cropped", "cifar10": "cifar10",
               "cifar100": "cifar100"}
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_SPLITS = ("train", "test")


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """[N,h,w,C] uint8 -> [N,size,size,C] with Pillow's bilinear filter.

  Pillow, not a NumPy formula, so the pixels are those of torchvision's
  Resize((size, size)) on PIL images (ARPL's transform), rounding included.
  """
  from PIL import Image
  n, _, _, c = images.shape
  out = np.empty((n, size, size, c), np.uint8)
  bilinear = Image.Resampling.BILINEAR
  for i, image in enumerate(images):
    if c == 3:
      out[i] = np.asarray(Image.fromarray(image).resize((size, size), bilinear))
    else:
      for k in range(c):
        out[i, ..., k] = np.asarray(Image.fromarray(image[..., k]).resize((size, size), bilinear))
  return out


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """[N,H,W,C] uint8 -> [N,H,W,channels]: grey -> RGB by repetition, RGB -> grey by luma."""
  c = images.shape[-1]
  if channels not in (1, 3):
    raise DataError(f"channels must be 1 or 3, got {channels}")
  if c == channels:
    return images
  if c == 1:
    return np.repeat(images, 3, axis=-1)
  if c == 3:
    # Pillow's convert("L") in fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    rgb = images.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]
  raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def conform(images: np.ndarray, image_size: int | None, channels: int | None) -> np.ndarray:
  """[N,h,w,c] -> [N,image_size,image_size,channels]; None keeps that property as it is."""
  if image_size is not None and images.shape[1:3] != (image_size, image_size):
    images = resize_bilinear(images, image_size)
  if channels is not None:
    images = to_channels(images, channels)
  return images


def _subsample(n: int, max_per_split: int | None) -> np.ndarray:
  """Evenly spaced indices (so every class of a class-sorted file is kept) for small tests."""
  if max_per_split is None or max_per_split >= n:
    return np.arange(n)
  return np.arange(max_per_split) * n // max_per_split


def _decode_pillow(blob: bytes) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(blob)) as image:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _decode_tf(blobs: Sequence[bytes]) -> np.ndarray | None:
  """All images with tf.data on every core; None when they differ in size or are not JPEG.

  INTEGER_ACCURATE is the DCT libjpeg (and so Pillow) uses by default: the two decoders
  give the same pixels, so the choice of decoder never changes the data.
  """
  import tensorflow as tf

  def decode(blob):
    return tf.io.decode_jpeg(blob, channels=3, dct_method="INTEGER_ACCURATE")

  ds = tf.data.Dataset.from_tensor_slices(list(blobs))
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(4096)
  try:
    return np.concatenate(list(ds.as_numpy_iterator()))
  except tf.errors.OpError:
    return None


def decode_images(blobs: Sequence[bytes], size: int | None = None,
                  decoder: str = "auto") -> np.ndarray:
  """Encoded images (JPEG, PNG) -> uint8 [N,H,W,3].

  size: resize every image that is not size x size (bilinear, as `resize_bilinear`);
    None requires all images to share one shape.
  decoder: 'pillow', 'tf' (tf.data, JPEG only, falls back to Pillow), or 'auto': tf only
    when TensorFlow is already imported, because importing it just to decode is slow and
    can claim accelerator memory.
  """
  if decoder not in ("auto", "pillow", "tf"):
    raise DataError(f"decoder must be auto, pillow or tf, got {decoder!r}")
  if not blobs:
    raise DataError("no images to decode")
  if decoder == "tf" or (decoder == "auto" and sys.modules.get("tensorflow") is not None):
    try:
      images = _decode_tf(blobs)
    except ImportError:
      images = None
    if images is not None:
      return conform(images, size, None)

  def decode(i):
    try:
      return _decode_pillow(blobs[i])
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
      raise UndecodableImage(i, e) from None

  first = decode(0)
  shape = (size, size, 3) if size is not None else first.shape
  out = np.empty((len(blobs),) + shape, np.uint8)
  for i in range(len(blobs)):
    image = first if i == 0 else decode(i)
    if image.shape != shape:
      if size is None:
        raise DataError(f"images differ in size ({image.shape} vs {shape}): pass an image_size")
      image = resize_bilinear(image[None], size)[0]
    out[i] = image
  return out


def _class_names(names, labels: Sequence[np.ndarray]) -> tuple[str, ...]:
  if names is not None:
    return tuple(str(x) for x in names)
  return tuple(str(i) for i in range(int(max(l.max() for l in labels)) + 1))


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


def _read_npz(path: str, splits: Sequence[str], max_per_split: int | None,
              image_size: int | None, decoder: str):
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
    for split in splits:
      labels_key = f"{split}_labels"
      if labels_key not in data.files:
        raise DataError(f"{path} has no {labels_key!r} (keys: {', '.join(data.files)})")
      labels = check_labels(_npz_array(data, labels_key, path), f"{path}: {labels_key}",
                            None if names is None else len(names))
      keep = _subsample(len(labels), max_per_split)
      if f"{split}_jpeg" in data.files:
        buf = _npz_array(data, f"{split}_jpeg", path)
        offsets = _npz_array(data, f"{split}_offsets", path)
        if len(offsets) != len(labels) + 1:
          raise DataError(f"{path}: {len(offsets)} {split} offsets for {len(labels)} labels "
                          "(image i is buf[off[i]:off[i+1]])")
        raw = buf.tobytes()
        blobs = [raw[offsets[i]:offsets[i + 1]] for i in keep]
        try:
          images = decode_images(blobs, image_size, decoder)
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
        images = images[..., None] if images.ndim == 3 else images
      else:
        raise DataError(f"{path} has neither {split}_jpeg nor {split}_images "
                        f"(keys: {', '.join(data.files)})")
      out[split] = ArraySplit(images, labels[keep])
  return out, _class_names(names, [s.labels for s in out.values()])


def _read_tfds(name: str, splits: Sequence[str], data_dir: str | None, download: bool):
  """Whole splits of a prepared TFDS dataset, read in batches into arrays."""
  name = _TFDS_NAMES.get(name, name)
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DataError(f"tfds:{name} needs tensorflow-datasets, which cannot be imported ({e}); "
                    "use an npz: or folder: source instead") from None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # tfds raises its own DatasetNotFoundError and registry errors
    raise DataError(f"tfds cannot build dataset {name!r}: {e}") from None
  if download:
    builder.download_and_prepare()
  out = {}
  for split in splits:
    try:
      # batch_size=-1 would size the batch from the split metadata; fixed batches need none.
      ds = builder.as_dataset(split=split, as_supervised=True, batch_size=10_000,
                              shuffle_files=False)
    except AssertionError:
      where = data_dir or "the default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
      raise DataError(f"tfds dataset {name!r} is not prepared under {where}; prepare it once "
                      f"where there is internet (`tfds build {name} --data_dir=DIR`, then copy "
                      "DIR or point data.data_dir at it or at a gs:// copy), or from Python call "
                      "sources.load_source(..., download=True)") from None
    parts = list(tfds.as_numpy(ds))
    if not parts:
      raise DataError(f"tfds dataset {name!r} split {split!r} is empty")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    out[split] = ArraySplit(images.astype(np.uint8, copy=False), labels)
  feature = builder.info.features["label"]
  names = feature.names if getattr(feature, "names", None) else None
  return out, _class_names(names, [s.labels for s in out.values()])


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_folder(path: str, splits: Sequence[str], max_per_split: int | None,
                 image_size: int | None, decoder: str):
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
  for split in splits:
    if split == "train":
      files = [(class_id[w], f) for w in wnids for f in _image_files(train_dir / w)]
    elif split == "test":
      files = _val_files(root / "val", class_id)
    else:
      raise DataError(f"folder source has splits train and test (= val/), not {split!r}")
    if not files:
      raise DataError(f"folder source {path!r}: no images found for split {split!r}")
    files = [files[i] for i in _subsample(len(files), max_per_split)]
    try:
      images = decode_images([f.read_bytes() for _, f in files], image_size, decoder)
    except UndecodableImage as e:
      raise DataError(f"{files[e.index][1]} cannot be decoded ({e.reason})") from None
    out[split] = ArraySplit(images, np.array([c for c, _ in files], np.int64))
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
  return [(class_id[w], f) for w in folders for f in _image_files(val_dir / w)]


def _read(spec: str, splits: Sequence[str], *, data_dir: str | None, image_size: int | None,
          channels: int | None, download: bool, max_per_split: int | None, decoder: str):
  """Spec -> ({split: ArraySplit}, class_names), conformed to image_size and channels."""
  kind, sep, arg = spec.partition(":")
  if not sep and kind in _TFDS_NAMES:
    kind, arg = "tfds", kind
  if kind == "digits" and not sep:
    d = load_digits(image_size=8 if image_size is None else image_size)
    out, names = {"train": d.train, "test": d.test}, d.class_names
  elif kind == "tfds" and arg:
    out, names = _read_tfds(arg, splits, data_dir, download)
  elif kind == "npz" and arg:
    out, names = _read_npz(arg, splits, max_per_split, image_size, decoder)
  elif kind == "folder" and arg:
    out, names = _read_folder(arg, splits, max_per_split, image_size, decoder)
  else:
    raise DataError(f"unknown data source {spec!r}; known: digits, npz:<path>, tfds:<name>, "
                    f"folder:<path>, {', '.join(_TFDS_NAMES)}")
  result = {}
  for split in splits:
    if split not in out:
      raise DataError(f"source {spec!r} has splits {', '.join(out)}, not {split!r}")
    s = out[split]
    s = s.take(_subsample(len(s), max_per_split)) if kind in ("digits", "tfds") else s
    result[split] = ArraySplit(conform(s.images, image_size, channels), s.labels)
  return result, names


def load_source(spec: str, *, data_dir: str | None = None, image_size: int | None = 32,
                channels: int | None = None, download: bool = False,
                max_per_split: int | None = None, decoder: str = "auto") -> SourceData:
  """Read the train and test splits of a source spec (see the module docstring).

  data_dir: TFDS data directory (local or gs://) for tfds specs.
  image_size: output side in pixels (None keeps the source's; TinyImageNet wants 64).
  channels: 1 or 3 (None keeps the source's: MNIST 1, the rest 3).
  download: let TFDS download and prepare a missing dataset (never done otherwise).
  max_per_split: keep only this many evenly spaced samples per split (quick tests).
  decoder: JPEG decoder for npz/folder sources, see `decode_images`.
  """
  out, names = _read(spec, _SPLITS, data_dir=data_dir, image_size=image_size,
                     channels=channels, download=download, max_per_split=max_per_split,
                     decoder=decoder)
  return SourceData(train=out["train"], test=out["test"], class_names=names)


def load_unknown_source(spec: str, *, data_dir: str | None = None,
                        image_size: int | None = 32, channels: int | None = None,
                        download: bool = False, max_per_split: int | None = None,
                        decoder: str = "auto", split: str = "test") -> ArraySplit:
  """One split (the test split by default) of a second source whose images are unknowns.

  E.g. 'cifar100' (CIFAR+N, OOD) or 'svhn' (OOD) with the same options as `load_source`,
  so the images match the known dataset's size and channels. Labels stay the source's own
  class ids: `openset.make_open_set` keeps the listed unknown classes and relabels them -1.
  """
  out, _ = _read(spec, (split,), data_dir=data_dir, image_size=image_size, channels=channels,
                 download=download, max_per_split=max_per_split, decoder=decoder)
  return out[split]
