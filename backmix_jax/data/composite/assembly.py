"""The fore-/background diagnostic assembled from its sources: the training set and the five
test conditions of a `CompositeSpec` (`build`), and the `OpenSetData` of a composite config
(`load_open_set`)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from backmix_jax.data.composite.spec import (CONDITIONS, KNOWN_CONDITIONS, NUM_TEXTURE_CLASSES,
                                             TEXTURES, UNKNOWN_CONDITIONS, CompositeSpec)
from backmix_jax.data.composite.synthesis import compose, prepare_glyphs, render_textures
from backmix_jax.data.core import (ArraySplit, Condition, DataError, OpenSetData, check_classes,
                                   evenly_spaced)
from backmix_jax.data.images import to_channels
from backmix_jax.data.sources import load_source, load_unknown_source

# One generator per part, so e.g. a smaller test cap never changes the training images.
_STREAMS = {"train": 0, "known_test": 1, "unknown_test": 2}


@dataclasses.dataclass(frozen=True)
class Composed:
  """Composed images with where they came from.

  split: images uint8 [N,S,S,C], labels int64 [N] (0..K-1, or -1 for unknown digits),
    masks bool [N,S,S] (the true foreground).
  fg_classes: int64 [N], the digit's class id in the foreground source.
  bg_classes: int64 [N], the background's class id in the background source.
  """
  split: ArraySplit
  fg_classes: np.ndarray
  bg_classes: np.ndarray

  def __len__(self):
    return len(self.split)


@dataclasses.dataclass(frozen=True)
class Diagnostic:
  """The whole benchmark: training set, the five test conditions and the class pairing."""
  train: Composed
  conditions: dict[str, Composed]
  known_classes: tuple[int, ...]
  unknown_classes: tuple[int, ...]
  bg_known: tuple[int, ...]
  bg_unknown: tuple[int, ...]

  def open_set(self) -> OpenSetData:
    """test_known = known_correlated; test_unknown = the two unknown conditions, concatenated."""
    c = self.conditions
    unk = [c[name].split for name in UNKNOWN_CONDITIONS]
    test_unknown = ArraySplit(np.concatenate([s.images for s in unk]),
                              np.concatenate([s.labels for s in unk]),
                              np.concatenate([s.masks for s in unk]))
    return OpenSetData(
        train=self.train.split, test_known=c["known_correlated"].split,
        test_unknown=test_unknown, known_classes=self.known_classes,
        conditions=tuple(Condition(name, name in KNOWN_CONDITIONS, c[name].split)
                         for name in CONDITIONS))


class _Backgrounds:
  """Background images of requested classes from one split: generated or drawn from a pool."""

  def __init__(self, size: int, pool: ArraySplit | None, split: str):
    self.size, self.pool, self.split = size, pool, split
    if pool is not None:
      self.order = np.argsort(pool.labels, kind="stable")
      self.counts = np.bincount(pool.labels, minlength=pool.labels.max() + 1)
      self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

  def draw(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int [N] background classes -> uint8 [N,S,S,3], each drawn uniformly within its class."""
    if self.pool is None:
      return render_textures(classes, self.size, rng)
    counts = np.concatenate([self.counts, [0]])[np.minimum(classes, len(self.counts))]
    if len(classes) and counts.min() == 0:
      missing = sorted(set(classes[counts == 0].tolist()))
      raise DataError(f"background classes {missing} have no images in the {self.split} split")
    pick = (rng.random(len(classes)) * counts).astype(np.int64)
    return self.pool.images[self.order[self.starts[classes] + pick]]


def _load_backgrounds(spec: CompositeSpec, size: int, data_dir: str | None):
  """(train _Backgrounds, test _Backgrounds, number of background classes)."""
  if spec.background == TEXTURES:
    return (_Backgrounds(size, None, "train"), _Backgrounds(size, None, "test"),
            NUM_TEXTURE_CLASSES)
  # One split at a time, each decoded once and at most bg_per_split images.
  pools = [load_unknown_source(spec.background, data_dir=data_dir, image_size=size,
                               channels=3, max_per_split=spec.bg_per_split or None,
                               split=split) for split in ("train", "test")]
  n_bg = int(max(p.labels.max() for p in pools)) + 1
  return _Backgrounds(size, pools[0], "train"), _Backgrounds(size, pools[1], "test"), n_bg


def _rng(seed: int, part: str) -> np.random.Generator:
  return np.random.default_rng([seed, _STREAMS[part]])


def _digits_of(labels: np.ndarray, classes: Sequence[int], rng: np.random.Generator,
               split: str) -> list[np.ndarray]:
  """Indices of each class's digits, each class in a seeded random order."""
  out = []
  for c in classes:
    idx = np.flatnonzero(labels == c)
    if not len(idx):
      raise DataError(f"the foreground source has no {split} digits of class {c}")
    out.append(rng.permutation(idx))
  return out


def _glyphs(images: np.ndarray, sel: np.ndarray, fg_size: int) -> np.ndarray:
  """uint8 [len(sel),f,f]: the prepared digit of every selected row (each resized once)."""
  uniq, inv = np.unique(sel, return_inverse=True)
  return prepare_glyphs(images[uniq], fg_size)[inv]


def _finish(glyphs: np.ndarray, labels: np.ndarray, fg_classes: np.ndarray,
            bg_classes: np.ndarray, rows: np.ndarray, cols: np.ndarray, bgs: _Backgrounds,
            rng: np.random.Generator, spec: CompositeSpec, channels: int) -> Composed:
  images, masks = compose(glyphs, bgs.draw(bg_classes, rng), rows, cols, spec.bg_dim)
  return Composed(ArraySplit(to_channels(images, channels), labels.astype(np.int64),
                             masks),
                  fg_classes.astype(np.int64), bg_classes.astype(np.int64))


def build(spec: CompositeSpec, known: Sequence[int], unknown: Sequence[int] | None = None, *,
          image_size: int = 32, channels: int = 3, data_dir: str | None = None) -> Diagnostic:
  """Compose the training set and the five test conditions (see the module docstring).

  known: foreground class ids in label order; unknown: the unknown digit classes (None =
  every other class of the foreground source). channels: 3, or 1 for grey (luma).
  Raises DataError (one sentence per problem) for an unusable spec or source.
  """
  known = tuple(int(c) for c in known)
  found = spec.problems(image_size, len(known))
  if found:
    raise DataError("invalid composite benchmark: " + "; ".join(found))
  fg = load_source(spec.foreground, data_dir=data_dir, image_size=None, channels=1)
  n_fg = len(fg.class_names)
  check_classes(known, unknown, n_fg)
  unknown = (tuple(c for c in range(n_fg) if c not in known) if unknown is None
             else tuple(int(c) for c in unknown))
  if not unknown:
    raise DataError("the composite benchmark needs at least one unknown digit class")
  train_bgs, test_bgs, n_bg = _load_backgrounds(spec, image_size, data_dir)
  k = len(known)
  bg_known = spec.bg_known or tuple(range(k))
  if max(bg_known) >= n_bg or n_bg < k + 1:
    raise DataError(f"background {spec.background!r} has {n_bg} classes: {k} known classes "
                    f"need {k} paired backgrounds (ids {bg_known}) plus at least one unknown one")
  bg_unknown = tuple(c for c in range(n_bg) if c not in bg_known)
  bg_known_arr, bg_unknown_arr = np.asarray(bg_known), np.asarray(bg_unknown)
  span = image_size - spec.fg_size + 1

  # Training: class i's background is bg_known[i] with probability rho, else another known one.
  rng = _rng(spec.seed, "train")
  per_class = _digits_of(fg.train.labels, known, rng, "train")
  if spec.max_train_per_class:
    per_class = [idx[:spec.max_train_per_class] for idx in per_class]
  sel = np.repeat(np.concatenate(per_class), spec.copies)
  labels = np.repeat(np.concatenate([np.full(len(idx), i) for i, idx in enumerate(per_class)]),
                     spec.copies)
  n = len(sel)
  order = rng.permutation(n)  # shuffled, so any prefix (e.g. a probe set) mixes the classes
  sel, labels = sel[order], labels[order]
  paired = rng.random(n) < spec.rho
  other = (labels + rng.integers(1, k, n)) % k
  bg_cls = bg_known_arr[np.where(paired, labels, other)]
  rows, cols = rng.integers(0, span, (2, n))
  train = _finish(_glyphs(fg.train.images, sel, spec.fg_size), labels, fg.train.labels[sel],
                  bg_cls, rows, cols, train_bgs, rng, spec, channels)

  conditions = {}
  # Known test digits: one set of digits and positions, three kinds of background. Copies
  # are tiled within a class, so a cap keeps distinct digits before it repeats one.
  rng = _rng(spec.seed, "known_test")
  per_class = _digits_of(fg.test.labels, known, rng, "test")
  sel = np.concatenate([np.tile(idx, spec.test_copies) for idx in per_class])
  labels = np.concatenate([np.full(len(idx) * spec.test_copies, i)
                           for i, idx in enumerate(per_class)])
  keep = evenly_spaced(len(sel), spec.max_test_per_condition or None)
  keep = keep[rng.permutation(len(keep))]
  sel, labels = sel[keep], labels[keep]
  n = len(sel)
  rows, cols = rng.integers(0, span, (2, n))
  bg = {"known_correlated": bg_known_arr[labels],
        "known_swapped": bg_known_arr[(labels + rng.integers(1, k, n)) % k],
        "known_unrelated": bg_unknown_arr[rng.integers(0, len(bg_unknown), n)]}
  glyphs = _glyphs(fg.test.images, sel, spec.fg_size)
  for name in KNOWN_CONDITIONS:
    conditions[name] = _finish(glyphs, labels, fg.test.labels[sel], bg[name], rows, cols,
                               test_bgs, rng, spec, channels)

  # Unknown test digits on known and on unknown backgrounds.
  rng = _rng(spec.seed, "unknown_test")
  sel = np.concatenate([np.tile(idx, spec.test_copies)
                        for idx in _digits_of(fg.test.labels, unknown, rng, "test")])
  keep = evenly_spaced(len(sel), spec.max_test_per_condition or None)
  sel = sel[keep[rng.permutation(len(keep))]]
  n = len(sel)
  labels = np.full(n, -1)
  rows, cols = rng.integers(0, span, (2, n))
  bg = {"unknown_known_bg": bg_known_arr[rng.integers(0, k, n)],
        "unknown_unknown_bg": bg_unknown_arr[rng.integers(0, len(bg_unknown), n)]}
  glyphs = _glyphs(fg.test.images, sel, spec.fg_size)
  for name in UNKNOWN_CONDITIONS:
    conditions[name] = _finish(glyphs, labels, fg.test.labels[sel], bg[name], rows, cols,
                               test_bgs, rng, spec, channels)
  return Diagnostic(train, conditions, known, unknown, tuple(bg_known), bg_unknown)


def _classes(config, split) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
  if config.known_classes:
    return tuple(int(c) for c in config.known_classes), None
  if split.unknown_source:
    raise DataError(f"the composite benchmark needs a single-dataset split; {config.dataset} "
                    f"takes its unknowns from {split.unknown_source}")
  return split.known, split.unknown


def load_open_set(config, split) -> OpenSetData:
  """The OpenSetData (with `conditions`) of a composite config; split from splits.get_split
  (None when config.known_classes is set)."""
  d = config.data
  if d.get("composite") is None:
    raise DataError("data.source='composite' needs a data.composite block "
                    "(see configs/fgbg_digits.py)")
  spec = CompositeSpec.from_config(d.composite)
  known, unknown = _classes(config, split)
  return build(spec, known, unknown, image_size=d.image_size, channels=d.get("channels") or 3,
               data_dir=d.data_dir or None).open_set()
