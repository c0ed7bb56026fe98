"""Image conversion: resize, channel conversion and decoding of encoded images.

Every source's arrays pass through `conform` (resize to the configured side with Pillow's
bilinear filter, as torchvision's Resize on PIL images does in ARPL, and set the channels:
grey -> RGB by repetition as ARPL's MNIST loader does, RGB -> grey with Pillow's luma
weights); `decode_images` turns JPEG / PNG bytes into uint8 arrays with Pillow or tf.data
(same pixels either way). All arrays are uint8 [N, H, W, C].
"""
from __future__ import annotations

import io
import sys
from typing import Sequence

import numpy as np

from backmix_jax.data.core import DataError, UndecodableImage


def resize_nearest(images: np.ndarray, size: int) -> np.ndarray:
  """[N,h,w,C] -> [N,size,size,C] by nearest-neighbour index mapping (exact for integer scales)."""
  n, h, w, c = images.shape
  rows = (np.arange(size) * h) // size
  cols = (np.arange(size) * w) // size
  return images[:, rows][:, :, cols]


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """[N,h,w,C] uint8 -> [N,size,size,C] with Pillow's bilinear filter.

  Pillow, not a NumPy formula, so the pixels are those of torchvision's
  Resize((size, size)) on PIL images (ARPL's transform), rounding included.
  """
  from PIL import Image
  n, _, _, c = images.shape
  out = np.empty((n, size, size, c), np.uint8)
  bilinear = Image.Resampling.BILINEAR
  for i, image in enumerate(images):
    if c == 3:
      out[i] = np.asarray(Image.fromarray(image).resize((size, size), bilinear))
    else:
      for k in range(c):
        out[i, ..., k] = np.asarray(Image.fromarray(image[..., k]).resize((size, size), bilinear))
  return out


def resize_shorter_center_crop(image: np.ndarray, size: int,
                               crop_fraction: float = 0.875) -> np.ndarray:
  """[h,w,C] uint8 -> [size,size,C]: the shorter side resized (Pillow bilinear) to
  s = round(size / crop_fraction), the longer one in proportion, then the central
  size x size window.

  The ImageNet evaluation transform (torchvision Resize(256) then CenterCrop(224) at the
  default fraction, with their rounding): it keeps the aspect ratio, where
  `resize_bilinear` squashes the image (Resize((s, s)), the fine-grained recipes'). One
  image at a time, so a streaming reader can call it per record.
  """
  if not 0 < crop_fraction <= 1:
    raise DataError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
  h, w, _ = image.shape
  short = int(round(size / crop_fraction))
  new_h, new_w = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
  out = _resize_one(image, new_w, new_h)
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  return out[top:top + size, left:left + size]


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
  """[h,w,C] uint8 -> [size,size,C]: torchvision's RandomResizedCrop (the training
  transform of the ImageNet-style recipes) with its parameter search, one image at a time:
  up to 10 draws of an area fraction in `scale` and a log-uniform aspect ratio in `ratio`
  until the window fits, else the largest central window of a ratio in range; the window
  resized to size x size with Pillow's bilinear filter. Every draw comes from `rng`, so a
  (seed, step, row) generator makes the crop a pure function of them."""
  h, w, _ = image.shape
  area, log_ratio = h * w, np.log(ratio)
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
      break
  else:
    if w / h < min(ratio):
      cw, ch = w, int(round(w / min(ratio)))
    elif w / h > max(ratio):
      cw, ch = int(round(h * max(ratio))), h
    else:
      cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
  return _resize_one(image[top:top + ch, left:left + cw], size, size)


def _resize_one(image: np.ndarray, width: int, height: int) -> np.ndarray:
  """[h,w,C] uint8 -> [height,width,C] with Pillow's bilinear filter (RGB at once, other
  channel counts plane by plane)."""
  from PIL import Image
  bilinear = Image.Resampling.BILINEAR
  c = image.shape[-1]
  planes = [image] if c == 3 else [image[..., k] for k in range(c)]
  resized = [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((width, height),
                                                                         bilinear))
             for p in planes]
  return resized[0] if c == 3 else np.stack(resized, axis=-1)


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """[N,H,W,C] uint8 -> [N,H,W,channels]: grey -> RGB by repetition, RGB -> grey by luma."""
  c = images.shape[-1]
  if channels not in (1, 3):
    raise DataError(f"channels must be 1 or 3, got {channels}")
  if c == channels:
    return images
  if c == 1:
    return np.repeat(images, 3, axis=-1)
  if c == 3:
    # Pillow's convert("L") in fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    rgb = images.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]
  raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def conform(images: np.ndarray, image_size: int | None, channels: int | None) -> np.ndarray:
  """[N,h,w,c] -> [N,image_size,image_size,channels]; None keeps that property as it is."""
  if image_size is not None and images.shape[1:3] != (image_size, image_size):
    images = resize_bilinear(images, image_size)
  if channels is not None:
    images = to_channels(images, channels)
  return images


def _decode_pillow(blob: bytes) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(blob)) as image:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _decode_tf(blobs: Sequence[bytes]) -> np.ndarray | None:
  """All images with tf.data on every core; None when they differ in size or are not JPEG.

  INTEGER_ACCURATE is the DCT libjpeg (and so Pillow) uses by default: the two decoders
  give the same pixels, so the choice of decoder never changes the data.
  """
  import tensorflow as tf

  def decode(blob):
    return tf.io.decode_jpeg(blob, channels=3, dct_method="INTEGER_ACCURATE")

  ds = tf.data.Dataset.from_tensor_slices(list(blobs))
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(4096)
  try:
    return np.concatenate(list(ds.as_numpy_iterator()))
  except tf.errors.OpError:
    return None


def decode_images(blobs: Sequence[bytes], size: int | None = None,
                  decoder: str = "auto") -> np.ndarray:
  """Encoded images (JPEG, PNG) -> uint8 [N,H,W,3].

  size: resize every image that is not size x size (bilinear, as `resize_bilinear`);
    None requires all images to share one shape.
  decoder: 'pillow', 'tf' (tf.data, JPEG only, falls back to Pillow), or 'auto': tf only
    when TensorFlow is already imported, because importing it just to decode is slow and
    can claim accelerator memory.
  """
  if decoder not in ("auto", "pillow", "tf"):
    raise DataError(f"decoder must be auto, pillow or tf, got {decoder!r}")
  if not blobs:
    raise DataError("no images to decode")
  if decoder == "tf" or (decoder == "auto" and sys.modules.get("tensorflow") is not None):
    try:
      images = _decode_tf(blobs)
    except ImportError:
      images = None
    if images is not None:
      return conform(images, size, None)

  def decode(i):
    try:
      return _decode_pillow(blobs[i])
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
      raise UndecodableImage(i, e) from None

  first = decode(0)
  shape = (size, size, 3) if size is not None else first.shape
  out = np.empty((len(blobs),) + shape, np.uint8)
  for i in range(len(blobs)):
    image = first if i == 0 else decode(i)
    if image.shape != shape:
      if size is None:
        raise DataError(f"images differ in size ({image.shape} vs {shape}): pass an image_size")
      image = resize_bilinear(image[None], size)[0]
    out[i] = image
  return out
