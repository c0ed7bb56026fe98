"""The standard open-set class splits: which classes are known in trial t of a benchmark.

`get_split(benchmark, protocol, trial)` returns the known classes (in the order that fixes
their labels 0..K-1), the unknown classes and where the unknown test images come from.
The lists are data copied into data/split_lists.json (shipped, never downloaded);
data/split_lists.py names each table's repository, file and licence. Which lists a
benchmark runs under which protocol is its entry of the registry `benchmarks.BENCHMARKS`;
how a protocol numbers its trials is its entry of `PROTOCOLS` here.

Protocols and the benchmarks they define (5 trials each unless noted):

  arpl   ARPL `splits_2020`: mnist, svhn, cifar10, cifar_plus10, cifar_plus50, tinyimagenet.
         Trial t is the list ARPL's osr.py runs as its t-th trial (item t): it walks the
         lists in reverse, so trial t = published list 4 - t. The published lists 0 and 1
         of CIFAR10 are one class set (in two orders): they are kept, as ARPL trials 4 and 3.
  vaze   Vaze et al. (osr_closed_set_all_you_need): the same lists, indexed directly
         (trial t = published list t), so CIFAR10 trials 0 and 1 share one class set.
  neal   Neal et al. (counterfactual-open-set): mnist, svhn, cifar10 (5 unknown lists,
         known = the other 6, ascending); cifar_plus10 / cifar_plus50 (one released split:
         trial 0 only).
  cssr   CSSR (xyzedd/CSSR exps/*/spl_a..e.json): cifar10, svhn, tinyimagenet.
  dias   DIAS / MEDAF AUROC lists (`splits_AUROC`): mnist, svhn, cifar10, cifar_plus10,
         cifar_plus50, tinyimagenet; trial t = list t as MEDAF's osr_main.py runs them.
  ssb    The Semantic Shift Benchmark (sgvaze/SSB): ssb_cub, ssb_scars, ssb_aircraft,
         ssb_imagenet; one published split each (trial 0), its unknowns also scored per
         difficulty.

`digits` (scikit-learn digits, the CPU demo) reuses the protocol's MNIST lists (same ten
digit classes), so every protocol but cssr has it. Every protocol accepts the OOD benchmarks
(`ood_cifar10_vs_cifar100`, `ood_cifar10_vs_svhn`): all 10 CIFAR-10 classes known, the other
dataset's whole test split unknown; there is no class split, so all trials are alike and
differ only by seed. `COVERAGE` lists each protocol's benchmarks (derived from the registry).
"""
from __future__ import annotations

import dataclasses
import numbers

from backmix_jax.data import split_lists as L
from backmix_jax.data.benchmarks import BENCHMARKS, Benchmark
from backmix_jax.data.core import DataError

NUM_TRIALS = 5


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How one protocol runs its published lists.

  name: the protocol's name (config.protocol). authors: who released the lists (messages).
  source: repository, file and licence of the lists. provenance: a trial's provenance,
    formatted with {source}, {trial}, {list} (the published list it runs) and {letter}
    ('abcde'[trial], CSSR's file names).
  reverse: trial t runs published list NUM_TRIALS - 1 - t (ARPL's osr.py walks the lists
    in reverse); else list t.
  lists_of: the protocol whose lists (in `Benchmark.lists`) it runs; '' = its own.
  """
  name: str
  authors: str
  source: str
  provenance: str
  reverse: bool = False
  lists_of: str = ""

  @property
  def lists_key(self) -> str:
    """The key of this protocol's lists in `Benchmark.lists`."""
    return self.lists_of or self.name


PROTOCOLS = {p.name: p for p in (
    Protocol("arpl", "ARPL", L.ARPL_SOURCE, "{source}, published list {list}", reverse=True),
    Protocol("vaze", "Vaze et al.", L.VAZE_SOURCE, "{source}, published list {list}",
             lists_of="arpl"),
    Protocol("neal", "Neal et al.", L.NEAL_SOURCE, "{source}, split {trial}"),
    Protocol("cssr", "CSSR", L.CSSR_SOURCE, "{source}, trial {trial} (spl_{letter})"),
    Protocol("dias", "DIAS / MEDAF", L.DIAS_SOURCE, "{source}, trial {trial}"),
    Protocol("ssb", "Vaze et al. (SSB)", L.SSB_SOURCE, "{source}, the one published split"),
)}

_NO_CLASS_SPLIT = ("docs/data.md, OOD legacy benchmark: all CIFAR-10 classes known, the other "
                   "dataset's whole test split unknown (no class split: same for every trial)")


@dataclasses.dataclass(frozen=True)
class Split:
  """One trial of one benchmark.

  known: class ids of the known classes; label k of training = known[k].
  unknown: class ids whose test images form the open set; None = every image of
    `unknown_source`'s test split.
  unknown_source: None when the unknowns are test images of the benchmark's own dataset,
    else the dataset name ('cifar100', 'svhn') whose test split supplies them; it is also
    a valid `sources.load_unknown_source` spec (shorthand for the tfds dataset).
  protocol: the protocol that gave the lists; provenance: repository, file and list index.
  unknown_groups: named subsets of `unknown` scored one by one, each (name, class ids)
    (the SSB's difficulties); () = none.
  """
  known: tuple[int, ...]
  unknown: tuple[int, ...] | None
  unknown_source: str | None
  protocol: str
  provenance: str
  unknown_groups: tuple[tuple[str, tuple[int, ...]], ...] = ()


def _coverage(protocol: Protocol) -> tuple[str, ...]:
  """The benchmarks with lists for `protocol`, then those without a class split (all accept)."""
  listed = [b.name for b in BENCHMARKS.values()
            if b.lists is not None and protocol.lists_key in b.lists]
  return tuple(listed) + tuple(b.name for b in BENCHMARKS.values() if b.lists is None)


# The benchmarks each protocol has lists for (digits and OOD: see the module docstring).
COVERAGE = {name: _coverage(p) for name, p in PROTOCOLS.items()}


def _complement(ids: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
  """The class ids of 0..num_classes-1 that `ids` does not name, ascending."""
  return tuple(c for c in range(num_classes) if c not in ids)


def _split(benchmark: Benchmark, protocol: Protocol, trial: int) -> Split:
  """Trial `trial` of a benchmark that has `protocol`'s lists."""
  lists = benchmark.lists[protocol.lists_key]
  if trial >= len(lists):
    raise DataError(f"{protocol.authors} released one {benchmark.name} split: only trial 0 "
                    f"exists, got trial {trial}")
  index = NUM_TRIALS - 1 - trial if protocol.reverse else trial
  provenance = protocol.provenance.format(source=protocol.source, trial=trial, list=index,
                                          letter="abcde"[trial])
  # The named side as published; the other one, when not published, is the rest of the dataset.
  known = None if lists.known is None else tuple(lists.known[index])
  unknown = None if lists.unknown is None else tuple(lists.unknown[index])
  if known is None:
    known = _complement(unknown, benchmark.num_classes)
  if unknown is None:
    unknown = _complement(known, benchmark.num_classes)
  source = benchmark.unknown_source.name if benchmark.unknown_source else None
  groups = tuple((name, tuple(ids)) for name, ids in lists.unknown_groups[index]) if (
      lists.unknown_groups) else ()
  return Split(known, unknown, source, protocol.name, provenance, groups)


def get_split(benchmark: str, protocol: str = "arpl", trial: int = 0) -> Split:
  """The class lists of `trial` (0..4) of `benchmark` under `protocol`.

  Raises DataError (one sentence) for an unknown benchmark or protocol, a trial outside
  0..4, or a protocol that publishes no split for the benchmark.
  """
  if benchmark not in BENCHMARKS:
    raise DataError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
  if protocol not in PROTOCOLS:
    raise DataError(f"unknown split protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
  if (isinstance(trial, bool) or not isinstance(trial, numbers.Integral)
      or not 0 <= trial < NUM_TRIALS):
    raise DataError(f"trial must be an integer in 0..{NUM_TRIALS - 1}, got {trial!r}")
  covered = _coverage(PROTOCOLS[protocol])  # from the registry as it is now (= COVERAGE)
  if benchmark not in covered:
    raise DataError(f"protocol {protocol!r} has no {benchmark!r} split; it covers "
                    f"{', '.join(covered)}")
  trial = int(trial)
  b = BENCHMARKS[benchmark]
  if b.lists is None:
    return Split(tuple(range(b.num_classes)), None, b.unknown_source.name, protocol,
                 _NO_CLASS_SPLIT)
  return _split(b, PROTOCOLS[protocol], trial)
