"""`augment.normalize` and its inverse `augment.denormalize`, for every normalisation: the
mixing picture shows images through the inverse, and a pretrained backbone needs the
statistics its weights were trained with."""
import numpy as np
import pytest

from backmix_jax.data import augment
from backmix_jax.data.core import DataError


def _images(channels):
  """uint8 [1, 16, 16, C]: every value 0..255 once per channel."""
  return np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), channels, axis=-1)


@pytest.mark.parametrize("mode", augment.NORMALIZATIONS)
def test_normalize_then_denormalize_gives_the_image_back(mode):
  """Every uint8 value round-trips to value/255; black maps to `black_value`."""
  images = _images(3)
  x = np.asarray(augment.normalize(images, mode))
  back = np.asarray(augment.denormalize(x, mode))
  np.testing.assert_allclose(back, images / 255.0, atol=1e-6)
  np.testing.assert_array_equal(x[0, 0, 0], augment.black_value(mode, 3))


def test_each_normalisation_has_its_published_values():
  """'unit' is x/255 and 'cssr' (x/255 - 0.5) / 0.25 exactly (the numbers of every earlier
  run depend on it); 'imagenet' uses torchvision's per-channel statistics, 'half' maps to
  [-1, 1]."""
  images = _images(3)
  x = images.astype(np.float32) / 255.0
  np.testing.assert_array_equal(augment.normalize(images, "unit"), x)
  np.testing.assert_array_equal(augment.normalize(images, "cssr"), (x - 0.5) / 0.25)
  np.testing.assert_allclose(augment.normalize(images, "imagenet")[0, 15, 15],
                             (1.0 - np.array([0.485, 0.456, 0.406])) /
                             np.array([0.229, 0.224, 0.225]), rtol=1e-6)
  np.testing.assert_allclose(augment.normalize(images, "half")[0, 15, 15], [1.0] * 3)
  # Black padding: +0.0 for 'unit' (not -0.0), -2 for 'cssr', per channel for 'imagenet'.
  assert np.signbit(augment.black_value("unit", 1)) == np.False_
  assert float(augment.black_value("cssr", 1)) == -2.0
  assert augment.black_value("imagenet", 3).shape == (3,)


def test_pad_crop_pads_each_channel_with_its_own_black():
  """With per-channel statistics, every crop is a window of the image padded with each
  channel's own black (NumPy's pad per channel), and some windows do reach the border."""
  import jax
  x = np.asarray(augment.normalize(_images(3), "imagenet"))
  black = np.asarray(augment.black_value("imagenet", 3))
  padded = np.stack([np.pad(x[0, ..., c], 4, constant_values=black[c]) for c in range(3)], -1)
  windows = {(i, j): padded[i:i + 16, j:j + 16] for i in range(9) for j in range(9)}
  out = np.asarray(augment.random_pad_crop(jax.random.key(0), np.repeat(x, 16, 0), 4, black))
  found = [next(o for o, w in windows.items() if np.array_equal(w, img)) for img in out]
  assert any(o != (4, 4) for o in found)


def test_per_channel_statistics_refuse_other_channel_counts():
  """'imagenet' on 1-channel images is a one-line DataError naming data.channels."""
  with pytest.raises(DataError, match="data.channels=3"):
    augment.normalize(_images(1), "imagenet")


def test_unknown_normalisation_is_refused_both_ways():
  with pytest.raises(ValueError, match="unknown normalisation"):
    augment.denormalize(np.zeros(2), "nonsense")
  with pytest.raises(ValueError, match="unknown normalisation"):
    augment.normalize(np.zeros(2, np.uint8), "nonsense")
