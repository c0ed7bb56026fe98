"""`augment.normalize` and its inverse `augment.denormalize`, for every normalisation: the
mixing picture shows images through the inverse (it once inverted 'cssr' by hand)."""
import numpy as np
import pytest

from backmix_jax.data import augment


@pytest.mark.parametrize("mode", augment.NORMALIZATIONS)
def test_normalize_then_denormalize_gives_the_image_back(mode):
  """Every uint8 value round-trips to value/255; black maps to `black_value`."""
  images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  x = np.asarray(augment.normalize(images, mode))
  back = np.asarray(augment.denormalize(x, mode))
  np.testing.assert_allclose(back, images / 255.0, atol=1e-6)
  assert x[0, 0, 0, 0] == augment.black_value(mode)


def test_unknown_normalisation_is_refused_both_ways():
  with pytest.raises(ValueError, match="unknown normalisation"):
    augment.denormalize(np.zeros(2), "imagenet")
  with pytest.raises(ValueError, match="unknown normalisation"):
    augment.normalize(np.zeros(2, np.uint8), "imagenet")
