"""The 'vaze' recipe (configs/default.py RECIPES, docs/recipes.md) and RandAugment in the
train step: the recipe's values per benchmark as Vaze et al.'s files give them, the config
checks and run identity of the RandAugment fields, the step's RandAugment keys, and one real
train step with the recipe's RandAugment, label smoothing and schedule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax.data.randaugment import randaugment
from backmix_jax.training import identity
from backmix_jax.training.optimizer import learning_rate_schedule
from backmix_jax.training.step import randaugment_batch
from backmix_jax.training.validate import problems
from tests.helpers import quick_config, run_steps
from tests.test_configs import load

# utils/paper_hyperparameters.csv, Softmax rows: benchmark -> (image size, lr, RandAugment N,
# M, label smoothing, batch size); the op list of data/augmentations/randaugment.py
# (augment_list_svhn for svhn and mnist); Adam on TinyImageNet (methods/ARPL/osr.py).
CSV = {"mnist": (32, 0.1, 1, 8, 0.0, 128, "digits"), "svhn": (32, 0.1, 1, 18, 0.0, 128, "digits"),
       "cifar10": (32, 0.1, 1, 6, 0.0, 128, "full"),
       "cifar_plus10": (32, 0.1, 1, 6, 0.0, 128, "full"),
       "cifar_plus50": (32, 0.1, 1, 6, 0.0, 128, "full"),
       "tinyimagenet": (64, 0.01, 1, 9, 0.9, 128, "full")}


def test_vaze_recipe_has_their_rows_and_schedule():
  """Per benchmark the CSV's row; everywhere classifier32, 600 epochs, cosine with 2 warm
  restarts, floor lr/1000, 10 warm-up epochs, pad-4 crop and flip (their 'rand-augment'
  transform flips digits too); SGD momentum 0.9 wd 1e-4 but Adam without decay on
  TinyImageNet; the OOD benchmarks take CIFAR-10's row."""
  for name, (size, lr, n, m, ls, batch, ops) in CSV.items():
    c = load(name, "vaze")
    d, o = c.data, c.optimizer
    assert (d.image_size, o.learning_rate, d.randaugment_n, d.randaugment_m, c.label_smoothing,
            c.batch_size, d.randaugment_ops) == (size, lr, n, m, ls, batch, ops), name
    assert (c.model, c.num_epochs, c.framework, d.flip, d.crop_padding) == (
        "classifier32", 600, "softmax", True, 4)
    assert (o.schedule, o.restarts, o.min_lr_ratio, o.warmup_epochs) == (
        "cosine_restarts", 2, 1e-3, 10)
    assert (o.name, o.momentum, o.weight_decay) == (
        ("adam", 0.0, 0.0) if name == "tinyimagenet" else ("sgd", 0.9, 1e-4))
  ood = load("ood_cifar10_vs_svhn", "vaze")
  assert (ood.data.randaugment_m, ood.model) == (6, "resnet34")


def test_randaugment_fields_are_checked_and_part_of_the_schedule():
  """Magnitude 0..30, a known op list, N >= 0; refused with the true masks of the oracle
  CAMs (they would not follow the geometric ops); a workdir refuses another RandAugment."""
  assert problems(quick_config(**{"data.randaugment_n": 2, "data.randaugment_m": 30})) == []
  found = problems(quick_config(**{"data.randaugment_n": -1, "data.randaugment_m": 31,
                                   "data.randaugment_ops": "all"}))
  assert any("data.randaugment_n must be an integer >= 0" in p for p in found)
  assert any("data.randaugment_m must be an integer in 0..30" in p for p in found)
  assert any("data.randaugment_ops='all' is not one of full, digits" in p for p in found)
  oracle = quick_config(**{"data.randaugment_n": 1, "backmix.cam_source": "oracle"})
  assert any("would not follow RandAugment" in p for p in problems(oracle))
  diff = identity.differences(identity.full_identity(quick_config()),
                              identity.full_identity(quick_config(**{"data.randaugment_n": 1})))
  assert diff == {"data.randaugment_n": (0, 1)}


def test_step_randaugments_images_and_partners_with_their_own_keys():
  """randaugment_n = 0: the batch itself (the step is unchanged); otherwise images and bank
  partners each with their own key, labels and indices untouched."""
  dcfg = quick_config(**{"data.randaugment_n": 1, "data.randaugment_m": 6}).data
  batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)), jnp.uint8),
           "label": jnp.arange(4)}
  batch["partner_image"] = batch["image"][::-1]
  assert randaugment_batch(jax.random.key(0), batch, quick_config().data) is batch

  @jax.jit
  def both(key, batch):
    ra = lambda k, x: randaugment(k, x, num_ops=1, magnitude=6)
    return (randaugment_batch(key, batch, dcfg),
            ra(jax.random.fold_in(key, 0), batch["image"]),
            ra(jax.random.fold_in(key, 1), batch["partner_image"]))

  out, images, partners = both(jax.random.key(5), batch)
  np.testing.assert_array_equal(out["image"], images)
  np.testing.assert_array_equal(out["partner_image"], partners)
  np.testing.assert_array_equal(out["label"], batch["label"])
  assert not np.array_equal(out["image"], batch["image"])


@pytest.mark.slow
def test_a_train_step_with_the_recipes_augmentation_smoothing_and_schedule():
  """One real step on 4 devices (cnn_small, digits; BackMix off to keep the compile small)
  with RandAugment N 1 M 6, label smoothing 0.1 and cosine_restarts with a warm-up: it
  compiles under shard_map, is finite, and reports the schedule's rate."""
  c = quick_config(label_smoothing=0.1, num_epochs=4, **{
      "backmix.enabled": False, "data.randaugment_n": 1, "data.randaugment_m": 6,
      "optimizer.schedule": "cosine_restarts", "optimizer.restarts": 1,
      "optimizer.warmup_epochs": 1})
  run, _, history = run_steps(c, 1)
  schedule = learning_rate_schedule(c.optimizer, run.stream.steps_per_epoch, c.num_epochs)
  for step, metrics in enumerate(history):
    assert np.isfinite(metrics["loss"]) and bool(metrics["finite"])
    assert metrics["learning_rate"] == pytest.approx(float(schedule(step)))
