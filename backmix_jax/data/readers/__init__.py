"""Readers: one module per kind of source spec, each with one `Reader` entry.

A spec is `<kind>:<argument>` (npz:<path>, tfds:<name>, folder:<path>) or a bare kind
(digits). `sources.READERS` keys the entries by kind; a new kind of source is one module
here with its `READER` plus one line there. Every reader returns the splits asked for as
uint8 `ArraySplit`s at most `max_per_split` long (evenly spaced), not yet conformed to the
requested side and channels (`sources` does that for all of them), and the class names.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from backmix_jax.data.core import ArraySplit


@dataclasses.dataclass(frozen=True)
class ReadRequest:
  """What the caller asks of a source (the options of `sources.load_source`).

  splits: split names wanted ('train', 'test'). data_dir: TFDS data directory.
  image_size: side decoders may resize to while decoding (None: keep). download: let TFDS
  prepare a missing dataset. max_per_split: evenly spaced samples kept per split (None:
  all). decoder: JPEG decoder, see `images.decode_images`.
  """
  splits: tuple[str, ...]
  data_dir: str | None = None
  image_size: int | None = None
  download: bool = False
  max_per_split: int | None = None
  decoder: str = "auto"


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
