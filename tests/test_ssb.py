"""The Semantic Shift Benchmark (SSB): the host-side image helper, the readers of the
datasets' original folder layouts (written here as tiny synthetic trees), the class lists
per difficulty, and a tiny run that reports one row per difficulty."""
import numpy as np

from backmix_jax.data.images import resize_shorter_center_crop


def test_shorter_side_crop_keeps_the_aspect_and_takes_the_centre():
  """At crop_fraction 1 an image whose shorter side is already `size` is not resampled:
  the result is exactly its central window, for landscape and portrait alike."""
  image = np.random.RandomState(0).randint(0, 256, (16, 30, 3)).astype(np.uint8)
  assert np.array_equal(resize_shorter_center_crop(image, 16, 1.0), image[:, 7:23])
  portrait = image.transpose(1, 0, 2)
  assert np.array_equal(resize_shorter_center_crop(portrait, 16, 1.0), portrait[7:23])
  assert resize_shorter_center_crop(image, 8).shape == (8, 8, 3)
  assert resize_shorter_center_crop(image[..., :1], 8).shape == (8, 8, 1)
