"""The fore-/background diagnostic: digits with known masks composed onto background images.

BackMix argues that backgrounds which co-occur with a class mislead an open-set model: an
unknown object shown on a familiar background is taken for the class that background came
with. This benchmark makes that testable, because here the foreground of every image is
known exactly and the class-background correlation is a parameter.

Foregrounds: grey digits from any source spec `sources.load_source` reads (`digits`,
`mnist`/`tfds:mnist`, `npz:<path>`), resized to `fg_size` px (antialiased bilinear),
scaled so each digit's brightest pixel is 255, and pasted at a uniformly random position of
an `image_size` canvas. Compositing: alpha = intensity / 255 and
pixel = alpha * 255 + (1 - alpha) * bg_dim * background; the background is dimmed (x0.6 by
default) so a white stroke keeps >= 40 % of the grey range of contrast on any background.
True mask = alpha > 0.25 (bool [H,W]): the stroke and its inner half of the blurred rim.

Backgrounds: `textures` (generated: 10 procedural stripe classes, each with its own hue,
orientation and frequency; every image has a random phase, small jitter of the three class
parameters and pixel noise) or any source spec of photos (`cifar10`,
`npz:/path/to/cifar10.npz`), resized to image_size. Training images take
their backgrounds from the source's train split, test images from its test split.

Pairing: known class i (position i in the known list, K classes) is paired with background
class bg_known[i] (default: the first K background classes); the other background classes
are "unknown backgrounds" and never appear in training. A training image of class i gets a
background of class bg_known[i] with probability rho, otherwise one of a uniformly drawn
other known background class.

Test conditions (`CONDITIONS`), scored one by one; the three known conditions show the same
digits at the same positions (so do the two unknown ones), only the backgrounds differ:
  known_correlated     known digit on its paired background class
  known_swapped        known digit on another known class's background
  known_unrelated      known digit on an unknown background class
  unknown_known_bg     unknown digit on a known background class (uniform over the K)
  unknown_unknown_bg   unknown digit on an unknown background class
Known conditions have labels 0..K-1, unknown ones -1; every split carries its masks. Every
set is in a seeded random order (the three known conditions in the same one), so any
prefix mixes the classes.

Everything is drawn from NumPy generators seeded with (seed, stream), one stream per part,
so a config gives the same arrays on every call. `load_open_set(config, split)` is the
entry point of `openset.load_open_set` for data.source='composite'.
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import Sequence

import numpy as np

from backmix_jax.data import sources
from backmix_jax.data.openset import Condition, OpenSetData, check_classes
from backmix_jax.data.sources import ArraySplit, DataError

TEXTURES = "textures"
NUM_TEXTURE_CLASSES = 10
MASK_THRESHOLD = 0.25
CONDITIONS = ("known_correlated", "known_swapped", "known_unrelated", "unknown_known_bg",
              "unknown_unknown_bg")
KNOWN_CONDITIONS = CONDITIONS[:3]
UNKNOWN_CONDITIONS = CONDITIONS[3:]

# One generator per part, so e.g. a smaller test cap never changes the training images.
_STREAMS = {"train": 0, "known_test": 1, "unknown_test": 2}
_CHUNK = 4096  # images composed per vectorised block (bounds float32 temporaries)


@dataclasses.dataclass(frozen=True)
class CompositeSpec:
  """The data.composite block of a config (every field optional; these are the defaults).

  foreground: source spec of the digits (grey; RGB sources are converted by luma).
  background: 'textures' or a source spec of photos with >= K+1 classes.
  rho: probability that a training image shows its class's paired background.
  fg_size: side of the pasted digit in px (<= image_size).
  copies: compositions of each training digit (independent backgrounds and positions).
  test_copies: the same for the test digits of every condition.
  max_train_per_class: training digits kept per known class (0 = all).
  max_test_per_condition: images kept per test condition (0 = all).
  bg_known: background class paired with each known class, in known-class order
    (() = 0..K-1).
  bg_per_split: photo backgrounds read per split, evenly spaced (0 = all): decoding all
    50,000 CIFAR-10 training JPEGs takes ~6 s, 20,000 ~2.5 s.
  bg_dim: backgrounds are multiplied by this before the digit goes on (visibility).
  seed: seed of every random draw.
  """
  foreground: str = "digits"
  background: str = TEXTURES
  rho: float = 0.9
  fg_size: int = 18
  copies: int = 1
  test_copies: int = 1
  max_train_per_class: int = 0
  max_test_per_condition: int = 0
  bg_known: tuple[int, ...] = ()
  bg_per_split: int = 0
  bg_dim: float = 0.6
  seed: int = 0

  @classmethod
  def from_config(cls, block) -> "CompositeSpec":
    """From a ConfigDict or dict; an unknown field is a DataError."""
    given = dict(block.items())
    names = [f.name for f in dataclasses.fields(cls)]
    stray = sorted(set(given) - set(names))
    if stray:
      raise DataError(f"data.composite has unknown fields {', '.join(stray)}; known: "
                      f"{', '.join(names)}")
    if "bg_known" in given:
      given["bg_known"] = tuple(int(c) for c in given["bg_known"])
    return cls(**given)

  def problems(self, image_size: int, num_known: int | None) -> list[str]:
    """One sentence per unusable field; num_known=None skips the checks that need K."""
    out = []
    p = "data.composite."
    if not self.foreground or self.foreground == TEXTURES:
      out.append(f"{p}foreground must be a digit source spec (digits, mnist, npz:<path>), "
                 f"got {self.foreground!r}")
    if not self.background:
      out.append(f"{p}background must be 'textures' or a source spec, got ''")
    if not 0 <= self.rho <= 1:
      out.append(f"{p}rho must be in [0, 1], got {self.rho}")
    if not 2 <= self.fg_size <= image_size:
      out.append(f"{p}fg_size must be in 2..data.image_size={image_size}, got {self.fg_size}")
    for name in ("copies", "test_copies"):
      if getattr(self, name) < 1:
        out.append(f"{p}{name} must be >= 1, got {getattr(self, name)}")
    for name in ("max_train_per_class", "max_test_per_condition", "bg_per_split"):
      if getattr(self, name) < 0:
        out.append(f"{p}{name} must be >= 0 (0 = all), got {getattr(self, name)}")
    if not 0 < self.bg_dim <= 1:
      out.append(f"{p}bg_dim must be in (0, 1], got {self.bg_dim}")
    for name in ("foreground", "background"):
      kind, _, path = getattr(self, name).partition(":")
      if kind in ("npz", "folder") and not os.path.exists(path):
        out.append(f"{p}{name} path {path!r} does not exist")
    if num_known is not None:
      out.extend(self._pairing_problems(num_known))
    return out

  def _pairing_problems(self, k: int) -> list[str]:
    p = "data.composite."
    if k < 2:
      return [f"the composite benchmark needs at least 2 known classes (for known_swapped), "
              f"got {k}"]
    out = []
    if self.bg_known:
      if len(self.bg_known) != k:
        out.append(f"{p}bg_known lists {len(self.bg_known)} background classes for {k} known "
                   "classes")
      if len(set(self.bg_known)) != len(self.bg_known) or min(self.bg_known) < 0:
        out.append(f"{p}bg_known must be distinct class ids >= 0, got {self.bg_known}")
    if self.background == TEXTURES:
      top = max(self.bg_known) if self.bg_known else k - 1
      if k + 1 > NUM_TEXTURE_CLASSES or top >= NUM_TEXTURE_CLASSES:
        out.append(f"textures have {NUM_TEXTURE_CLASSES} classes: {k} known classes need "
                   f"{k} paired backgrounds plus at least one unknown one, ids 0..9")
    return out


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


# ------------------------------------------------------------------------------ compositing


def dim(backgrounds: np.ndarray, bg_dim: float) -> np.ndarray:
  """uint8 [N,S,S,C] -> float32 [N,S,S,C]: the background as it lies under the digit."""
  return backgrounds.astype(np.float32) * np.float32(bg_dim)


def compose(glyphs: np.ndarray, backgrounds: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            bg_dim: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
  """Paste white digits onto dimmed backgrounds by alpha compositing.

  glyphs: uint8 [N,f,f] digit intensities (alpha = intensity / 255).
  backgrounds: uint8 [N,S,S,C].
  rows, cols: int [N] top-left corner of each digit, in 0..S-f.
  Returns images uint8 [N,S,S,C] = rint(alpha * 255 + (1 - alpha) * bg_dim * background)
  and masks bool [N,S,S] = alpha > MASK_THRESHOLD. Outside each digit's box the image is
  exactly rint(dim(background)).
  """
  n, f = len(glyphs), glyphs.shape[1]
  s = backgrounds.shape[1]
  if backgrounds.shape[0] != n or len(rows) != n or len(cols) != n:
    raise DataError(f"compose: {n} glyphs, {len(backgrounds)} backgrounds, {len(rows)} positions")
  if n and (rows.min() < 0 or cols.min() < 0 or rows.max() > s - f or cols.max() > s - f):
    raise DataError(f"compose: a {f} px digit must lie inside the {s} px canvas")
  images = np.empty(backgrounds.shape, np.uint8)
  masks = np.empty((n, s, s), bool)
  ar = np.arange(f)
  for lo in range(0, n, _CHUNK):
    hi = min(lo + _CHUNK, n)
    alpha = np.zeros((hi - lo, s, s), np.float32)
    # Scatter every glyph into its box at once: index [image, row, col].
    alpha[np.arange(hi - lo)[:, None, None], (rows[lo:hi, None] + ar)[:, :, None],
          (cols[lo:hi, None] + ar)[:, None, :]] = glyphs[lo:hi] / np.float32(255)
    a = alpha[..., None]
    out = a * np.float32(255) + (1 - a) * dim(backgrounds[lo:hi], bg_dim)
    images[lo:hi] = np.rint(out).astype(np.uint8)
    masks[lo:hi] = alpha > MASK_THRESHOLD
  return images, masks


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] interpolation matrix of an antialiased bilinear resize: Pillow's triangle
  filter, widened by the scale when shrinking, computed in float rather than fixed point."""
  scale = n_in / n_out
  support = max(scale, 1.0)
  centre = (np.arange(n_out) + 0.5) * scale
  taps = np.arange(n_in) + 0.5
  w = np.clip(1 - np.abs(taps[None, :] - centre[:, None]) / support, 0, None)
  return (w / w.sum(1, keepdims=True)).astype(np.float32)


def prepare_glyphs(images: np.ndarray, fg_size: int) -> np.ndarray:
  """Digits uint8 [N,h,w,1] -> [N,fg_size,fg_size]: bilinear resize (one matrix product per
  axis, all digits at once), then each digit scaled so its brightest pixel is 255 (a thin
  stroke blurred by resizing stays opaque)."""
  g = images[..., 0].astype(np.float32)
  if g.shape[1:] != (fg_size, fg_size):
    g = np.einsum("ih,nhw,jw->nij", _bilinear_weights(g.shape[1], fg_size), g,
                  _bilinear_weights(g.shape[2], fg_size), optimize=True)
  peak = np.maximum(g.reshape(len(g), -1).max(1), 1)[:, None, None]
  return np.clip(np.rint(g * (255 / peak)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ backgrounds


def _hue_rgb(hue: np.ndarray) -> np.ndarray:
  """[...] hues in [0,1) -> [...,3] fully saturated RGB in [0,1] (the HSV hexcone)."""
  k = (hue[..., None] * 6 + np.array([5.0, 3.0, 1.0], np.float32)) % 6
  return 1 - np.clip(np.minimum(k, 4 - k), 0, 1)


# Class c: hue c/10; orientation and frequency permuted so neighbouring hues differ in both.
TEXTURE_HUE = np.arange(NUM_TEXTURE_CLASSES) / NUM_TEXTURE_CLASSES
TEXTURE_ANGLE = np.deg2rad((3 * np.arange(NUM_TEXTURE_CLASSES) % NUM_TEXTURE_CLASSES) * 18.0)
TEXTURE_FREQ = np.array([2.0, 3.0, 4.0, 5.0, 6.0])[7 * np.arange(NUM_TEXTURE_CLASSES) % 5]
TEXTURE_SATURATION = 0.75  # colour = value * (1 - sat + sat * hue colour)
TEXTURE_CONTRAST = 0.45    # value = 1 - contrast + contrast * stripe (stripe in [0, 1])


def render_textures(classes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """Procedural stripe backgrounds: int [N] classes in 0..9 -> uint8 [N,size,size,3].

  Each image: stripes 0.5 + 0.5 sin(2 pi f (x cos t + y sin t) + phase) (x, y in image
  sides, f in cycles per side) shaded in the class hue (saturation 0.75, value 0.55..1),
  with hue +-0.015, angle +-6 deg, frequency x0.9..1.1 jitter, a uniform phase and
  Gaussian pixel noise (sd 8 grey levels).
  """
  classes = np.asarray(classes, np.int64)
  n = len(classes)
  hue = (TEXTURE_HUE[classes] + rng.uniform(-0.015, 0.015, n)) % 1
  angle = TEXTURE_ANGLE[classes] + np.deg2rad(rng.uniform(-6, 6, n))
  freq = TEXTURE_FREQ[classes] * rng.uniform(0.9, 1.1, n)
  phase = rng.uniform(0, 2 * np.pi, n)
  noise_seed = rng.integers(2**32)
  out = np.empty((n, size, size, 3), np.uint8)
  grid = ((np.arange(size) + 0.5) / size).astype(np.float32)
  for lo in range(0, n, _CHUNK):
    hi = min(lo + _CHUNK, n)
    sl = slice(lo, hi)
    kx = (2 * np.pi * freq[sl] * np.cos(angle[sl])).astype(np.float32)[:, None, None]
    ky = (2 * np.pi * freq[sl] * np.sin(angle[sl])).astype(np.float32)[:, None, None]
    stripes = 0.5 + 0.5 * np.sin(kx * grid[None, None, :] + ky * grid[None, :, None]
                                 + phase[sl, None, None].astype(np.float32))
    value = (1 - TEXTURE_CONTRAST + TEXTURE_CONTRAST * stripes)[..., None]
    colour = (1 - TEXTURE_SATURATION
              + TEXTURE_SATURATION * _hue_rgb(hue[sl].astype(np.float32)))[:, None, None, :]
    noise = np.random.default_rng([noise_seed, lo]).normal(0, 8, (hi - lo, size, size, 3))
    out[sl] = np.clip(np.rint(255 * value * colour + noise), 0, 255).astype(np.uint8)
  return out


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
  pools = [sources.load_unknown_source(spec.background, data_dir=data_dir, image_size=size,
                                       channels=3, max_per_split=spec.bg_per_split or None,
                                       split=split) for split in ("train", "test")]
  n_bg = int(max(p.labels.max() for p in pools)) + 1
  return _Backgrounds(size, pools[0], "train"), _Backgrounds(size, pools[1], "test"), n_bg


# ------------------------------------------------------------------------------ the benchmark


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


def _evenly(n: int, cap: int) -> np.ndarray:
  """cap evenly spaced indices of n (all when cap is 0 or >= n): keeps class proportions."""
  return np.arange(n) if not cap or cap >= n else np.arange(cap) * n // cap


def _glyphs(images: np.ndarray, sel: np.ndarray, fg_size: int) -> np.ndarray:
  """uint8 [len(sel),f,f]: the prepared digit of every selected row (each resized once)."""
  uniq, inv = np.unique(sel, return_inverse=True)
  return prepare_glyphs(images[uniq], fg_size)[inv]


def _finish(glyphs: np.ndarray, labels: np.ndarray, fg_classes: np.ndarray,
            bg_classes: np.ndarray, rows: np.ndarray, cols: np.ndarray, bgs: _Backgrounds,
            rng: np.random.Generator, spec: CompositeSpec, channels: int) -> Composed:
  images, masks = compose(glyphs, bgs.draw(bg_classes, rng), rows, cols, spec.bg_dim)
  return Composed(ArraySplit(sources.to_channels(images, channels), labels.astype(np.int64),
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
  fg = sources.load_source(spec.foreground, data_dir=data_dir, image_size=None, channels=1)
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
  keep = _evenly(len(sel), spec.max_test_per_condition)
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
  keep = _evenly(len(sel), spec.max_test_per_condition)
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


# ------------------------------------------------------------------------------ from a config


def _classes(config, split) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
  if config.known_classes:
    return tuple(int(c) for c in config.known_classes), None
  if split.unknown_source:
    raise DataError(f"the composite benchmark needs a single-dataset split; {config.dataset} "
                    f"takes its unknowns from {split.unknown_source}")
  return split.known, split.unknown


def config_problems(config) -> list[str]:
  """Problems of a data.source='composite' config, one sentence each (for validate)."""
  block = config.data.get("composite")
  if block is None:
    return ["data.source='composite' needs a data.composite block (see configs/fgbg_digits.py)"]
  try:
    spec = CompositeSpec.from_config(block)
  except (DataError, TypeError) as e:
    return [str(e)]
  num_known = len(config.known_classes) if config.known_classes else None
  if num_known is None:
    from backmix_jax.data import splits
    try:
      num_known = len(splits.get_split(config.dataset, config.protocol, config.trial).known)
    except DataError:
      pass  # validate reports the split itself
  return spec.problems(config.data.image_size, num_known)


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


# ------------------------------------------------------------------------------ picture


def save_examples(path: str, panels: Sequence[tuple[str, OpenSetData]], num: int = 6):
  """A PNG of `num` examples per row: training images, then each condition, with the true
  mask outlined in cyan; one column block per (title, OpenSetData) panel, side by side.
  Titles: the digit and its label, or 'unknown'."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = ["train"] + list(CONDITIONS)
  fig = plt.figure(figsize=(1.05 * num * len(panels) + 0.9 * len(panels), 1.1 * len(rows) + 0.5))
  subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
  for sub, (title, data) in zip(subfigs, panels):
    by_name = {"train": data.train, **{c.name: c.split for c in data.conditions}}
    axes = sub.subplots(len(rows), num, squeeze=False)
    sub.subplots_adjust(left=0.14, right=0.98, top=0.9, bottom=0.02, wspace=0.08, hspace=0.3)
    sub.suptitle(title, fontsize=10)
    for r, name in enumerate(rows):
      s = by_name[name]
      for j, i in enumerate(_evenly(len(s), num)[:num]):
        ax = axes[r, j]
        img = s.images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.contour(s.masks[i].astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.7)
        lab = int(s.labels[i])
        ax.set_title(f"digit {data.known_classes[lab]} = {lab}" if lab >= 0 else "unknown",
                     fontsize=6, pad=1)
      for ax in axes[r]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("on" if ax.images else "off")
      axes[r, 0].set_ylabel(name.replace("_", "\n", 1), fontsize=7)
  buf = io.BytesIO()
  fig.savefig(buf, dpi=110)
  plt.close(fig)
  from PIL import Image
  # 256 colours: a third of the size of the RGB file, no visible change at this scale.
  Image.open(buf).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def _short(spec: str) -> str:
  """'npz:/path/to/mnist.npz' -> 'mnist'; 'tfds:cifar10' -> 'cifar10'."""
  return os.path.splitext(os.path.basename(spec.partition(":")[2] or spec))[0]


def main(argv=None):
  """python -m backmix_jax.data.composite --config CONFIG [--config2 CONFIG] [--out PNG]."""
  from absl import app, flags
  from ml_collections import config_flags

  config = config_flags.DEFINE_config_file("config", None, "A composite config.")
  config2 = config_flags.DEFINE_config_file("config2", None, "A second one, drawn beside it.")
  out = flags.DEFINE_string("out", "docs/fgbg_examples.png", "PNG path.")
  num = flags.DEFINE_integer("num", 6, "Examples per row.")

  def run(_):
    from backmix_jax.data.openset import load_open_set as load
    panels = []
    for holder in (config, config2):
      c = holder.value
      if c is None:
        continue
      comp = c.data.composite
      title = f"{_short(comp.foreground)} on {_short(comp.background)}, rho {comp.rho}"
      panels.append((title, load(c)))
    save_examples(out.value, panels, num.value)
    print(f"wrote {out.value}")

  flags.mark_flag_as_required("config")
  app.run(run, argv)


if __name__ == "__main__":
  main()
