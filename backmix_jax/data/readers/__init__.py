"""Readers: one module per kind of source spec, each with one `Reader` entry.

A spec is `<kind>:<argument>` (npz:<path>, tfds:<name>, folder:<path>) or a bare kind
(digits). `sources.READERS` keys the entries by kind; a new kind of source is one module
here with its `READER` plus one line there. Every reader returns the splits asked for as
uint8 `ArraySplit`s at most `max_per_split` long (evenly spaced), not yet conformed to the
requested side and channels (`sources` does that for all of them), and the class names.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Sequence

import numpy as np

from backmix_jax.data.core import ArraySplit, DataError, UndecodableImage, evenly_spaced
from backmix_jax.data.images import decode_images


@dataclasses.dataclass(frozen=True)
class ReadRequest:
  """What the caller asks of a source (the options of `sources.load_source`).

  splits: split names wanted ('train', 'test'). data_dir: TFDS data directory.
  image_size: side decoders may resize to while decoding (None: keep). download: let TFDS
  prepare a missing dataset. max_per_split: evenly spaced samples kept per split (None:
  all). decoder: JPEG decoder, see `images.decode_images`. cache_dir: where a remote
  arrayrecord directory is staged (data/staging.py; '' = its default).
  """
  splits: tuple[str, ...]
  data_dir: str | None = None
  image_size: int | None = None
  download: bool = False
  max_per_split: int | None = None
  decoder: str = "auto"
  cache_dir: str = ""


Read = Callable[[str, ReadRequest], tuple[dict[str, ArraySplit], tuple[str, ...]]]


@dataclasses.dataclass(frozen=True)
class Reader:
  """One kind of source spec.

  kind: the spec's prefix ('npz' in npz:<path>), or the whole spec when `argument` is ''.
  argument: what follows 'kind:' in messages ('<path>', '<name>'); '' for a bare spec.
  read: (argument, request) -> ({split: ArraySplit}, class_names).
  """
  kind: str
  argument: str
  read: Read

  @property
  def usage(self) -> str:
    """How the spec is written, e.g. 'npz:<path>' or 'digits'."""
    return f"{self.kind}:{self.argument}" if self.argument else self.kind


def class_names(names, labels: Sequence[np.ndarray]) -> tuple[str, ...]:
  """The source's names as strings, or '0'..'n-1' for the largest label n-1 seen."""
  if names is not None:
    return tuple(str(x) for x in names)
  # An empty split has no largest label: the empty split itself is reported by sources._read.
  return tuple(str(i) for i in range(int(max((l.max() for l in labels if len(l)),
                                             default=-1)) + 1))


def decode_files(files: Sequence[tuple[int, pathlib.Path]], request: ReadRequest,
                 what: str, crop: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> ArraySplit:
  """(class id, image file) pairs -> ArraySplit uint8 [n,H,W,3] + int64 [n] of at most
  `request.max_per_split` evenly spaced pairs, decoded at `request.image_size`.

  what: the split, for messages. crop: instead of the square resize, each image decoded at
  its own size and passed through crop ([h,w,3] -> [S,S,3], e.g. ImageNet's shorter-side
  resize and centre crop). A missing or undecodable file is one DataError naming it, so a
  half-copied dataset fails at once with the file to look at.
  """
  if not files:
    raise DataError(f"no images found for {what}")
  files = [files[i] for i in evenly_spaced(len(files), request.max_per_split)]
  try:
    blobs = [f.read_bytes() for _, f in files]
  except OSError as e:
    raise DataError(f"{what}: {e.filename} cannot be read ({type(e).__name__})") from None
  try:
    images = (decode_images(blobs, request.image_size, request.decoder) if crop is None else
              np.stack([crop(_decode_one(blob, i, request.decoder))
                        for i, blob in enumerate(blobs)]))
  except UndecodableImage as e:
    raise DataError(f"{files[e.index][1]} cannot be decoded ({e.reason})") from None
  return ArraySplit(images, np.array([c for c, _ in files], np.int64))


def _decode_one(blob: bytes, index: int, decoder: str) -> np.ndarray:
  """One encoded image at its own size, uint8 [h,w,3]; UndecodableImage carries `index`."""
  try:
    return decode_images([blob], None, decoder)[0]
  except UndecodableImage as e:
    e.index = index  # its position in the caller's list, not in this one-image list
    raise


def existing_dir(path: pathlib.Path, kind: str, layout: str) -> pathlib.Path:
  """`path` when it is a directory, else one DataError naming the path a `kind:` source
  expects and the layout it should hold."""
  if not path.is_dir():
    raise DataError(f"{kind} source: no directory {str(path)!r} (expected {layout})")
  return path


def read_lines(path: pathlib.Path, kind: str) -> list[list[str]]:
  """The non-empty lines of a dataset's list file, split at whitespace; a missing file is
  one DataError naming it."""
  if not path.is_file():
    raise DataError(f"{kind} source: no file {str(path)!r}")
  return [line.split() for line in path.read_text().splitlines() if line.strip()]
