"""Image synthesis of the fore-/background diagnostic, in NumPy: digit glyphs, procedural
stripe textures and alpha compositing of white digits onto dimmed backgrounds."""
from __future__ import annotations

import numpy as np

from backmix_jax.data.core import DataError
from backmix_jax.data.composite.spec import NUM_TEXTURE_CLASSES

MASK_THRESHOLD = 0.25  # true foreground: alpha above this (the stroke, half its blurred rim)
_CHUNK = 4096  # images composed per vectorised block (bounds float32 temporaries)


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
