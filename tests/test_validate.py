"""Config validation: every problem named in one message, before data is read or code compiled."""
import pytest

from backmix_jax.training.validate import ConfigError, check_config, problems
from tests.helpers import quick_config


def test_default_configs_are_valid():
  assert problems(quick_config()) == []


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer.learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"backmix.fg_ratio": 0.0}, "fg_ratio must be in (0, 1]"),
    ({"backmix.fg_ratio": 1.5}, "fg_ratio must be in (0, 1]"),
    ({"backmix.patch_frac": 1.2}, "patch_frac must be in (0, 1]"),
    ({"backmix.patch_frac": 0.001}, "patch side 0 px does not fit"),
    ({"data.image_size": 34}, "grid 9x9 does not divide the image side 34"),
    ({"batch_size": 30}, "batch_size=30 must be a positive multiple of the 4 devices"),
    ({"framework": "osr9000"}, "framework='osr9000' is unknown"),
    ({"model": "vit_huge"}, "model='vit_huge' is unknown"),
    ({"dataset": "imagenet"}, "unknown benchmark 'imagenet'"),
    ({"protocol": "nope"}, "protocol"),
    ({"trial": 5}, "trial must be an integer in 0..4"),
    ({"data.source": "npz:/no/such/file.npz"}, "does not exist"),
    ({"backmix.cam_source": "memory"}, "backmix.cam_source='memory' is not one of live, bank"),
    ({"nan_policy": "ignore"}, "nan_policy='ignore'"),
])
def test_each_problem_is_named(overrides, message):
  cfg = quick_config(**overrides)
  with pytest.raises(ConfigError, match="invalid config") as e:
    check_config(cfg)
  assert message in str(e.value)


def test_all_problems_reported_together():
  cfg = quick_config(trial=9, **{"optimizer.learning_rate": -1.0, "backmix.fg_ratio": 2.0})
  found = problems(cfg)
  assert len(found) == 3
