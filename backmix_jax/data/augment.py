"""On-device preprocessing and augmentation: pure jnp functions run inside the train step.

Images cross the host-device boundary as uint8 (4x less traffic than float32) and are
normalised, mixed and augmented on the accelerator.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NORMALIZATIONS = ("cssr", "unit")


def normalize(images: jnp.ndarray, mode: str) -> jnp.ndarray:
  """uint8 [B,H,W,C] -> float32 [B,H,W,C]: 'unit' x/255 (ARPL), 'cssr' (x/255-0.5)/0.25."""
  x = images.astype(jnp.float32) / 255.0
  if mode == "unit":
    return x
  if mode == "cssr":
    return (x - 0.5) / 0.25
  raise ValueError(f"unknown normalisation {mode!r}; choose from {NORMALIZATIONS}")


def denormalize(x, mode: str):
  """Inverse of `normalize`: normalised float [...] -> x/255 values (about [0, 1], unclipped)."""
  if mode == "unit":
    return x
  if mode == "cssr":
    return x * 0.25 + 0.5
  raise ValueError(f"unknown normalisation {mode!r}; choose from {NORMALIZATIONS}")


def black_value(mode: str) -> float:
  """The normalised value of a black (0) pixel: what zero padding means before normalising."""
  return 0.0 if mode == "unit" else -2.0


def random_flip(rng: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
  """[B,H,W,C] -> [B,H,W,C], each image mirrored left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_pad_crop(rng: jax.Array, images: jnp.ndarray, padding: int, pad_value: float) -> jnp.ndarray:
  """[B,H,W,C] -> [B,H,W,C]: pad by `padding` with `pad_value`, crop H x W at a random offset."""
  if padding == 0:
    return images
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   constant_values=pad_value)
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


def augment(rng: jax.Array, images: jnp.ndarray, *, flip: bool, crop_padding: int,
            normalization: str) -> jnp.ndarray:
  """Flip and pad-crop of normalised images [B,H,W,C] (after mixing, as the released code)."""
  k_flip, k_crop = jax.random.split(rng)
  if flip:
    images = random_flip(k_flip, images)
  return random_pad_crop(k_crop, images, crop_padding, black_value(normalization))
