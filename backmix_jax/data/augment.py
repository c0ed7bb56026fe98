"""On-device preprocessing and augmentation: pure jnp functions run inside the train step.

Images cross the host-device boundary as uint8 (4x less traffic than float32) and are
normalised, mixed and augmented on the accelerator.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from backmix_jax.data.core import DataError

# Mean and standard deviation of x/255 per channel (a single value: every channel), as each
# code base or weight family normalises: a pretrained backbone expects the statistics it was
# trained with (README, "Pretrained backbones").
NORMALIZATIONS = {
    "cssr": (0.5, 0.25),   # CSSR, MEDAF and Vaze et al.'s code: (x/255 - 0.5) / 0.25
    "unit": (0.0, 1.0),    # ARPL: x/255
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision, DINO
    "half": (0.5, 0.5),    # timm's AugReg ViTs: [-1, 1]
}


def _stats(mode: str, channels: int):
  """(mean, std) of `mode`: NumPy float32 [] or [C], broadcastable to [..., channels] (NumPy
  so that `denormalize` of NumPy images stays on the host; jnp takes them as constants)."""
  if mode not in NORMALIZATIONS:
    raise ValueError(f"unknown normalisation {mode!r}; choose from {', '.join(NORMALIZATIONS)}")
  mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[mode])
  if mean.ndim and mean.shape[0] != channels:
    raise DataError(f"data.normalize={mode!r} has statistics for {mean.shape[0]} channels, the "
                    f"images have {channels}: set data.channels={mean.shape[0]} or another "
                    f"normalisation")
  return mean, std


def normalize(images: jnp.ndarray, mode: str) -> jnp.ndarray:
  """uint8 [B,H,W,C] -> float32 [B,H,W,C]: (x/255 - mean) / std with `mode`'s statistics
  (NORMALIZATIONS; 'unit' is x/255, 'cssr' (x/255 - 0.5) / 0.25)."""
  mean, std = _stats(mode, images.shape[-1])
  return (images.astype(jnp.float32) / 255.0 - mean) / std


def denormalize(x, mode: str):
  """Inverse of `normalize`: normalised float [...,C] -> x/255 values (about [0, 1],
  unclipped), with the array type of `x` (NumPy in, NumPy out)."""
  mean, std = _stats(mode, x.shape[-1])
  return x * std + mean


def black_value(mode: str, channels: int) -> np.ndarray:
  """float32 [] or [C]: the normalised value of a black (0) pixel, what zero padding means
  before normalising."""
  mean, std = _stats(mode, channels)
  return (0.0 - mean) / std  # not -mean / std: 'unit' pads with +0.0, not -0.0


def random_flip(rng: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
  """[B,H,W,C] -> [B,H,W,C], each image mirrored left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_pad_crop(rng: jax.Array, images: jnp.ndarray, padding: int,
                    pad_value) -> jnp.ndarray:
  """[B,H,W,C] -> [B,H,W,C]: pad by `padding` with `pad_value` (float32 [] or [C]), crop
  H x W at a random offset."""
  if padding == 0:
    return images
  b, h, w, c = images.shape
  canvas = jnp.broadcast_to(jnp.asarray(pad_value, images.dtype),
                            (b, h + 2 * padding, w + 2 * padding, c))
  padded = jax.lax.dynamic_update_slice(canvas, images, (0, padding, padding, 0))
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
  return random_pad_crop(k_crop, images, crop_padding,
                         black_value(normalization, images.shape[-1]))
