"""Published results to compare against (docs/method.md), as data with their protocol notes.

Every value is a fraction in [0, 1] (a published 91.3 is stored as 0.913), a mean over the
5 trials of its paper. The split protocol is named with the names of `data.splits`
('arpl', 'cssr', ...), 'unstated' where the public listing does not name one, or 'none'
(the OOD benchmarks have no class split). Budgets (epochs, backbone) differ between rows
and from ours; `note` says what is known.

The ARPL and Vaze et al. protocols use the same five class lists (only the trial order
differs: `splits.PROTOCOLS`), so their 5-trial means are comparable; `same_protocol` treats
them as one.

Rows are keyed by the benchmark's name in the registry (`data.benchmarks.BENCHMARKS`).
Benchmarks without published numbers here (mnist, digits, the SSB's) map to no rows; a
benchmark's `published_note` says why where there is a reason to give (digits: this
project's CPU demo; the SSB: Vaze et al.'s repository publishes hyper-parameters, kept in
configs/ssb_*.py, but no SSB results); none of the listed papers reports MNIST.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from backmix_jax.data.benchmarks import BENCHMARKS
from backmix_jax.data.splits import PROTOCOLS

# Protocol values that name no class lists, and how tables show them.
_UNNAMED = {"unstated": "protocol unstated", "none": "no class split"}


@dataclasses.dataclass(frozen=True)
class PublishedResult:
  """One published number set of one method on one benchmark.

  method: the method as its paper names it. protocol: split protocol ('arpl', 'cssr', ...,
  'unstated', or 'none' where there is no class split). metrics: metric key (of
  `metrics.METRIC_KEYS`) -> fraction in [0, 1], 5-trial mean. source: where the number
  comes from. note: budget and convention caveats.
  """
  method: str
  benchmark: str
  protocol: str
  metrics: Mapping[str, float]
  source: str
  note: str = ""

  @property
  def label(self) -> str:
    """Row label for tables: method and protocol, e.g. 'ARPL+CS [arpl protocol]'."""
    if self.protocol in _UNNAMED:
      return f"{self.method} [{_UNNAMED[self.protocol]}]"
    return f"{self.method} [{self.protocol} protocol]"


_BACKMIX_SOURCE = ("BackMix paper (Wang et al., TPAMI 2025), its table as listed publicly "
                   "(docs/method.md)")
_BACKMIX_NOTE = "the public listing does not name the split lists or the training budget"
_ARPL_SOURCE = "ARPL+CS (Chen et al.), docs/method.md"
_ARPL_NOTE = ("ARPL's code ships classifier32, 100 epochs; its tables come from its "
              "core/evaluation.py conventions (compare with experiments.evaluate --arpl_compat)")
_CSSR_SOURCE = "CSSR / RCSSR (Huang et al.), docs/method.md"
_CSSR_NOTE = ("CSSR's code ships WRN-40-4 (ResNet-18 at 64 px for TinyImageNet), 200 epochs; "
              "CSSR's own class lists")
_CSSR_PLUS_NOTE = ("CSSR's code ships WRN-40-4, 200 epochs; CSSR's CIFAR+N lists are not "
                   "shipped with this project, so no run here uses the same splits")
_MLS_SOURCE = ("Vaze et al., Open-Set Recognition: A Good Closed-Set Classifier is All You Need "
               "(ICLR 2022), the max-logit score of their improved cross-entropy baseline "
               "(code: sgvaze/osr_closed_set_all_you_need; docs/recipes.md)")
_MLS_NOTE = ("classifier32, 600 epochs with RandAugment, label smoothing where tuned and cosine "
             "with warm restarts (this project's `vaze` recipe): a much larger budget than the "
             "other rows; their MNIST number and their OSCR are not stored here (not read from "
             "a source this project could check)")


def _auroc_rows(method: str, protocol: str, source: str, note: str,
                values: Mapping[str, float], notes: Mapping[str, str] | None = None):
  """One AUROC result per benchmark; `values` are as published (x100)."""
  notes = notes or {}
  return tuple(PublishedResult(method, b, protocol, {"auroc": round(v / 100.0, 6)}, source,
                               notes.get(b, note))
               for b, v in values.items())


# docs/method.md, "Published results": AUROC x100, 5-trial mean (protocol in brackets).
PUBLISHED: tuple[PublishedResult, ...] = (
    *_auroc_rows("BackMix", "unstated", _BACKMIX_SOURCE, _BACKMIX_NOTE,
                 {"svhn": 97.0, "cifar10": 91.3, "cifar_plus10": 93.4, "cifar_plus50": 92.3,
                  "tinyimagenet": 80.4}),
    *_auroc_rows("ARPL+CS", "arpl", _ARPL_SOURCE, _ARPL_NOTE,
                 {"svhn": 96.7, "cifar10": 91.0, "cifar_plus10": 97.1, "cifar_plus50": 95.1,
                  "tinyimagenet": 78.2}),
    *_auroc_rows("CSSR", "cssr", _CSSR_SOURCE, _CSSR_NOTE,
                 {"svhn": 97.9, "cifar10": 91.3, "cifar_plus10": 96.3, "cifar_plus50": 96.2,
                  "tinyimagenet": 82.3},
                 {"cifar_plus10": _CSSR_PLUS_NOTE, "cifar_plus50": _CSSR_PLUS_NOTE}),
    *_auroc_rows("RCSSR", "cssr", _CSSR_SOURCE, _CSSR_NOTE,
                 {"svhn": 97.8, "cifar10": 91.5, "cifar_plus10": 96.0, "cifar_plus50": 96.3,
                  "tinyimagenet": 81.9},
                 {"cifar_plus10": _CSSR_PLUS_NOTE, "cifar_plus50": _CSSR_PLUS_NOTE}),
    # Vaze et al. train and test on their own order of ARPL's lists (protocol 'vaze').
    *_auroc_rows("MLS", "vaze", _MLS_SOURCE, _MLS_NOTE,
                 {"svhn": 97.1, "cifar10": 93.6, "cifar_plus10": 97.9, "cifar_plus50": 96.5,
                  "tinyimagenet": 83.0}),
    # docs/method.md: BackMix on the OOD legacy benchmark, DTACC x100. All 10 CIFAR-10
    # classes are known, so there is no class split to name.
    PublishedResult("BackMix", "ood_cifar10_vs_cifar100", "none", {"dtacc": 0.849},
                    _BACKMIX_SOURCE, _BACKMIX_NOTE),
    PublishedResult("BackMix", "ood_cifar10_vs_svhn", "none", {"dtacc": 0.885},
                    _BACKMIX_SOURCE, _BACKMIX_NOTE),
)

def published_results(benchmark: str) -> tuple[PublishedResult, ...]:
  """The published results for `benchmark` (a `config.dataset` name); () when none."""
  return tuple(r for r in PUBLISHED if r.benchmark == benchmark)


def published_rows(benchmark: str) -> dict[str, dict[str, float]]:
  """label -> metric -> fraction for `report.trials_table_markdown(published=...)`."""
  return {r.label: dict(r.metrics) for r in published_results(benchmark)}


def _lists_of(protocol: str) -> str:
  """The protocol whose class lists `protocol` runs (vaze runs arpl's); others: itself."""
  return PROTOCOLS[protocol].lists_key if protocol in PROTOCOLS else protocol


def same_protocol(ours: str, theirs: str) -> bool:
  """Whether two split protocols train and test on the same class lists."""
  return _lists_of(ours) == _lists_of(theirs)


def published_notes(benchmark: str, protocol: str) -> list[str]:
  """One markdown line per published row: source, caveats, and whether its split protocol
  is the one of our rows (`protocol`); a single line saying so when there are none."""
  results = published_results(benchmark)
  if not results:
    note = BENCHMARKS[benchmark].published_note if benchmark in BENCHMARKS else ""
    why = f" ({note})" if note else ""
    return [f"No published numbers for {benchmark}{why}."]
  lines = []
  for r in results:
    if r.protocol in _UNNAMED:
      match = _UNNAMED[r.protocol]
    elif same_protocol(protocol, r.protocol):
      match = "same split lists as our rows"
    else:
      match = f"**different split lists** ({r.protocol}, ours {protocol}): not directly comparable"
    lines.append(f"- {r.label}: {r.source}; {r.note}; {match}.")
  return lines
