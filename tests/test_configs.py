"""Benchmark configs: they load, pick the base framework's recipe, resolve every split the
tables publish, are overridable from the command line, and read their (mocked) data."""
import importlib
import inspect
import pathlib

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from backmix_jax.data import splits
from backmix_jax.data.benchmarks import BENCHMARKS as REGISTRY
from backmix_jax.data.core import DataError
from backmix_jax.training import validate
from configs import default

REPO = pathlib.Path(__file__).resolve().parents[1]
# Every config file, found by globbing: a new config is tested without editing this file
# (configs/default.py is the base the others build on, not a config).
CONFIGS = tuple(sorted(p.stem for p in (REPO / "configs").glob("*.py")
                       if p.stem not in ("__init__", "default")))


def load(name: str, *args):
  return importlib.import_module(f"configs.{name}").get_config(*args)


def takes_recipe(name: str) -> bool:
  get_config = importlib.import_module(f"configs.{name}").get_config
  return "recipe" in inspect.signature(get_config).parameters


# The benchmark configs: those that take a recipe of configs/default.py RECIPES.
BENCHMARKS = tuple(name for name in CONFIGS if takes_recipe(name))


def test_every_registered_benchmark_has_its_config_file():
  """configs/<name>.py for each benchmark of the registry; every recipe config is named
  after a registered benchmark."""
  assert set(REGISTRY) <= set(CONFIGS)
  assert set(BENCHMARKS) <= set(REGISTRY) and len(BENCHMARKS) >= 8


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_names_a_registered_benchmark_and_passes_the_config_check(name):
  """Recipe or not (digits and the diagnostic have their own settings): the base config's
  fields are kept, the benchmark is registered and its trial 0 resolves (under arpl, or
  under the one protocol that publishes its lists, as the SSB's), and the only check that
  may fail is a local data path that this machine lacks."""
  c = load(name)
  assert c.dataset in REGISTRY and c.trial == 0
  lists = REGISTRY[c.dataset].lists
  assert c.protocol == "arpl" if lists is None or "arpl" in lists else (c.protocol,) == tuple(lists)
  base = default.get_base_config()
  assert set(base.keys()) <= set(c.keys())
  assert set(base.data.keys()) <= set(c.data.keys())
  assert splits.get_split(c.dataset, c.protocol, c.trial).known
  found = [p for p in validate.problems(c) if not p.startswith("data.source path")]
  assert found == []


@pytest.mark.parametrize("name", BENCHMARKS)
@pytest.mark.parametrize("recipe", sorted(default.RECIPES))
def test_config_loads_names_its_benchmark_and_passes_the_config_check(name, recipe):
  """Every field of the base config is kept; the only check that may fail is a local data
  path that this machine lacks (TinyImageNet's folder)."""
  c = load(name, recipe)
  assert c.dataset == name and c.trial == 0 and c.protocol == "arpl"
  base = default.get_base_config()
  assert set(base.keys()) == set(c.keys())
  assert set(base.data.keys()) == set(c.data.keys())
  assert set(base.optimizer.keys()) == set(c.optimizer.keys())
  found = [p for p in validate.problems(c) if not p.startswith("data.source path")]
  assert found == []


def test_default_recipe_is_arpl():
  """get_config() with no argument = the ARPL recipe (classifier32 is the default backbone)."""
  for name in BENCHMARKS:
    assert load(name).to_dict() == load(name, "arpl").to_dict()


@pytest.mark.parametrize("name", ["mnist", "svhn", "cifar10", "cifar_plus10", "cifar_plus50"])
def test_arpl_recipe_fields(name):
  """docs/method.md, ARPL: SGD 0.1, momentum 0.9, wd 1e-4, x0.1 at 30/60/90/120, 100 epochs,
  batch 64, classifier32, inputs in [0,1], 32 px."""
  c = load(name)
  assert (c.model, c.batch_size, c.num_epochs, c.data.normalize) == ("classifier32", 64, 100, "unit")
  o = c.optimizer
  assert (o.name, o.learning_rate, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
  assert (o.schedule, tuple(o.milestones), o.decay) == ("multistep", (30, 60, 90, 120), 0.1)
  assert c.data.image_size == 32


@pytest.mark.parametrize("name, model", [("cifar10", "wrn40_4"), ("svhn", "wrn40_4"),
                                         ("mnist", "wrn40_4"), ("tinyimagenet", "resnet18")])
def test_cssr_recipe_fields(name, model):
  """docs/method.md, CSSR: SGD 0.4, no momentum, wd 5e-4, x0.1 at 120/190, 200 epochs,
  batch 128, (x-0.5)/0.25; WRN-40-4 at 32 px, ResNet-18 at 64 px."""
  c = load(name, "cssr")
  assert (c.model, c.batch_size, c.num_epochs, c.data.normalize) == (model, 128, 200, "cssr")
  o = c.optimizer
  assert (o.name, o.learning_rate, o.momentum, o.weight_decay) == ("sgd", 0.4, 0.0, 5e-4)
  assert (o.schedule, tuple(o.milestones), o.decay) == ("multistep", (120, 190), 0.1)


def test_dataset_specific_fields():
  """MNIST as ARPL: 3 channels at 32 px, no augmentation. TinyImageNet: 64 px from a folder,
  ARPL's Adam at 0.001 without weight decay. CIFAR/SVHN: pad-4 crop and flip. OOD: ResNet-34."""
  m = load("mnist")
  assert (m.data.source, m.data.channels, m.data.image_size) == ("tfds:mnist", 3, 32)
  assert (m.data.flip, m.data.crop_padding) == (False, 0)
  t = load("tinyimagenet")
  assert t.data.image_size == 64 and t.data.source.startswith("folder:")
  assert t.model == "classifier32"
  o = t.optimizer
  assert (o.name, o.learning_rate, o.weight_decay, tuple(o.milestones)) == (
      "adam", 1e-3, 0.0, (30, 60, 90, 120))
  assert load("tinyimagenet", "cssr").optimizer.name == "sgd"
  sources = {"svhn": "tfds:svhn_cropped", "cifar10": "tfds:cifar10", "cifar_plus10": "tfds:cifar10",
             "cifar_plus50": "tfds:cifar10", "ood_cifar10_vs_cifar100": "tfds:cifar10",
             "ood_cifar10_vs_svhn": "tfds:cifar10"}
  for name, source in sources.items():
    c = load(name)
    assert c.data.source == source and c.data.unknown_source == ""
    assert (c.data.flip, c.data.crop_padding, c.data.channels) == (True, 4, 0)
  for name in ("ood_cifar10_vs_cifar100", "ood_cifar10_vs_svhn"):
    assert load(name).model == load(name, "cssr").model == "resnet34"


@pytest.mark.parametrize("name", ["mnist", "svhn", "cifar10", "tinyimagenet"])
def test_arpl_cs_recipe_is_arpl_with_confusing_samples(name):
  """ARPL+CS = ARPL's script with --cs: every field as the ARPL recipe but the framework."""
  arpl, cs = load(name).to_dict(), load(name, "arpl_cs").to_dict()
  assert (arpl.pop("framework"), cs.pop("framework")) == ("softmax", "arpl_cs")
  assert arpl == cs


@pytest.mark.parametrize("name", ["cifar10", "svhn", "tinyimagenet"])
def test_medaf_recipe_fields(name):
  """Vanixxz/MEDAF: ResNet-18 at 32 and 64 px, SGD 0.1 momentum 0.9 wd 1e-5, x0.1 at epoch
  130, 150 epochs, batch 128, (x-0.5)/0.25, framework medaf."""
  c = load(name, "medaf")
  assert (c.framework, c.model, c.batch_size, c.num_epochs, c.data.normalize) == (
      "medaf", "resnet18", 128, 150, "cssr")
  o = c.optimizer
  assert (o.name, o.learning_rate, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 1e-5)
  assert (o.schedule, tuple(o.milestones), o.decay) == ("multistep", (130,), 0.1)


def test_recipes_without_a_framework_keep_the_configs_framework():
  """'arpl' and 'cssr' train whatever framework the config names (BackMix plugs into any)."""
  c = default.get_base_config()
  c.framework = "rcssr"
  assert default.apply_recipe(c, "cssr").framework == "rcssr"
  assert default.apply_recipe(c, "arpl").framework == "rcssr"


def test_unknown_recipe_is_refused():
  with pytest.raises(ValueError,
                     match="unknown recipe 'pytorch'; known: arpl, arpl_cs, cssr, medaf, vaze"):
    load("cifar10", "pytorch")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_published_trial_and_protocol_resolves(name):
  """Each protocol whose tables cover the benchmark resolves trials 0..4 (Neal's CIFAR+N:
  trial 0 only); the others are refused with a DataError."""
  c = load(name)
  resolved = 0
  for protocol in splits.PROTOCOLS:
    for trial in range(splits.NUM_TRIALS):
      c.protocol, c.trial = protocol, trial
      covered = name in splits.COVERAGE[protocol] and not (
          protocol == "neal" and name.startswith("cifar_plus") and trial > 0)
      if covered:
        split = splits.get_split(c.dataset, c.protocol, c.trial)
        assert split.protocol == protocol
        resolved += 1
      else:
        with pytest.raises(DataError):
          splits.get_split(c.dataset, c.protocol, c.trial)
  assert resolved >= 15  # at least arpl, vaze and dias, or the OOD benchmarks under all five


def test_command_line_picks_recipe_trial_and_protocol():
  """`--config=configs/cifar10.py:cssr --config.trial=3 --config.protocol=cssr` as
  backmix_jax/commands/cli.py parses it (config_flags, locked config)."""
  argv = ["prog", f"--config={REPO / 'configs' / 'cifar10.py'}:cssr", "--config.trial=3",
          "--config.protocol=cssr", "--config.data.source=npz:x.npz",
          "--config.optimizer.learning_rate=0.2"]
  fv = flags.FlagValues()
  # sys_argv: config_flags finds the override flags there (it reads sys.argv by default).
  holder = config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                           sys_argv=argv)
  fv(argv)
  c = holder.value
  assert (c.model, c.trial, c.protocol, c.data.source) == ("wrn40_4", 3, "cssr", "npz:x.npz")
  assert c.optimizer.learning_rate == 0.2 and c.optimizer.momentum == 0.0
  assert splits.get_split(c.dataset, c.protocol, c.trial).known == (0, 1, 4, 6, 8, 9)


def test_base_fields_added_for_benchmarks_have_neutral_defaults():
  """data.unknown_source='' defers to the split (digits and every older config unchanged)."""
  assert default.get_base_config().data.unknown_source == ""
  assert load("cifar10").data.get("unknown_source") == ""


# ---------------------------------------------------------------- data through the configs


# whole_split: the unknowns are the other dataset's entire (mocked, 60-image) test split.
@pytest.mark.parametrize("name, known, whole_split", [
    ("mnist", 6, False), ("svhn", 6, False), ("cifar10", 6, False), ("cifar_plus10", 4, False),
    ("cifar_plus50", 4, False), ("ood_cifar10_vs_cifar100", 10, True),
    ("ood_cifar10_vs_svhn", 10, True),
])
@pytest.mark.slow
def test_tfds_configs_build_their_open_set_from_mocked_tfds(tmp_path, name, known, whole_split):
  """load_open_set(config) on tfds.testing.mock_data: the source and unknown source are read,
  images come out at 32 x 32 x 3 (MNIST grey -> RGB at 32 px), known labels are 0..K-1 and
  unknowns -1."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from backmix_jax.data.openset import load_open_set
  c = load(name)
  c.data.data_dir = str(tmp_path)
  with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
    data = load_open_set(c)
  assert data.num_classes == known
  for split in (data.train, data.test_known, data.test_unknown):
    assert split.images.shape[1:] == (32, 32, 3) and split.images.dtype == np.uint8
  assert len(data.train) > 0 and data.train.labels.max() < known and data.train.labels.min() >= 0
  assert len(data.test_unknown) > 0 and (data.test_unknown.labels == -1).all()
  assert (len(data.test_unknown) == 60) == whole_split


def test_tinyimagenet_config_reads_a_folder_at_64px(tmp_path):
  """A generated tiny-imagenet-200 folder with 200 wnids (1 train + 1 val image each): the
  config's split picks 20 known classes, 180 unknown, all at 64 x 64 x 3."""
  from PIL import Image
  from backmix_jax.data.openset import load_open_set
  root = tmp_path / "tiny-imagenet-200"
  lines = []
  for i in range(200):
    wnid = f"n{i:08d}"
    (root / "train" / wnid / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64), (i, 0, 0)).save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
  (root / "val" / "images").mkdir(parents=True)
  for i in range(200):
    Image.new("RGB", (64, 64), (i, 0, 0)).save(root / "val" / "images" / f"val_{i}.JPEG")
  (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
  c = load("tinyimagenet")
  c.data.source = f"folder:{tmp_path}"
  data = load_open_set(c)
  assert data.known_classes == splits.get_split("tinyimagenet", "arpl", 0).known
  assert (len(data.train), len(data.test_known), len(data.test_unknown)) == (20, 20, 180)
  assert data.train.images.shape[1:] == (64, 64, 3)
  # known label k = class known[k]: red channel = class id (JPEG-lossy)
  red = data.train.images[..., 0].reshape(20, -1).mean(1)
  np.testing.assert_allclose(red, np.array(data.known_classes)[data.train.labels], atol=3)


def test_an_uncovered_protocol_fails_before_any_image_is_read():
  """load_open_set resolves the split first: MNIST under CSSR (no such list) names the
  protocol even though the source file does not exist."""
  from backmix_jax.data.openset import load_open_set
  c = load("mnist")
  c.protocol = "cssr"
  c.data.source = "npz:/nonexistent/mnist.npz"
  with pytest.raises(DataError, match="protocol 'cssr' has no 'mnist' split"):
    load_open_set(c)
  c.protocol = "arpl"
  with pytest.raises(DataError, match="no such file"):
    load_open_set(c)
