"""RandAugment (data/randaugment.py): every op against Pillow, the ops Vaze et al.'s code
calls (their randaugment.py), at several magnitudes; identities at the magnitudes where an
op should be one; whole-batch RandAugment deterministic under its key, uint8 in and out,
each image given one of the listed ops."""
import functools

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from backmix_jax.data import randaugment as ra

CENTRE = (9.5, 2.2)  # a cutout centre (col, row) that clips the box at the top


def images():
  """[3,12,12,3] uint8: noise, a low-contrast patch and a smooth ramp (flat runs for the
  filters, few distinct values for equalize)."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 12, 12, 3)).astype(np.uint8)
  x[1] = (x[1] // 8 + 100).astype(np.uint8)
  yy, xx = np.mgrid[:12, :12]
  x[2] = np.stack([xx * 20, yy * 15, (xx + yy) * 9], -1).astype(np.uint8)
  return x


def pillow(op, img, value, sign):
  """The op as their randaugment.py calls Pillow (sign: their random flip of the value)."""
  v = sign * value
  w, h = img.size
  calls = {
      "auto_contrast": lambda: ImageOps.autocontrast(img),
      "equalize": lambda: ImageOps.equalize(img),
      "invert": lambda: ImageOps.invert(img),
      "rotate": lambda: img.rotate(v),
      "posterize": lambda: ImageOps.posterize(img, max(1, int(value))),
      "solarize": lambda: ImageOps.solarize(img, value),
      "shear_x": lambda: img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0)),
      "shear_y": lambda: img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0)),
      "translate_x": lambda: img.transform(img.size, Image.AFFINE, (1, 0, v, 0, 1, 0)),
      "translate_y": lambda: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v)),
  }
  if op in calls:
    return np.asarray(calls[op]())
  if op == "solarize_add":
    added = np.clip(np.asarray(img).astype(np.int64) + value, 0, 255).astype(np.uint8)
    return np.asarray(ImageOps.solarize(Image.fromarray(added), 128))
  if op == "cutout":
    x0, y0 = int(max(0, CENTRE[0] - value / 2)), int(max(0, CENTRE[1] - value / 2))
    out = img.copy()
    ImageDraw.Draw(out).rectangle((x0, y0, min(w, x0 + value), min(h, y0 + value)),
                                  (125, 123, 114))
    return np.asarray(out)
  return np.asarray(getattr(ImageEnhance, op.capitalize())(img).enhance(value))


SIGNED = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
ENHANCE = ("color", "contrast", "brightness", "sharpness")
# (op, M, sign) evaluated on images(): against Pillow at M = 6 (both signs) and 30; the
# identities at M = 0 (signed ops, cutout) and 15 (enhancement); posterize below 15.
COMBOS = tuple(
    [(op, m, s) for op in ra.OPS for m in (6, 30)
     for s in ((1, -1) if op in SIGNED and m == 6 else (1,))]
    + [(op, 0, -1) for op in SIGNED] + [(op, 15, 1) for op in ENHANCE]
    + [("cutout", 0, 1), ("posterize", 14, 1)])


@functools.cache
def ours() -> dict:
  """(op, M, sign) -> float32 [3,12,12,3]: every combo in one compiled program (compiling
  each op's primitives eagerly costs several times more)."""
  x = jnp.asarray(images(), jnp.float32)
  centre = jnp.tile(jnp.asarray([CENTRE], jnp.float32), (x.shape[0], 1))
  fn = jax.jit(lambda x: [ra.apply_op(op, x, m, sign=jnp.full((x.shape[0],), float(s)),
                                      centre=centre) for op, m, s in COMBOS])
  return {c: np.asarray(r) for c, r in zip(COMBOS, fn(x))}


def test_every_op_matches_pillow():
  """Bit for bit at M = 6 and 30 (M = 6 with both signs of the signed ops; M = 0 is the
  next test), except autocontrast:
  at most one level below-or-above Pillow's float64 map, only where the exact stretch
  (x - lo) * 255 / (hi - lo) is an integer (docs: the exact value is used)."""
  x = images()
  for op in ra.OPS:
    for m in (6, 30):
      for sign in ((1, -1) if op in SIGNED and m == 6 else (1,)):
        theirs = np.stack([pillow(op, Image.fromarray(i), ra.op_value(op, m), sign) for i in x])
        mine = ours()[op, m, sign]
        if op != "auto_contrast":
          np.testing.assert_array_equal(mine, theirs, err_msg=f"{op} M={m} sign={sign}")
          continue
        lo = x.min(axis=(1, 2), keepdims=True).astype(int)
        hi = x.max(axis=(1, 2), keepdims=True).astype(int)
        exact = (x.astype(int) - lo) * 255 % np.maximum(hi - lo, 1) == 0
        diff = mine - theirs
        assert np.abs(diff).max() <= 1 and np.all(exact[diff != 0])


def test_magnitude_semantics_of_their_ranges():
  """M = 0 is the identity for rotate, shear and translate; the enhancement ops are the
  identity at M = 15 (factor 1.0); cutout at M = 0 still paints one pixel; posterize keeps
  1 bit below M = 15 (their int(M / 30 * 4) clamped to 1)."""
  x = images().astype(np.float32)
  for op in SIGNED:
    np.testing.assert_array_equal(ours()[op, 0, -1], x, err_msg=op)
  for op in ENHANCE:
    assert ra.op_value(op, 15) == pytest.approx(1.0)
    np.testing.assert_array_equal(ours()[op, 15, 1], x, err_msg=op)
  assert np.sum(np.any(ours()["cutout", 0, 1] != x, axis=-1)) == 3  # one pixel per image
  assert set(np.unique(ours()["posterize", 14, 1])) <= {0.0, 128.0}
  assert (ra.op_value("translate_x", 6), ra.op_value("cutout", 6)) == pytest.approx((20.0, 8.0))


# One compiled RandAugment (N = 1, M = 6, the full list, 3 images of 12 px) serves every
# test below; every eager op runs on images()' shape, so its primitives compile once.
RANDAUGMENT = jax.jit(lambda key, x: ra.randaugment(key, x, num_ops=1, magnitude=6))


def test_randaugment_is_deterministic_uint8_and_keyed():
  """Same key -> same images; another key -> other images; uint8 [B,H,W,C] out; N = 0 is the
  identity; 1-channel images get the grey cutout."""
  x = jnp.asarray(images())
  a = np.asarray(RANDAUGMENT(jax.random.key(0), x))
  assert a.dtype == np.uint8 and a.shape == x.shape
  np.testing.assert_array_equal(a, np.asarray(RANDAUGMENT(jax.random.key(0), x)))
  assert not np.array_equal(a, np.asarray(RANDAUGMENT(jax.random.key(1), x)))
  np.testing.assert_array_equal(ra.randaugment(jax.random.key(0), x, num_ops=0, magnitude=9), x)
  grey = ra.cutout(jnp.zeros((1, 4, 4, 1)), 1.0, jnp.array([[2.0, 2.0]]))
  assert set(np.unique(np.asarray(grey))) == {0.0, 123.0}


def test_each_image_gets_one_listed_op():
  """N = 1: every image equals one op of the list applied to it (signed ops: either sign;
  cutout: the changed pixels form one box of its colour); over 16 draws of 3 images most
  ops occur."""
  x = images()
  candidates = {(op, s): r for (op, m, s), r in ours().items() if m == 6 and op != "cutout"}
  seen = set()
  for key in range(16):
    out = np.asarray(RANDAUGMENT(jax.random.key(key), jnp.asarray(x))).astype(np.float32)
    for i in range(len(x)):
      matches = [op for (op, s), c in candidates.items() if np.array_equal(c[i], out[i])]
      changed = np.any(out[i] != x[i], axis=-1)
      if not matches and changed.any():
        rows, cols = np.nonzero(changed)
        box = out[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert np.all(box == np.array(ra.CUTOUT_COLOR)), f"key {key} image {i}: no listed op"
        matches = ["cutout"]
      assert matches or not changed.any()
      seen.update(matches[:1])
  assert len(seen) >= 10
