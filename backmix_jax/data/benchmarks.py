"""The benchmark registry: one `Benchmark` entry per benchmark, found by its name.

A benchmark (the `config.dataset` of a config) is a dataset whose train split holds the
known classes, the class lists each split protocol publishes for it (data/split_lists.py;
`splits.get_split` turns them into a trial's `Split`), and, for CIFAR+N and the OOD
benchmarks, a second dataset whose test images are the unknowns. Datasets have their own
small registry (`DATASETS`: number of classes and TFDS name), shared by the benchmarks
built on them and by `sources` (the short specs mnist, svhn, cifar10, cifar100).

Published numbers live in evaluation/published.py, keyed by the benchmark's name;
`published_note` here says why a benchmark has none.

A new benchmark is one `Benchmark` entry below plus its config file configs/<name>.py
(a new dataset also one `Dataset` entry); tests/test_splits.py and tests/test_configs.py
then check it (docs/extending.md, "A benchmark").
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from backmix_jax.data import split_lists as L


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset of images with integer class ids.

  name: its short name (also a source spec when `tfds_name` is set: `sources.load_source`
    reads 'svhn' as tfds:svhn_cropped). num_classes: class ids are 0..num_classes-1.
  tfds_name: its TensorFlow Datasets name, or None where TFDS has none.
  """
  name: str
  num_classes: int
  tfds_name: str | None = None


@dataclasses.dataclass(frozen=True)
class ClassLists:
  """The class lists one protocol publishes for one benchmark, one entry per published list
  (NUM_TRIALS of them, or 1 where only one split was released).

  known[i]: the known class ids of list i, in label order; None: the dataset's classes that
    unknown[i] does not name, ascending (Neal et al. publish the unknown classes).
  unknown[i]: the unknown class ids of list i (of the benchmark's `unknown_source` when it
    has one); None: the dataset's classes that known[i] does not name, ascending.
  unknown_groups[i]: named subsets of unknown[i] scored one by one, each (name, class ids),
    e.g. the SSB's difficulties; () = none (the unknowns are scored as one set only).
  """
  known: tuple[tuple[int, ...], ...] | None
  unknown: tuple[tuple[int, ...], ...] | None = None
  unknown_groups: tuple[tuple[tuple[str, tuple[int, ...]], ...], ...] = ()

  def __len__(self):
    return len(self.known if self.known is not None else self.unknown)


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """One open-set benchmark.

  name: the benchmark's name (config.dataset, configs/<name>.py).
  dataset: the dataset whose train split holds the known classes and whose test split the
    known test images (and, without an unknown_source, the unknown ones).
  lists: protocol name -> the class lists it publishes for this benchmark (a protocol that
    runs another's lists, as vaze runs arpl's, is found through that one); None: no class
    split (OOD: every class of `dataset` is known, every protocol accepted, all trials alike).
  unknown_source: the dataset whose test split supplies the unknown images, or None.
  published_note: why evaluation/published.py lists no numbers for it ('' = none to say).
  """
  name: str
  dataset: Dataset
  lists: Mapping[str, ClassLists] | None
  unknown_source: Dataset | None = None
  published_note: str = ""

  @property
  def num_classes(self) -> int:
    """Classes of `dataset` (the known and, without an unknown_source, unknown ids)."""
    return self.dataset.num_classes

  @property
  def tfds_name(self) -> str | None:
    return self.dataset.tfds_name


MNIST = Dataset("mnist", 10, "mnist")
SVHN = Dataset("svhn", 10, "svhn_cropped")  # tfds svhn_cropped already stores digit 0 as 0
CIFAR10 = Dataset("cifar10", 10, "cifar10")
CIFAR100 = Dataset("cifar100", 100, "cifar100")
TINYIMAGENET = Dataset("tinyimagenet", 200)  # a folder: source (no TFDS copy)
DIGITS = Dataset("digits", 10)               # scikit-learn's bundled digits
# The SSB's fine-grained datasets, read from their released layouts (cub:, scars:,
# aircraft: sources; class ids as data/readers/<name>.py numbers them) or from TFDS, whose
# caltech_birds2011 and cars196 builders (tfds 4.9) number classes the same way (released
# class number - 1). TFDS has no FGVC-Aircraft at full size.
CUB = Dataset("cub", 200, "caltech_birds2011")
SCARS = Dataset("scars", 196, "cars196")
AIRCRAFT = Dataset("aircraft", 100)
# The SSB's ImageNet part (imagenet:, imagenet21k: sources): ImageNet-1K, and the SSB's
# ImageNet-21K-P classes, numbered by their position in L.SSB_IMAGENET_21K_WNIDS.
IMAGENET = Dataset("imagenet", 1000)
IMAGENET21K_SSB = Dataset("imagenet21k", len(L.SSB_IMAGENET_21K_WNIDS))
# In this order `sources` lists the short specs (mnist, svhn, cifar10, cifar100).
DATASETS = {d.name: d for d in (MNIST, SVHN, CIFAR10, CIFAR100, TINYIMAGENET, DIGITS, CUB,
                                SCARS, AIRCRAFT, IMAGENET, IMAGENET21K_SSB)}

_ARPL = L.ARPL_SPLITS_2020
_NEAL = ClassLists(None, L.NEAL_UNKNOWN)
_MNIST = Benchmark("mnist", MNIST, {"arpl": ClassLists(_ARPL["mnist"]), "neal": _NEAL,
                                    "dias": ClassLists(L.DIAS_KNOWN_10)})


def _plus(n: int) -> dict[str, ClassLists]:
  """CIFAR+N: 4 known CIFAR-10 classes, N unknown CIFAR-100 classes per list."""
  return {
      "arpl": ClassLists(_ARPL["cifar100"], _ARPL[f"cifar100-{n}"]),
      "neal": ClassLists((L.NEAL_PLUS_KNOWN,), (L.NEAL_PLUS_UNKNOWN[n],)),
      "dias": ClassLists((L.DIAS_PLUS_KNOWN,) * len(L.DIAS_PLUS_UNKNOWN[n]),
                         L.DIAS_PLUS_UNKNOWN[n]),
  }


def _ssb(name: str) -> dict[str, ClassLists]:
  """The SSB's one published split of a fine-grained dataset: its known classes, every
  unknown class, and the rows scored apart: each difficulty, and Medium and Hard together,
  which Vaze et al. report as their 'Hard' (their README: Medium and Hard combined where
  both exist; methods/tests/openset_test_fine_grained.py adds Medium to Hard)."""
  known, unknown = L.SSB_SPLITS[name]["known"], L.SSB_SPLITS[name]["unknown"]
  groups = (("Easy", unknown["Easy"]), ("Medium", unknown["Medium"]),
            ("Hard", unknown["Hard"]), ("Medium+Hard", unknown["Medium"] + unknown["Hard"]))
  every = unknown["Easy"] + unknown["Medium"] + unknown["Hard"]
  return {"ssb": ClassLists((known,), (every,), (groups,))}


def _ssb_imagenet() -> dict[str, ClassLists]:
  """The SSB's ImageNet split: every ImageNet-1K class known (ids in classifier order), the
  ImageNet-21K-P unknowns in Easy and Hard (no Medium), by their ids in that source."""
  wnids = L.SSB_IMAGENET_21K_WNIDS
  members = {d: set(L.SSB_IMAGENET_UNKNOWN[d]) for d in ("Easy", "Hard")}
  groups = tuple((d, tuple(i for i, w in enumerate(wnids) if w in m)) for d, m in members.items())
  return {"ssb": ClassLists((tuple(range(IMAGENET.num_classes)),),
                            (tuple(range(len(wnids))),), (groups,))}


# In this order get_split's messages list the benchmarks. vaze runs the arpl lists.
BENCHMARKS = {b.name: b for b in (
    _MNIST,
    Benchmark("svhn", SVHN, {"arpl": ClassLists(_ARPL["svhn"]), "neal": _NEAL,
                             "cssr": ClassLists(L.CSSR_KNOWN_10),
                             "dias": ClassLists(L.DIAS_KNOWN_10)}),
    Benchmark("cifar10", CIFAR10, {"arpl": ClassLists(_ARPL["cifar10"]), "neal": _NEAL,
                                   "cssr": ClassLists(L.CSSR_KNOWN_10),
                                   "dias": ClassLists(L.DIAS_KNOWN_10)}),
    Benchmark("cifar_plus10", CIFAR10, _plus(10), unknown_source=CIFAR100),
    Benchmark("cifar_plus50", CIFAR10, _plus(50), unknown_source=CIFAR100),
    Benchmark("tinyimagenet", TINYIMAGENET, {
        "arpl": ClassLists(_ARPL["tiny_imagenet"]),
        "cssr": ClassLists(L.CSSR_KNOWN_TINYIMAGENET),
        "dias": ClassLists(L.DIAS_KNOWN_TINYIMAGENET)}),
    # The OOD legacy benchmarks: all 10 CIFAR-10 classes known, the other dataset's whole
    # test split unknown; no class split, so every protocol accepts them.
    Benchmark("ood_cifar10_vs_cifar100", CIFAR10, None, unknown_source=CIFAR100),
    Benchmark("ood_cifar10_vs_svhn", CIFAR10, None, unknown_source=SVHN),
    # The CPU demo: the same ten digit classes as MNIST, so it runs MNIST's lists.
    Benchmark("digits", DIGITS, _MNIST.lists,
              published_note="scikit-learn digits is this project's CPU demo; no paper "
                             "reports it"),
    # The Semantic Shift Benchmark's fine-grained datasets: one published split each.
    Benchmark("ssb_cub", CUB, _ssb("cub"), published_note=L.SSB_PUBLISHED_NOTE),
    Benchmark("ssb_scars", SCARS, _ssb("scars"), published_note=L.SSB_PUBLISHED_NOTE),
    Benchmark("ssb_aircraft", AIRCRAFT, _ssb("aircraft"), published_note=L.SSB_PUBLISHED_NOTE),
    Benchmark("ssb_imagenet", IMAGENET, _ssb_imagenet(), unknown_source=IMAGENET21K_SSB,
              published_note=L.SSB_PUBLISHED_NOTE),
)}
