"""The class lists of every protocol, benchmark and trial, checked against their sources.

The published lists come from ../shared/data/osr_splits.json (skipped when absent) and
from the literal lists of docs/data.md, written out here.
"""
import json
import os
import pathlib

import pytest

from backmix_jax.data import splits
from backmix_jax.data.benchmarks import BENCHMARKS
from backmix_jax.data.core import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("BACKMIX_SHARED_DATA", REPO.parent / "shared" / "data"))

# docs/data.md, verbatim.
DOC_CSSR = [[2, 3, 4, 5, 6, 7], [1, 2, 4, 6, 7, 8], [0, 3, 4, 5, 6, 8], [0, 1, 4, 6, 8, 9],
             [0, 2, 3, 5, 6, 7]]
DOC_DIAS = [[0, 1, 2, 4, 5, 9], [0, 3, 5, 7, 8, 9], [0, 1, 5, 6, 7, 8], [3, 4, 5, 7, 8, 9],
             [0, 1, 2, 3, 7, 8]]
DOC_DIAS_PLUS10 = [[3, 15, 19, 21, 42, 46, 66, 72, 78, 98],
                    [26, 31, 34, 44, 45, 63, 65, 77, 93, 98],
                    [7, 11, 66, 75, 77, 93, 95, 97, 98, 99],
                    [2, 11, 15, 24, 32, 34, 63, 88, 93, 95],
                    [1, 11, 38, 42, 44, 45, 63, 64, 66, 67]]

K = {"mnist": 6, "svhn": 6, "cifar10": 6, "cifar_plus10": 4, "cifar_plus50": 4,
     "tinyimagenet": 20, "ood_cifar10_vs_cifar100": 10, "ood_cifar10_vs_svhn": 10, "digits": 6,
     "ssb_cub": 100, "ssb_scars": 98, "ssb_aircraft": 50, "ssb_imagenet": 1000}
ARPL_KEY = {"mnist": "mnist", "svhn": "svhn", "cifar10": "cifar10", "tinyimagenet": "tiny_imagenet"}


@pytest.fixture(scope="module")
def published():
  path = SHARED / "osr_splits.json"
  if not path.is_file():
    pytest.skip(f"{path} not available")
  return json.loads(path.read_text())


def all_splits():
  """Every (protocol, benchmark, trial) that get_split defines."""
  for protocol, benchmarks in splits.COVERAGE.items():
    for benchmark in benchmarks:
      for trial in range(splits.NUM_TRIALS):
        if protocol == "neal" and benchmark.startswith("cifar_plus") and trial:
          continue
        if protocol == "ssb" and benchmark.startswith("ssb_") and trial:  # one split each
          continue
        yield protocol, benchmark, trial


@pytest.mark.parametrize("protocol, index_of_trial", [("arpl", lambda t: 4 - t),
                                                      ("vaze", lambda t: t)])
def test_arpl_and_vaze_lists_match_published_with_their_trial_order(published, protocol,
                                                                     index_of_trial):
  """arpl trial t = published list 4-t (osr.py's reverse walk); vaze trial t = list t."""
  lists = published["arpl"]["splits"]
  for trial in range(5):
    i = index_of_trial(trial)
    for benchmark, key in ARPL_KEY.items():
      s = splits.get_split(benchmark, protocol, trial)
      num = 200 if benchmark == "tinyimagenet" else 10
      assert list(s.known) == lists[key][i]
      assert list(s.unknown) == sorted(set(range(num)) - set(lists[key][i]))
      assert s.unknown_source is None and s.protocol == protocol
    for n in (10, 50):
      s = splits.get_split(f"cifar_plus{n}", protocol, trial)
      assert list(s.known) == lists["cifar100"][i]
      assert list(s.unknown) == lists[f"cifar100-{n}"][i]
      assert s.unknown_source == "cifar100"


def test_published_checks_hold(published):
  """The json's own checks: CIFAR10 unknown complements, CIFAR+10 a suffix of CIFAR+50."""
  checks = published["checks"]
  for i, unknown in enumerate(checks["arpl_cifar10_unknown_complements"]):
    assert list(splits.get_split("cifar10", "vaze", i).unknown) == unknown
  for i, is_suffix in enumerate(checks["arpl_cifar_plus_10_is_suffix_of_plus_50"]):
    u10 = splits.get_split("cifar_plus10", "vaze", i).unknown
    u50 = splits.get_split("cifar_plus50", "vaze", i).unknown
    assert (u50[-10:] == u10) == is_suffix


def test_cifar10_repeated_class_set_is_kept_as_published():
  """ARPL's lists 0 and 1 share one class set: vaze trials 0/1 = arpl trials 4/3."""
  v0, v1 = (splits.get_split("cifar10", "vaze", t) for t in (0, 1))
  a4, a3 = (splits.get_split("cifar10", "arpl", t) for t in (4, 3))
  assert set(v0.known) == set(v1.known) == {0, 1, 4, 6, 7, 9}
  assert v0.known != v1.known  # same set, different label order
  assert (a4.known, a3.known) == (v0.known, v1.known)
  assert len({frozenset(splits.get_split("cifar10", "arpl", t).known) for t in range(5)}) == 4


def test_neal_lists_match_published(published):
  """Neal: the json's unknown lists, known = the other six; CIFAR+N has one split."""
  neal = published["neal_osrci_original_code"]
  for benchmark in ("mnist", "svhn", "cifar10"):
    for trial, unknown in enumerate(neal["unknown_classes_mnist_svhn_cifar10"]):
      s = splits.get_split(benchmark, "neal", trial)
      assert list(s.unknown) == unknown
      assert list(s.known) == sorted(set(range(10)) - set(unknown))
  for n in (10, 50):
    s = splits.get_split(f"cifar_plus{n}", "neal", 0)
    assert s.known == (0, 1, 8, 9)
    assert list(s.unknown) == neal[f"cifar_plus_n_unknown_{n}"]
    animal = published["class_names"]["cifar100_is_animal_neal"]
    assert all(animal[c] for c in s.unknown)
    with pytest.raises(DataError, match="only trial 0"):
      splits.get_split(f"cifar_plus{n}", "neal", 1)


@pytest.mark.parametrize("dataset", ["cifar10", "svhn"])
def test_cssr_and_dias_lists_match_docs(dataset):
  """CSSR and DIAS/MEDAF known lists of docs/data.md, trial t = t-th list."""
  for trial in range(5):
    assert list(splits.get_split(dataset, "cssr", trial).known) == DOC_CSSR[trial]
    assert list(splits.get_split(dataset, "dias", trial).known) == DOC_DIAS[trial]


def test_dias_cifar_plus_matches_docs():
  """DIAS CIFAR+N: known airplane, automobile, ship, truck; CIFAR+10 unknowns as in docs/data.md."""
  for trial in range(5):
    s10 = splits.get_split("cifar_plus10", "dias", trial)
    s50 = splits.get_split("cifar_plus50", "dias", trial)
    assert s10.known == s50.known == (0, 1, 8, 9)
    assert list(s10.unknown) == DOC_DIAS_PLUS10[trial]


def test_tinyimagenet_lists_of_cssr_and_dias_are_20_distinct_ascending_classes():
  """The TinyImageNet lists copied from the CSSR / DIAS repositories are well formed."""
  for protocol in ("cssr", "dias"):
    known_sets = set()
    for trial in range(5):
      known = splits.get_split("tinyimagenet", protocol, trial).known
      assert list(known) == sorted(set(known)) and len(known) == 20
      assert 0 <= known[0] and known[-1] < 200
      known_sets.add(known)
    assert len(known_sets) == 5


def test_every_split_has_k_known_disjoint_unknowns_and_covers_the_dataset():
  """K per benchmark (6/6/6/4/4/20/10), no class both known and unknown, lists complete."""
  count = 0
  for protocol, benchmark, trial in all_splits():
    s = splits.get_split(benchmark, protocol, trial)
    count += 1
    assert len(s.known) == len(set(s.known)) == K[benchmark], (protocol, benchmark, trial)
    assert s.protocol == protocol and s.provenance
    if benchmark.startswith("ood_"):
      assert s.known == tuple(range(10)) and s.unknown is None
      assert s.unknown_source == {"ood_cifar10_vs_cifar100": "cifar100",
                                  "ood_cifar10_vs_svhn": "svhn"}[benchmark]
    elif benchmark == "ssb_imagenet":  # all of ImageNet-1K known, the 21K-P classes unknown
      assert s.known == tuple(range(1000)) and s.unknown == tuple(range(1980))
      assert s.unknown_source == "imagenet21k"
    elif benchmark.startswith("cifar_plus"):
      n = int(benchmark[len("cifar_plus"):])
      assert len(s.unknown) == len(set(s.unknown)) == n and s.unknown_source == "cifar100"
      assert all(0 <= c < 100 for c in s.unknown) and all(0 <= c < 10 for c in s.known)
    else:
      num = BENCHMARKS[benchmark].num_classes
      assert not set(s.known) & set(s.unknown)
      assert sorted(s.known + s.unknown) == list(range(num))
      assert s.unknown_source is None
  assert count == 5 * sum(len(b) for b in splits.COVERAGE.values()) - 2 * 4 - 4 * 4


def test_digits_reuses_the_mnist_lists():
  """The scikit-learn digits demo runs the MNIST lists of each protocol."""
  for protocol in ("arpl", "vaze", "neal", "dias"):
    for trial in range(5):
      assert (splits.get_split("digits", protocol, trial).known
              == splits.get_split("mnist", protocol, trial).known)


def test_provenance_names_the_source_repository():
  """Each split says where its lists come from."""
  assert "iCGY96/ARPL" in splits.get_split("cifar10", "arpl", 0).provenance
  assert "published list 4" in splits.get_split("cifar10", "arpl", 0).provenance
  assert "sgvaze" in splits.get_split("cifar10", "vaze", 0).provenance
  assert "lwneal" in splits.get_split("mnist", "neal", 2).provenance
  assert "xyzedd/CSSR" in splits.get_split("svhn", "cssr", 1).provenance
  assert "MEDAF" in splits.get_split("cifar_plus50", "dias", 3).provenance


@pytest.mark.parametrize("args, message", [
    (("imagenet", "arpl", 0), "unknown benchmark"),
    (("cifar10", "openmax", 0), "unknown split protocol"),
    (("cifar10", "arpl", 5), "trial must be"),
    (("cifar10", "arpl", -1), "trial must be"),
    (("cifar10", "arpl", 1.0), "trial must be"),
    (("cifar10", "arpl", True), "trial must be"),
    (("mnist", "cssr", 0), "has no 'mnist' split"),
    (("tinyimagenet", "neal", 0), "has no 'tinyimagenet' split"),
    (("digits", "cssr", 0), "has no 'digits' split"),
])
def test_bad_requests_raise_one_line_data_errors(args, message):
  """Unknown benchmark/protocol, trial outside 0..4, or an undefined pair: one clear line."""
  with pytest.raises(DataError, match=message) as info:
    splits.get_split(*args)
  assert "\n" not in str(info.value)


def test_split_is_immutable_and_trial_accepts_numpy_ints():
  """Splits are frozen values; a numpy integer trial (from a config) is accepted."""
  import numpy as np
  s = splits.get_split("svhn", "arpl", np.int64(2))
  assert s == splits.get_split("svhn", "arpl", 2)
  with pytest.raises(AttributeError):
    s.known = (0,)
