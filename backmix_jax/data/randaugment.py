"""RandAugment as Vaze et al. train with it: N ops per image, each of global magnitude M.

Facts from sgvaze/osr_closed_set_all_you_need, `data/augmentations/randaugment.py` (their
port of a PyTorch RandAugment) and `data/augmentations/__init__.py` ('rand-augment'):

* each image draws N ops uniformly, with replacement, from the op list and applies them in
  turn; every op gets the value min + (M / 30) * (max - min) of its range (below), so M = 0
  is the *low end* of each range: the identity for rotate, shear and translate only (cutout
  still paints one pixel); the 0.1..1.9 enhancement ops are the identity at M = 15 and
  strongest (0.1) at M = 0, posterize keeps max(1, int(value)) bits
  (1 bit for every M < 15), solarize inverts every pixel >= its threshold (all at M = 0);
* rotate, shear and translate flip the sign of their value with probability 1/2;
* the 'full' list has 16 ops; SVHN and MNIST use a 13-op list without rotate and translate
  ('digits' here);
* RandAugment is the first transform, on the uint8 image, before resize, pad-crop, flip and
  normalisation.

Pixel semantics follow Pillow, which their ops call (tests/test_randaugment.py checks each
op against Pillow): colour enhancement blends with a degenerate image and truncates
(Image.blend), grey is ITU-R 601-2 luma in Pillow's fixed point, sharpness blends with the
3x3 SMOOTH filter (borders kept, rounded), geometric ops sample the nearest input pixel at
pixel centres and fill with black, cutout paints (125, 123, 114) on an inclusive box.
Where this differs from Pillow: autocontrast uses the exact map floor((x - lo) * 255 /
(hi - lo)); Pillow's float64 map is one level lower at some values where that quotient is
an integer (about 0.4 % of (lo, hi, x) triples, e.g. 25 -> 254 for a channel spanning
0..25). A grey (1-channel) image is cut out with the luma of that colour (123).

Everything is vectorised over the batch with fixed shapes: each round computes every op of
the list on every image and keeps, per image, the one it drew (geometric ops share one
gather), so it runs under jit inside the train step; the same key gives the same images.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MAX_MAGNITUDE = 30  # M runs over 0..30 (their magnitude scale)

# Their augment_list(), in its order: op -> (value at M = 0, value at M = 30).
RANGES = {
    "auto_contrast": (0.0, 1.0),
    "equalize": (0.0, 1.0),
    "invert": (0.0, 1.0),
    "rotate": (0.0, 30.0),          # degrees, random sign
    "posterize": (0.0, 4.0),        # bits kept: max(1, int(value))
    "solarize": (0.0, 256.0),       # threshold
    "solarize_add": (0.0, 110.0),   # added before solarizing at 128
    "color": (0.1, 1.9),
    "contrast": (0.1, 1.9),
    "brightness": (0.1, 1.9),
    "sharpness": (0.1, 1.9),
    "shear_x": (0.0, 0.3),          # random sign
    "shear_y": (0.0, 0.3),          # random sign
    "cutout": (0.0, 40.0),          # box side in pixels (CutoutAbs)
    "translate_x": (0.0, 100.0),    # pixels (TranslateXabs), random sign
    "translate_y": (0.0, 100.0),    # pixels (TranslateYabs), random sign
}
OPS = tuple(RANGES)
# data.randaugment_ops: 'full' (their default list) | 'digits' (their list for SVHN, MNIST).
OP_SETS = {
    "full": OPS,
    "digits": tuple(op for op in OPS if op not in ("rotate", "translate_x", "translate_y")),
}
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
CUTOUT_COLOR = (125.0, 123.0, 114.0)


def op_value(op: str, magnitude: int) -> float:
  """The value op `op` runs with at magnitude M (their (M / 30) * (max - min) + min)."""
  low, high = RANGES[op]
  return (float(magnitude) / MAX_MAGNITUDE) * float(high - low) + low


# ----------------------------------------------------------------------------- pixel ops
# Images are float32 [B,H,W,C] holding integers 0..255 (C = 1 or 3); every op returns the
# same, so ops chain without rounding in between.


def grey(x):
  """[B,H,W,C] -> [B,H,W,1]: Pillow's 'L' (299/587/114 per mille in 16-bit fixed point)."""
  if x.shape[-1] == 1:
    return x
  xi = x.astype(jnp.int32)
  luma = (xi[..., 0] * 19595 + xi[..., 1] * 38470 + xi[..., 2] * 7471 + 0x8000) >> 16
  return luma[..., None].astype(jnp.float32)


def blend(degenerate, x, factor: float):
  """Image.blend(degenerate, x, factor): degenerate + factor (x - degenerate), clipped to
  0..255 and truncated (float32 arithmetic, as Pillow's). Shapes broadcast to x's."""
  return jnp.floor(jnp.clip(degenerate + jnp.float32(factor) * (x - degenerate), 0.0, 255.0))


def auto_contrast(x):
  """Per image and channel, stretch lo..hi to 0..255 (identity where hi <= lo)."""
  lo = jnp.min(x, axis=(1, 2), keepdims=True)
  hi = jnp.max(x, axis=(1, 2), keepdims=True)
  span = jnp.maximum(hi - lo, 1.0)
  # The exact floor of (x - lo) * 255 / (hi - lo): the float32 quotient, corrected by one
  # where it rounded across an integer (numerator and products stay below 2**24: exact).
  num = (x - lo) * 255.0
  q = jnp.floor(num / span)
  q = jnp.where(q * span > num, q - 1.0, q)
  q = jnp.where((q + 1.0) * span <= num, q + 1.0, q)
  return jnp.where(hi > lo, q, x)


def equalize(x):
  """Pillow's ImageOps.equalize per image and channel: lut[v] = (step // 2 + #pixels below v)
  // step with step = (#pixels - #pixels of the top value) // 255 (identity when step is 0)."""
  b, h, w, c = x.shape
  n = b * c
  xi = x.astype(jnp.int32).reshape(b, h * w, c)
  # One 256-bin histogram per (image, channel): row b * C + c of a flat [n * 256] table.
  idx = (jnp.arange(b)[:, None, None] * c + jnp.arange(c)[None, None, :]) * 256 + xi
  hist = jnp.bincount(idx.ravel(), length=n * 256).reshape(n, 256)
  top = jnp.max(xi, axis=1).reshape(n)
  # mode='clip' (indices are in range by construction): the default bounds handling costs
  # several times the gather itself on CPU.
  count_top = jnp.take(hist.ravel(), jnp.arange(n) * 256 + top, mode="clip")
  step = (h * w - count_top) // 255  # [n]
  below = jnp.cumsum(hist, axis=1) - hist  # pixels strictly below each value
  lut = jnp.minimum((step[:, None] // 2 + below) // jnp.maximum(step, 1)[:, None], 255)
  lut = jnp.where(step[:, None] > 0, lut, jnp.arange(256)[None, :])
  # Materialise the [n, 256] table: fused into the gather, XLA recomputes it per pixel.
  lut = jax.lax.optimization_barrier(lut)
  return jnp.take(lut.ravel(), idx, mode="clip").reshape(b, h, w, c).astype(jnp.float32)


def invert(x):
  return 255.0 - x


def posterize(x, value: float):
  """Keep the top max(1, int(value)) bits of every channel value."""
  bits = max(1, int(value))
  keep = (0xFF << (8 - bits)) & 0xFF
  return (x.astype(jnp.int32) & keep).astype(jnp.float32)


def solarize(x, threshold: float):
  """Invert every value >= threshold."""
  return jnp.where(x < threshold, x, 255.0 - x)


def solarize_add(x, addition: float):
  """Add `addition`, clip to 0..255 and truncate, then solarize at 128."""
  return solarize(jnp.floor(jnp.clip(x + jnp.float32(addition), 0.0, 255.0)), 128.0)


def color(x, factor: float):
  return blend(grey(x), x, factor)


def contrast(x, factor: float):
  """Blend with the image's mean grey, rounded half up (Pillow: int(mean + 0.5))."""
  g = grey(x).astype(jnp.int32)
  n = g.shape[1] * g.shape[2]
  total = jnp.sum(g, axis=(1, 2, 3), keepdims=True)
  mean = ((2 * total + n) // (2 * n)).astype(jnp.float32)  # exact floor(total / n + 0.5)
  return blend(mean, x, factor)


def brightness(x, factor: float):
  return blend(jnp.zeros((), jnp.float32), x, factor)


def smooth(x):
  """Pillow's ImageFilter.SMOOTH (3x3, centre 5, others 1, / 13, rounded); the one-pixel
  border is kept as it is."""
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1], x.shape[2]
  total = 4.0 * x
  for dy in range(3):
    for dx in range(3):
      total = total + p[:, dy:dy + h, dx:dx + w]
  # Integer division of exact integer sums: (2 s + 13) // 26 = round(s / 13) (no ties).
  smoothed = ((2 * total.astype(jnp.int32) + 13) // 26).astype(jnp.float32)
  yy = jnp.arange(h)[:, None]
  xx = jnp.arange(w)[None, :]
  inner = ((yy > 0) & (yy < h - 1) & (xx > 0) & (xx < w - 1))[None, :, :, None]
  return jnp.where(inner, smoothed, x)


def sharpness(x, factor: float):
  return blend(smooth(x), x, factor)


def affine(x, matrix):
  """Pillow's Image.transform(AFFINE, NEAREST), black fill, per image.

  x [B,H,W,C]; matrix [B,6] = (a, b, c, d, e, f): output pixel (col u, row v) takes the input
  pixel at (floor(a (u + .5) + b (v + .5) + c), floor(d (u + .5) + e (v + .5) + f)).
  """
  b, h, w, c = x.shape
  u = jnp.arange(w, dtype=jnp.float32)[None, None, :] + 0.5
  v = jnp.arange(h, dtype=jnp.float32)[None, :, None] + 0.5
  m = matrix[:, :, None, None]
  src_x = jnp.floor(m[:, 0] * u + m[:, 1] * v + m[:, 2]).astype(jnp.int32)  # [B,H,W]
  src_y = jnp.floor(m[:, 3] * u + m[:, 4] * v + m[:, 5]).astype(jnp.int32)
  inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
  flat = (jnp.clip(src_y, 0, h - 1) * w + jnp.clip(src_x, 0, w - 1)).reshape(b, h * w)
  taken = jnp.take_along_axis(x.reshape(b, h * w, c), flat[..., None], axis=1, mode="clip")
  return jnp.where(inside[..., None], taken.reshape(b, h, w, c), 0.0)


def affine_matrix(op: str, value, sign, height: int, width: int):
  """[B,6] Pillow AFFINE data of geometric `op` at `value` with per-image sign [B] (+-1)."""
  v = sign * value
  one, zero = jnp.ones_like(v), jnp.zeros_like(v)
  if op == "shear_x":
    rows = (one, v, zero, zero, one, zero)
  elif op == "shear_y":
    rows = (one, zero, zero, v, one, zero)
  elif op == "translate_x":
    rows = (one, zero, v, zero, one, zero)
  elif op == "translate_y":
    rows = (one, zero, zero, zero, one, v)
  elif op == "rotate":  # Image.rotate(v): counter-clockwise by v degrees about the centre
    angle = -v * (math.pi / 180.0)
    a, bb = jnp.cos(angle), jnp.sin(angle)
    d, e = -jnp.sin(angle), jnp.cos(angle)
    cx, cy = width / 2.0, height / 2.0
    rows = (a, bb, cx - a * cx - bb * cy, d, e, cy - d * cx - e * cy)
  else:
    raise ValueError(f"{op!r} is not a geometric op; those are {GEOMETRIC}")
  return jnp.stack(rows, axis=-1).astype(jnp.float32)


def cutout(x, side: float, centre):
  """CutoutAbs: centre [B,2] (col, row) in (1, W] x (1, H]; the box from
  x0 = int(max(0, col - side/2)) to int(min(W, x0 + side)), both ends included (likewise rows),
  painted (125, 123, 114) (grey images: its luma)."""
  h, w = x.shape[1], x.shape[2]
  x0 = jnp.floor(jnp.maximum(0.0, centre[:, 0] - side / 2.0))
  y0 = jnp.floor(jnp.maximum(0.0, centre[:, 1] - side / 2.0))
  x1 = jnp.floor(jnp.minimum(float(w), x0 + side))
  y1 = jnp.floor(jnp.minimum(float(h), y0 + side))
  cols = jnp.arange(w, dtype=jnp.float32)[None, None, :]
  rows = jnp.arange(h, dtype=jnp.float32)[None, :, None]
  box = ((cols >= x0[:, None, None]) & (cols <= x1[:, None, None])
         & (rows >= y0[:, None, None]) & (rows <= y1[:, None, None]))
  paint = jnp.asarray(CUTOUT_COLOR, jnp.float32)
  if x.shape[-1] == 1:
    paint = grey(paint[None, None, None, :])[0, 0, 0]
  return jnp.where(box[..., None], paint, x)


_COLOUR_OPS = {
    "auto_contrast": lambda x, v: auto_contrast(x),
    "equalize": lambda x, v: equalize(x),
    "invert": lambda x, v: invert(x),
    "posterize": posterize,
    "solarize": solarize,
    "solarize_add": solarize_add,
    "color": color,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
}


def apply_op(op: str, images, magnitude: int, sign=None, centre=None):
  """One op at magnitude M on every image: images float32 [B,H,W,C] (integers 0..255);
  sign [B] of +-1 for rotate/shear/translate (default +1); centre [B,2] for cutout (default
  the image centre). Returns float32 [B,H,W,C]."""
  value = op_value(op, magnitude)
  b, h, w = images.shape[:3]
  if op in GEOMETRIC:
    sign = jnp.ones((b,), jnp.float32) if sign is None else sign
    return affine(images, affine_matrix(op, value, sign, h, w))
  if op == "cutout":
    centre = jnp.tile(jnp.array([[w / 2.0, h / 2.0]]), (b, 1)) if centre is None else centre
    return cutout(images, value, centre)
  return _COLOUR_OPS[op](images, value)


def randaugment(key: jax.Array, images: jnp.ndarray, *, num_ops: int, magnitude: int,
                ops: str = "full") -> jnp.ndarray:
  """uint8 [B,H,W,C] -> uint8 [B,H,W,C]: each image gets `num_ops` ops drawn uniformly with
  replacement from OP_SETS[ops], each at `magnitude` (0..30), applied in turn.

  Deterministic in `key` (the draws of round r come from fold_in(key, r)); num_ops = 0
  returns the images unchanged.
  """
  names = OP_SETS[ops]
  x = images.astype(jnp.float32)
  b, h, w = x.shape[:3]
  geometric = [op for op in names if op in GEOMETRIC]
  for r in range(num_ops):
    k_op, k_sign, k_centre = jax.random.split(jax.random.fold_in(key, r), 3)
    choice = jax.random.randint(k_op, (b,), 0, len(names))
    # Their sign flip: `if random.random() > 0.5: v = -v`.
    sign = jnp.where(jax.random.uniform(k_sign, (b,)) > 0.5, -1.0, 1.0)
    # np.random.uniform(W) draws from (1, W]: low=W, high=1.
    u = jax.random.uniform(k_centre, (b, 2))
    centre = jnp.array([w, h], jnp.float32) + (1.0 - jnp.array([w, h], jnp.float32)) * u
    out = x
    if geometric:  # one gather: each image's own matrix, the identity for other ops
      eye = jnp.tile(jnp.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]), (b, 1))
      matrix = eye
      for op in geometric:
        picked = (choice == names.index(op))[:, None]
        matrix = jnp.where(picked, affine_matrix(op, op_value(op, magnitude), sign, h, w), matrix)
      out = affine(x, matrix)
    for i, op in enumerate(names):
      if op in GEOMETRIC:
        continue
      value = op_value(op, magnitude)
      result = cutout(x, value, centre) if op == "cutout" else _COLOUR_OPS[op](x, value)
      out = jnp.where((choice == i)[:, None, None, None], result, out)
    x = out
  return x.astype(jnp.uint8)
