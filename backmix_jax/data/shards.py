"""Prepared shards: a dataset written once as ArrayRecord files, read at random by position.

A prepared directory holds, for each split ('train', 'test'):

  <split>-00000-of-000NN.array_record   records of that split, in the source's order
  <split>_labels.npy                    int64 [N]: the source class id of every record
and one `manifest.json`: the source spec, image side and channels, class names, whether
records carry true-foreground masks, per split the count, the images per class and every
shard's file name, record count, size in bytes and SHA-256, and one checksum over all
shards (the SHA-256 of their digests in order).

One record is one image: a 24-byte little-endian header (label int64, index int64, image
length uint32, mask length uint32), the image as PNG (lossless, so a decoded record is the
exact uint8 array that was written), then the mask as np.packbits of bool [H, W] (empty
when there is none). `index` is the image's position in the source's split, so a prepared
subset (only some classes) still names each image's source row.

Opening a split checks the shards against the manifest (present, sizes, record counts); a
record that cannot be decoded raises `UndecodableImage` naming the shard's position: a
damaged image stops the run, it is never skipped silently.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import struct
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from backmix_jax.data.core import ArraySplit, DataError, UndecodableImage

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<qqII")


def encode_record(image: np.ndarray, label: int, index: int,
                  mask: np.ndarray | None = None) -> bytes:
  """uint8 [H, W, C] (C 1 or 3), class id, source row, optional bool [H, W] -> record bytes."""
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
  png = buf.getvalue()
  packed = b"" if mask is None else np.packbits(mask.astype(bool)).tobytes()
  return _HEADER.pack(int(label), int(index), len(png), len(packed)) + png + packed


def decode_record(record: bytes) -> dict:
  """Record bytes -> image uint8 [H, W, C], label int, index int, mask bool [H, W] or None.
  Raises ValueError / OSError on damaged bytes (callers name the record)."""
  from PIL import Image
  label, index, n_image, n_mask = _HEADER.unpack_from(record)
  body = memoryview(record)[_HEADER.size:]
  if len(body) != n_image + n_mask:
    raise ValueError(f"record holds {len(body)} bytes after its header, not {n_image + n_mask}")
  with Image.open(io.BytesIO(body[:n_image])) as im:
    image = np.asarray(im)
  if image.ndim == 2:
    image = image[..., None]
  mask = None
  if n_mask:
    h, w = image.shape[:2]
    mask = np.unpackbits(np.frombuffer(body[n_image:], np.uint8), count=h * w).reshape(h, w)
    mask = mask.astype(bool)
  return dict(image=image, label=label, index=index, mask=mask)


def file_sha256(path: str) -> str:
  """The SHA-256 of a file's bytes, in hex (the manifest's per-shard checksum)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def write_split(out: str, name: str, examples: Iterable[tuple], count: int,
                records_per_shard: int, progress: Callable[[str], None] = lambda s: None) -> dict:
  """Write `count` examples (image uint8 [H, W, C], source label, source index, mask bool
  [H, W] or None), taken one at a time from `examples`, as the shards of split `name` in
  `out`, and `<name>_labels.npy`; returns the split's manifest entry. Holds one example at a
  time, so a set larger than memory can be written from a generator."""
  from array_record.python import array_record_module  # optional: only prepared data needs it
  num_shards = max(1, -(-count // records_per_shard))
  examples = iter(examples)
  labels = np.empty(count, np.int64)
  files = []
  for s in range(num_shards):
    n = min(records_per_shard, count - s * records_per_shard)
    file = f"{name}-{s:05d}-of-{num_shards:05d}.array_record"
    path = os.path.join(out, file)
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for k in range(s * records_per_shard, s * records_per_shard + n):
      image, label, index, mask = next(examples)
      labels[k] = label
      writer.write(encode_record(image, label, index, mask))
    writer.close()
    files.append(dict(file=file, records=n, bytes=os.path.getsize(path),
                      sha256=file_sha256(path)))
    progress(f"{name}: shard {s + 1}/{num_shards} ({n} images, "
             f"{files[-1]['bytes'] / 1e6:.1f} MB)")
  np.save(os.path.join(out, f"{name}_labels.npy"), labels)
  classes, counts = np.unique(labels, return_counts=True)
  return dict(count=count, counts_per_class={str(int(c)): int(k) for c, k in zip(classes, counts)},
              shards=files)


def split_examples(split: ArraySplit, rows: np.ndarray) -> Iterator[tuple]:
  """The examples of rows `rows` of an in-memory split, for `write_split`."""
  for r in rows:
    yield (split.images[r], split.labels[r], r, None if split.masks is None else split.masks[r])


def checksum(splits: dict) -> str:
  """SHA-256 over every shard's digest, splits in name order, shards in order."""
  digest = hashlib.sha256()
  for name in sorted(splits):
    for shard in splits[name]["shards"]:
      digest.update(shard["sha256"].encode())
  return digest.hexdigest()


def write_prepared(out: str, splits: dict, *, source: str, image_shape, class_names,
                   known_classes=None, masks: bool = False, records_per_shard: int = 10_000,
                   progress: Callable[[str], None] = lambda s: None) -> dict:
  """Write a prepared directory: `splits` maps a split name to (examples, count) as
  `write_split` takes them; the manifest is written last (a directory without one is an
  unfinished write, which readers refuse). Returns the manifest."""
  os.makedirs(out, exist_ok=True)
  entries = {name: write_split(out, name, examples, count, records_per_shard, progress)
             for name, (examples, count) in splits.items()}
  manifest = dict(version=FORMAT_VERSION, source=source, image_size=int(image_shape[0]),
                  channels=int(image_shape[2]), class_names=[str(c) for c in class_names],
                  masks=bool(masks), image_format="png",
                  known_classes=None if known_classes is None else list(known_classes),
                  splits=entries, checksum=checksum(entries))
  with open(os.path.join(out, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def read_manifest(directory: str) -> dict:
  """The manifest of a prepared directory, or DataError in one line."""
  path = os.path.join(directory, MANIFEST)
  try:
    with open(path, "rb") as f:
      text = f.read()
  except FileNotFoundError:
    raise DataError(f"arrayrecord source: no {MANIFEST} in {directory!r}; write the directory "
                    "with python -m experiments.prepare") from None
  except OSError as e:
    raise DataError(f"arrayrecord source: {path} cannot be read ({e})") from None
  return parse_manifest(text, path)


def parse_manifest(text: bytes | str, path: str) -> dict:
  """The manifest in `text` (the contents of `path`, named in messages), or DataError in one
  line when it is not JSON or of another format version."""
  try:
    manifest = json.loads(text)
  except ValueError as e:
    raise DataError(f"arrayrecord source: {path} cannot be read ({e})") from None
  version = manifest.get("version") if isinstance(manifest, dict) else None
  if version != FORMAT_VERSION:
    raise DataError(f"arrayrecord source: {path} is format version {version!r}, "
                    f"this version reads {FORMAT_VERSION}")
  return manifest


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
  """One split of a prepared directory, checked against its manifest.

  paths: the shard files in order; labels: int64 [N] source class ids of the records;
  masks: whether records carry masks; image_size, channels: as prepared.
  """
  paths: tuple[str, ...]
  labels: np.ndarray
  masks: bool
  image_size: int
  channels: int

  def __len__(self):
    return len(self.labels)


def open_split(directory: str, name: str) -> PreparedSplit:
  """The split `name` of a prepared directory. DataError in one line when the manifest lacks
  the split, a shard is missing, truncated or holds another number of records, or the labels
  file disagrees with the manifest."""
  from array_record.python import array_record_module  # optional: only prepared data needs it
  manifest = read_manifest(directory)
  entry = manifest["splits"].get(name)
  if entry is None:
    raise DataError(f"arrayrecord source {directory!r} has splits "
                    f"{', '.join(manifest['splits'])}, not {name!r}")
  paths = []
  for shard in entry["shards"]:
    path = os.path.join(directory, shard["file"])
    if not os.path.exists(path):
      raise DataError(f"arrayrecord source: shard {path} is missing")
    size = os.path.getsize(path)
    if size != shard["bytes"]:
      raise DataError(f"arrayrecord source: shard {path} is {size} bytes, the manifest says "
                      f"{shard['bytes']} (truncated or rewritten); prepare it again")
    try:
      reader = array_record_module.ArrayRecordReader(path)
      records = reader.num_records()
      reader.close()
    except Exception as e:  # the C++ reader raises RuntimeError/ValueError on damaged files
      raise DataError(f"arrayrecord source: shard {path} cannot be read ({e})") from None
    if records != shard["records"]:
      raise DataError(f"arrayrecord source: shard {path} holds {records} records, the manifest "
                      f"says {shard['records']}")
    paths.append(path)
  try:
    labels = np.load(os.path.join(directory, f"{name}_labels.npy"), allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"arrayrecord source: {name}_labels.npy in {directory!r} cannot be read "
                    f"({e})") from None
  if len(labels) != entry["count"] or sum(s["records"] for s in entry["shards"]) != entry["count"]:
    raise DataError(f"arrayrecord source: the {name!r} split of {directory!r} holds "
                    f"{len(labels)} labels for {entry['count']} images in the manifest")
  return PreparedSplit(tuple(paths), labels.astype(np.int64), bool(manifest["masks"]),
                       int(manifest["image_size"]), int(manifest["channels"]))


def read_records(source, positions: Sequence[int]) -> list[dict]:
  """Decoded records at `positions` of an open random-access `source` over split.paths.
  A record that cannot be decoded raises UndecodableImage naming its position."""
  out = []
  for position, record in zip(positions, source.__getitems__(list(positions))):
    try:
      out.append(decode_record(record))
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, ...; struct: error
      raise UndecodableImage(int(position), e) from None
  return out


def data_source(paths: Sequence[str]):
  """A random-access source over the records of shard files `paths` in order (array_record's
  own, which Grain's ArrayRecordDataSource is)."""
  from array_record.python import array_record_data_source  # optional, see above
  return array_record_data_source.ArrayRecordDataSource(list(paths))


def load_split(directory: str, name: str, rows: np.ndarray | None = None) -> ArraySplit:
  """Records `rows` (all when None) of a prepared split, decoded into memory: uint8
  [n, H, W, C] images, int64 source labels, masks when the records carry them."""
  split = open_split(directory, name)
  rows = np.arange(len(split)) if rows is None else np.asarray(rows)
  source = data_source(split.paths)
  records = read_records(source, rows) if len(rows) else []
  images = np.stack([r["image"] for r in records]) if records else \
      np.zeros((0, split.image_size, split.image_size, split.channels), np.uint8)
  masks = np.stack([r["mask"] for r in records]) if split.masks and records else None
  return ArraySplit(images, split.labels[rows], masks)
