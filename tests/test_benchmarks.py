"""The benchmark registry (data/benchmarks.py): every entry is well formed, the facts that
used to be typed in several places are read from it (TFDS short names, coverage, published
numbers' keys), and a new benchmark is one entry."""
import pytest

from backmix_jax.data import benchmarks, sources, splits
from backmix_jax.data.benchmarks import BENCHMARKS, DATASETS, Benchmark, ClassLists
from backmix_jax.data.core import DataError
from backmix_jax.data.readers import tfds as tfds_reader
from backmix_jax.evaluation import published

LISTS_KEYS = {p.lists_key for p in splits.PROTOCOLS.values()}


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_entry_is_well_formed(name):
  """Keyed by its own name, on registered datasets, lists only of list-owning protocols,
  NUM_TRIALS lists each (or one released split), known and unknown lists paired."""
  b = BENCHMARKS[name]
  assert b.name == name and DATASETS[b.dataset.name] is b.dataset
  assert b.unknown_source is None or DATASETS[b.unknown_source.name] is b.unknown_source
  if b.lists is None:  # no class split: the unknowns are another dataset's test split
    assert b.unknown_source is not None
    return
  assert b.lists and set(b.lists) <= LISTS_KEYS
  for key, lists in b.lists.items():
    assert len(lists) in (1, splits.NUM_TRIALS), (name, key)
    assert lists.known is not None or lists.unknown is not None
    if lists.known is not None and lists.unknown is not None:
      assert len(lists.known) == len(lists.unknown)


def test_coverage_is_derived_from_the_registry():
  """A protocol covers the benchmarks with its lists (vaze: arpl's), then the OOD ones."""
  for name, protocol in splits.PROTOCOLS.items():
    listed = [b for b in BENCHMARKS.values() if b.lists and protocol.lists_key in b.lists]
    ood = [b for b in BENCHMARKS.values() if b.lists is None]
    assert splits.COVERAGE[name] == tuple(b.name for b in listed + ood)
  assert splits.COVERAGE["vaze"] == splits.COVERAGE["arpl"]


def test_tfds_short_names_come_from_the_dataset_registry():
  """mnist, svhn (svhn_cropped), cifar10, cifar100, cub (caltech_birds2011), scars (cars196):
  the datasets with a TFDS name, in registry order; the unknown-source message lists every
  reader and then them."""
  assert tfds_reader.TFDS_NAMES == {"mnist": "mnist", "svhn": "svhn_cropped",
                                    "cifar10": "cifar10", "cifar100": "cifar100",
                                    "cub": "caltech_birds2011", "scars": "cars196"}
  assert list(sources.READERS) == ["digits", "npz", "tfds", "folder", "arrayrecord", "cub",
                                   "aircraft", "scars", "imagenet", "imagenet21k"]
  with pytest.raises(DataError) as info:
    sources.load_source("imagenet")
  assert str(info.value) == ("unknown data source 'imagenet'; known: digits, npz:<path>, "
                             "tfds:<name>, folder:<path>, arrayrecord:<dir>, cub:<path>, "
                             "aircraft:<path>, scars:<path>, imagenet:<path>, "
                             "imagenet21k:<path>, mnist, svhn, cifar10, cifar100, cub, scars")


def test_published_numbers_are_keyed_by_registered_benchmarks_and_protocols():
  """Every published row names a registered benchmark and a protocol of splits.PROTOCOLS
  (or says it has none); vaze and arpl compare as one protocol (the same lists)."""
  for row in published.PUBLISHED:
    assert row.benchmark in BENCHMARKS, row
    assert row.protocol in splits.PROTOCOLS or row.protocol in ("unstated", "none"), row
  assert published.same_protocol("vaze", "arpl") and not published.same_protocol("cssr", "arpl")
  assert "CPU demo" in published.published_notes("digits", "arpl")[0]


def test_a_new_benchmark_is_one_registry_entry(monkeypatch):
  """An entry alone makes a benchmark: get_split resolves it under its protocols (vaze
  through arpl's lists, in its own trial order) and refuses the others."""
  first6 = ((0, 1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 6), (2, 3, 4, 5, 6, 7), (3, 4, 5, 6, 7, 8),
            (4, 5, 6, 7, 8, 9))
  entry = Benchmark("cifar10_shifted", benchmarks.CIFAR10, {"arpl": ClassLists(first6)})
  monkeypatch.setitem(BENCHMARKS, entry.name, entry)
  s = splits.get_split("cifar10_shifted", "vaze", 1)
  assert (s.known, s.unknown, s.unknown_source) == (first6[1], (0, 7, 8, 9), None)
  assert splits.get_split("cifar10_shifted", "arpl", 1).known == first6[3]  # list 4 - t
  with pytest.raises(DataError, match="protocol 'cssr' has no 'cifar10_shifted' split"):
    splits.get_split("cifar10_shifted", "cssr", 0)
