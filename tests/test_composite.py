"""The fore-/background diagnostic (data/composite/): compositing, masks, pairing, conditions,
config checks and load_open_set. Offline and small: sklearn digits on textures, or a
generated npz of flat-coloured 'photos' whose colour says their class and split."""
import dataclasses

import numpy as np
import pytest

from backmix_jax.data import composite, splits
from backmix_jax.data.composite import CONDITIONS, CompositeSpec
from backmix_jax.data.core import DataError
from configs import fgbg_digits

KNOWN = (6, 3, 4, 9, 8, 2)  # the digits split of ARPL trial 0
UNKNOWN = (0, 1, 5, 7)
SMALL = CompositeSpec(fg_size=12, copies=2, max_train_per_class=10, test_copies=1,
                      max_test_per_condition=30, seed=3)


@pytest.fixture(scope="module")
def small():
  return composite.build(SMALL, KNOWN, UNKNOWN, image_size=24, channels=3)


def _arrays(d: composite.Diagnostic) -> list[np.ndarray]:
  parts = [d.train] + [d.conditions[n] for n in CONDITIONS]
  return [a for p in parts for a in (p.split.images, p.split.labels, p.split.masks,
                                     p.fg_classes, p.bg_classes)]


def test_same_spec_gives_the_same_arrays_and_another_seed_does_not(small):
  """Determinism: a second build is bit-identical; seed 4 changes the images."""
  again = composite.build(SMALL, KNOWN, UNKNOWN, image_size=24, channels=3)
  for a, b in zip(_arrays(small), _arrays(again)):
    np.testing.assert_array_equal(a, b)
  other = composite.build(dataclasses.replace(SMALL, seed=4), KNOWN, UNKNOWN, image_size=24)
  assert not np.array_equal(other.train.split.images, small.train.split.images)


def test_masks_are_exactly_the_changed_pixels_of_an_opaque_digit():
  """A binary (0/255) glyph: mask == the pixels that differ from the dimmed background;
  outside the box the image is the dimmed background."""
  rng = np.random.default_rng(0)
  glyphs = np.where(rng.random((16, 7, 7)) < 0.4, 255, 0).astype(np.uint8)
  bgs = rng.integers(0, 256, (16, 20, 20, 3), dtype=np.uint8)
  rows, cols = rng.integers(0, 14, (2, 16))
  images, masks = composite.compose(glyphs, bgs, rows, cols, bg_dim=0.6)
  pure = np.rint(composite.dim(bgs, 0.6)).astype(np.uint8)
  np.testing.assert_array_equal(masks, (images != pure).any(-1))
  assert masks.sum() == (glyphs == 255).sum()


def test_grey_digits_masked_pixels_differ_from_the_background_and_unchanged_ones_are_unmasked():
  """Real (anti-aliased) digits: every masked pixel is brighter than the dimmed background by
  at least alpha 0.25 of the way to white; a pixel equal to the background is never masked;
  the unmasked pixels that changed did so by at most that much."""
  from backmix_jax.data import sources
  rng = np.random.default_rng(1)
  digits = sources.load_source("digits", image_size=None, channels=1).train.images[:32]
  glyphs = composite.prepare_glyphs(digits, 14)
  bgs = rng.integers(0, 256, (32, 24, 24, 3), dtype=np.uint8)
  rows, cols = rng.integers(0, 11, (2, 32))
  images, masks = composite.compose(glyphs, bgs, rows, cols, bg_dim=0.6)
  base = composite.dim(bgs, 0.6)
  lift = images.astype(np.float32) - base  # = alpha * (255 - base), up to rounding
  room = 255 - base
  assert (lift[masks] >= composite.MASK_THRESHOLD * room[masks] - 0.5).all()
  assert not masks[(images == np.rint(base)).all(-1)].any()
  assert (lift[~masks] <= composite.MASK_THRESHOLD * room[~masks] + 0.5).all()
  assert 0.1 < masks.mean() < 0.5  # the digits cover a plausible share of the canvas


def test_glyphs_are_resized_like_pillow_and_peak_at_255():
  """The vectorised resize matches Pillow's bilinear within one grey level (before the
  per-digit peak scaling), and every prepared digit reaches 255."""
  from backmix_jax.data import images
  from backmix_jax.data.composite import synthesis
  rng = np.random.default_rng(2)
  img = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
  w = synthesis._bilinear_weights(28, 18)
  ours = np.einsum("ih,nhw,jw->nij", w, img[..., 0].astype(np.float32), w)
  assert np.abs(ours - images.resize_bilinear(img, 18)[..., 0]).max() <= 1
  assert (composite.prepare_glyphs(img, 18).reshape(5, -1).max(1) == 255).all()


@pytest.mark.parametrize("rho", [1.0, 0.0])
def test_rho_one_always_and_rho_zero_never_pairs(rho):
  """rho=1: every training image shows its class's paired background; rho=0: none does,
  and the others are other known classes' backgrounds."""
  d = composite.build(dataclasses.replace(SMALL, rho=rho), KNOWN, UNKNOWN, image_size=24)
  paired = d.train.bg_classes == np.asarray(d.bg_known)[d.train.split.labels]
  assert paired.all() if rho == 1 else not paired.any()
  assert np.isin(d.train.bg_classes, d.bg_known).all()


def test_pairing_frequency_is_rho_and_off_pairs_are_uniform():
  """rho=0.7 over ~1,500 training images: paired share within 4 standard errors of 0.7; the
  unpaired images spread over all 5 other known backgrounds."""
  spec = dataclasses.replace(SMALL, rho=0.7, copies=2, max_train_per_class=0)
  d = composite.build(spec, KNOWN, UNKNOWN, image_size=24)
  labels, bg = d.train.split.labels, d.train.bg_classes
  paired = bg == np.asarray(d.bg_known)[labels]
  n = len(paired)
  assert n > 1400 and abs(paired.mean() - 0.7) < 4 * np.sqrt(0.21 / n)
  for i in range(len(KNOWN)):
    off = bg[(labels == i) & ~paired]
    assert set(off.tolist()) == set(d.bg_known) - {d.bg_known[i]}


def test_unknown_backgrounds_never_appear_in_training(small):
  """Default pairing: known class i <-> texture i; textures 6..9 are test-only. A custom
  bg_known is honoured the same way."""
  assert small.bg_known == (0, 1, 2, 3, 4, 5) and small.bg_unknown == (6, 7, 8, 9)
  assert not np.isin(small.train.bg_classes, small.bg_unknown).any()
  spec = dataclasses.replace(SMALL, rho=0.5, bg_known=(9, 7, 5, 3, 1, 0))
  d = composite.build(spec, KNOWN, UNKNOWN, image_size=24)
  assert d.bg_unknown == (2, 4, 6, 8)
  assert set(d.train.bg_classes.tolist()) <= {9, 7, 5, 3, 1, 0}


def test_conditions_have_their_labels_digits_and_backgrounds(small):
  """Known conditions: labels 0..K-1 and known digits; unknown ones: -1 and unknown digits.
  Backgrounds: paired / another known / unknown; unknown digits on known / unknown ones. The
  three known conditions show the same digits at the same places (identical masks)."""
  bg_known, bg_unknown = np.asarray(small.bg_known), small.bg_unknown
  c = small.conditions
  assert tuple(c) == CONDITIONS
  for name in composite.KNOWN_CONDITIONS:
    s = c[name]
    assert set(s.split.labels.tolist()) == set(range(6))
    np.testing.assert_array_equal(np.asarray(KNOWN)[s.split.labels], s.fg_classes)
    np.testing.assert_array_equal(s.split.masks, c["known_correlated"].split.masks)
  for name in composite.UNKNOWN_CONDITIONS:
    s = c[name]
    assert (s.split.labels == -1).all() and np.isin(s.fg_classes, UNKNOWN).all()
  lab = c["known_correlated"].split.labels
  np.testing.assert_array_equal(c["known_correlated"].bg_classes, bg_known[lab])
  swapped = c["known_swapped"].bg_classes
  assert np.isin(swapped, bg_known).all() and (swapped != bg_known[lab]).all()
  assert np.isin(c["known_unrelated"].bg_classes, bg_unknown).all()
  assert np.isin(c["unknown_known_bg"].bg_classes, bg_known).all()
  assert np.isin(c["unknown_unknown_bg"].bg_classes, bg_unknown).all()
  assert all(len(s) == 30 for s in c.values())  # max_test_per_condition


def test_open_set_view(small):
  """test_known = known_correlated; test_unknown = the two unknown conditions in order;
  conditions carry their known flags and masks; train keeps its masks."""
  data = small.open_set()
  assert data.known_classes == KNOWN and data.num_classes == 6
  assert [(c.name, c.known) for c in data.conditions] == [
      (n, n.startswith("known")) for n in CONDITIONS]
  np.testing.assert_array_equal(data.test_known.images,
                                small.conditions["known_correlated"].split.images)
  np.testing.assert_array_equal(data.test_unknown.images, np.concatenate(
      [small.conditions[n].split.images for n in composite.UNKNOWN_CONDITIONS]))
  assert data.train.masks is not None and data.test_unknown.masks is not None
  assert len(data.train) == 6 * 10 * 2  # classes x max_train_per_class x copies


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_channels(channels):
  """image_size 24, fg 12 px: images [N,24,24,channels] uint8, masks [N,24,24] bool, and the
  mask of every image lies in one fg_size box."""
  d = composite.build(SMALL, KNOWN, UNKNOWN, image_size=24, channels=channels)
  for s in [d.train] + list(d.conditions.values()):
    assert s.split.images.shape[1:] == (24, 24, channels) and s.split.images.dtype == np.uint8
    assert s.split.masks.shape == s.split.images.shape[:3] and s.split.masks.dtype == bool
    assert s.split.masks.any(axis=(1, 2)).all()
    r = np.flatnonzero(s.split.masks[0].any(1))
    assert r.max() - r.min() < 12


def _photo_npz(path, num_classes=10):
  """Flat 'photos': red = 20 * class + 10, green 0 in train and 200 in test."""
  arrays = {}
  for split, green in (("train", 0), ("test", 200)):
    labels = np.tile(np.arange(num_classes), 6)
    img = np.zeros((len(labels), 16, 16, 3), np.uint8)
    img[..., 0] = (20 * labels + 10)[:, None, None]
    img[..., 1] = green
    arrays[f"{split}_images"], arrays[f"{split}_labels"] = img, labels
  np.savez(path, **arrays)
  return f"npz:{path}"


def test_photo_backgrounds_come_from_the_right_class_and_split(tmp_path):
  """An npz background source: the unmasked pixels of each image carry the drawn class's
  colour, from the train split for training and the test split for every condition."""
  spec = dataclasses.replace(SMALL, background=_photo_npz(tmp_path / "bg.npz"), rho=0.8)
  d = composite.build(spec, KNOWN, UNKNOWN, image_size=24)
  for s, green in [(d.train, 0)] + [(c, 200) for c in d.conditions.values()]:
    corner = s.split.images.astype(np.float32)
    far = ~s.split.masks[..., None]
    # The box never covers the whole canvas: the darkest unmasked pixel is pure background.
    red = np.where(far, corner, 255)[..., 0].reshape(len(s), -1).min(1)
    np.testing.assert_allclose(red, np.rint(0.6 * (20 * s.bg_classes + 10)), atol=0.5)
    g = np.where(far, corner, 255)[..., 1].reshape(len(s), -1).min(1)
    np.testing.assert_allclose(g, np.rint(0.6 * green), atol=0.5)


def test_a_background_source_needs_an_unknown_class(tmp_path):
  """6 known classes on a 6-class photo source: no background is left for the unknown ones."""
  spec = dataclasses.replace(SMALL, background=_photo_npz(tmp_path / "bg6.npz", 6))
  with pytest.raises(DataError, match="has 6 classes: 6 known classes need 6 paired"):
    composite.build(spec, KNOWN, UNKNOWN, image_size=24)


@pytest.mark.parametrize("field, value, message", [
    ("rho", 1.5, "data.composite.rho must be in [0, 1], got 1.5"),
    ("fg_size", 40, "fg_size must be in 2..data.image_size=32, got 40"),
    ("copies", 0, "copies must be >= 1"),
    ("max_test_per_condition", -1, "max_test_per_condition must be >= 0"),
    ("bg_dim", 0.0, "bg_dim must be in (0, 1]"),
    ("bg_known", (0, 1), "bg_known lists 2 background classes for 6 known classes"),
    ("bg_known", (0, 1, 2, 3, 4, 12), "textures have 10 classes"),
    ("foreground", "textures", "foreground must be a digit source spec"),
    ("background", "npz:/no/such/bg.npz", "background path '/no/such/bg.npz' does not exist"),
])
def test_each_bad_field_is_named_by_the_config_check(field, value, message):
  """validate.problems names the field in one sentence, and load_open_set refuses it."""
  from backmix_jax.data.openset import load_open_set
  from backmix_jax.training import validate
  c = fgbg_digits.get_config()
  c.data.composite[field] = value
  found = validate.problems(c)
  assert any(message in p for p in found), found
  with pytest.raises(DataError, match="invalid composite benchmark"):
    load_open_set(c)


def test_other_config_errors():
  """Too many known classes for the 10 textures, an unknown field, a missing block; the
  shipped configs pass."""
  c = fgbg_digits.get_config()
  assert composite.config_problems(c) == []
  c.known_classes = tuple(range(10))
  assert any("textures have 10 classes" in p for p in composite.config_problems(c))
  c = fgbg_digits.get_config()
  c.data.composite.colour = "red"
  assert composite.config_problems(c) == [
      "data.composite has unknown fields colour; known: " +
      ", ".join(f.name for f in dataclasses.fields(CompositeSpec))]
  c = fgbg_digits.get_config()
  del c.data["composite"]
  assert "needs a data.composite block" in composite.config_problems(c)[0]
  assert composite.CompositeSpec().problems(32, 1)[0].startswith(
      "the composite benchmark needs at least 2 known classes")


def test_load_open_set_on_the_digits_config_returns_the_five_conditions():
  """configs/fgbg_digits.py shrunk: the split's known classes, K labels, the five conditions."""
  from backmix_jax.data.openset import load_open_set
  c = fgbg_digits.get_config()
  c.data.composite.update(dict(max_train_per_class=4, copies=1, test_copies=1,
                               max_test_per_condition=12))
  data = load_open_set(c)
  assert data.known_classes == splits.get_split("digits", "arpl", 0).known
  assert tuple(x.name for x in data.conditions) == CONDITIONS
  assert [len(x.split) for x in data.conditions] == [12] * 5
  assert (len(data.train), len(data.test_known), len(data.test_unknown)) == (24, 12, 24)
  assert data.train.images.shape[1:] == (32, 32, 3)
  assert sorted(set(data.train.labels.tolist())) == list(range(6))


def test_textures_are_deterministic_and_their_classes_differ():
  """Same generator state -> same textures; per-class mean colours differ between classes
  by more than within-class jitter (a learnable signal)."""
  classes = np.repeat(np.arange(10), 20)
  a = composite.render_textures(classes, 32, np.random.default_rng(0))
  b = composite.render_textures(classes, 32, np.random.default_rng(0))
  np.testing.assert_array_equal(a, b)
  mean = a.reshape(10, 20, -1, 3).mean(2)  # [class, image, rgb]
  centre = mean.mean(1)
  within = np.linalg.norm(mean - centre[:, None], axis=-1).max()
  between = min(np.linalg.norm(centre[i] - centre[j]) for i in range(10) for j in range(i))
  assert between > within
