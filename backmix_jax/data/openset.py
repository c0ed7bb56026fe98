"""The open-set split: known classes renumbered 0..K-1 in list order, unknowns kept for
testing; `load_open_set` builds it for one benchmark trial from a config (source + split +
unknowns). Its types (OpenSetData, Condition) and the class-list check are in data/core.py.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from backmix_jax.data import composite, sources, splits
from backmix_jax.data.core import ArraySplit, DataError, OpenSetData, check_classes


def relabel(split: ArraySplit, classes: Sequence[int]) -> ArraySplit:
  """Keep samples whose label is in `classes`; new label = position in `classes`."""
  lut = np.full(max(int(split.labels.max()), max(classes)) + 1, -1, np.int64)
  lut[np.asarray(classes)] = np.arange(len(classes))
  new = lut[split.labels]
  keep = new >= 0
  return ArraySplit(split.images[keep], new[keep],
                    None if split.masks is None else split.masks[keep])


def make_open_set(train: ArraySplit, test: ArraySplit, known: Sequence[int],
                  unknown: Sequence[int] | None = None, num_source_classes: int | None = None,
                  unknown_test: ArraySplit | None = None,
                  unknown_groups: Sequence[tuple[str, Sequence[int]]] = ()) -> OpenSetData:
  """Split a closed-set dataset into the open-set protocol.

  unknown=None means every class not in `known`. `unknown_test` (e.g. CIFAR-100 test for
  CIFAR+N, or SVHN for the OOD benchmark) replaces unknowns drawn from `test`; its
  samples are filtered by `unknown` when given. unknown_groups: (name, class ids) subsets
  of the unknowns to score apart (`OpenSetData.unknown_groups` holds their indices); a
  group without test images is a DataError naming it.
  """
  _check_not_empty(("training", train), ("test", test), what="images in the source's")
  if num_source_classes is None:
    num_source_classes = int(max(train.labels.max(), test.labels.max())) + 1
  check_classes(known, unknown if unknown_test is None else None, num_source_classes)
  known = tuple(int(c) for c in known)
  if unknown_test is None:
    unknown_pool = test
    unknown = [c for c in range(num_source_classes) if c not in known] if unknown is None else list(unknown)
  else:
    unknown_pool = unknown_test
  if unknown is None:
    unk = unknown_pool
  else:
    unk = unknown_pool.take(np.isin(unknown_pool.labels, np.asarray(unknown)))
  if not len(unk):  # fail before training, not at the evaluation after it
    raise DataError(f"no unknown test samples: with known classes {list(known)} "
                    + ("the unknown set is empty" if unknown_test is not None else
                       f"the unknown classes {list(unknown)} have no test images" if unknown
                       else "every class of the source is known")
                    + "; an open-set split needs at least one unknown test sample")
  groups = tuple(_group_indices(unk.labels, unknown_groups))
  unk = ArraySplit(unk.images, np.full(len(unk), -1, np.int64))
  data = OpenSetData(train=relabel(train, known), test_known=relabel(test, known),
                     test_unknown=unk, known_classes=known, unknown_groups=groups)
  _check_not_empty(("training", data.train), ("test", data.test_known),
                   what=f"images of the known classes {list(known)} in the")
  return data


def _group_indices(labels: np.ndarray, groups: Sequence[tuple[str, Sequence[int]]]):
  """(name, int64 [n] positions in `labels` of the group's classes) per group; a group
  with no test image means the folder lacks a whole difficulty: fail before training."""
  for name, classes in groups:
    index = np.flatnonzero(np.isin(labels, np.asarray(classes)))
    if not len(index):
      raise DataError(f"no test images of the unknown group {name!r} (classes "
                      f"{list(classes)[:5]}...): the source lacks these classes")
    yield name, index


def _check_not_empty(*named_splits, what: str):
  """DataError naming the first empty split of (name, ArraySplit) pairs: an empty training
  or test split fails here, before training, in one line (not in a reduction further on).
  The empty unknown test set has its own message above."""
  for name, split in named_splits:
    if not len(split):
      raise DataError(f"no {what} {name} split; an open-set run needs known images to "
                      "train on and known test images to score")


def load_open_set(config) -> OpenSetData:
  """config.dataset/protocol/trial pick the class lists (config.known_classes overrides);
  config.data.source says where the images are, config.data.unknown_source (optional)
  where the unknowns of CIFAR+N / OOD come from instead of the split's default.
  data.source='composite' composes the fore-/background diagnostic from data.composite
  (see data/composite/), with the same class split."""
  d = config.data
  # Resolve the split first: a bad protocol/trial fails before any image is read.
  split = None if config.known_classes else splits.get_split(config.dataset, config.protocol,
                                                             config.trial)
  if d.source == "composite":
    return composite.load_open_set(config, split)
  kwargs = dict(data_dir=d.data_dir or None, image_size=d.image_size,
                cache_dir=d.get("cache_dir", ""))
  if d.get("channels"):
    kwargs["channels"] = d.channels
  src = sources.load_source(d.source, **kwargs)
  if split is None:  # a custom split: every other class of the source is unknown
    return make_open_set(src.train, src.test, tuple(config.known_classes),
                         num_source_classes=len(src.class_names))
  unknown_test = None
  if split.unknown_source:
    spec = d.get("unknown_source") or split.unknown_source
    unknown_test = sources.load_unknown_source(spec, **kwargs)
  return make_open_set(src.train, src.test, split.known, split.unknown,
                       num_source_classes=len(src.class_names), unknown_test=unknown_test,
                       unknown_groups=split.unknown_groups)
