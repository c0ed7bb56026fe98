"""The published open-set class lists, copied from their repositories, with their sources.

The numbers are data in split_lists.json (shipped with the package; nothing is fetched);
this module reads them once and names, for each table, its repository, file and licence.
Class ids follow the torchvision / tfds order: CIFAR-10 and CIFAR-100 (fine) label ids,
digit value for MNIST / SVHN (tfds svhn_cropped already stores digit 0 as 0), TinyImageNet
= index in the sorted wnids of train/. Which benchmark runs which list under which protocol
is said by the registry (`benchmarks.BENCHMARKS`); how a protocol orders its trials, by
`splits.PROTOCOLS`. tests/test_splits.py checks the lists against their published copies.
"""
from __future__ import annotations

import json
import pathlib


def _tuples(value):
  """JSON lists (nested) -> tuples, so the lists are immutable and hashable."""
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


_TABLES = {key: ({k: _tuples(v) for k, v in value.items()} if isinstance(value, dict)
                 else _tuples(value))
           for key, value in json.loads(
               pathlib.Path(__file__).with_name("split_lists.json").read_text()).items()}

# ARPL `splits_2020`, copied from iCGY96/ARPL split.py (file commit 4bc4fae, MIT licence),
# in published order; identical to sgvaze/osr_closed_set_all_you_need
# data/open_set_splits/osr_splits.py (`osr_splits`, MIT). mnist/svhn/cifar10/tiny_imagenet:
# known classes. cifar100: the 4 known CIFAR-10 classes of CIFAR+N; cifar100-10/-50: the
# unknown CIFAR-100 classes, paired with cifar100 by list index.
ARPL_SPLITS_2020: dict[str, tuple[tuple[int, ...], ...]] = _TABLES["arpl_splits_2020"]
ARPL_SOURCE = "iCGY96/ARPL split.py splits_2020 (MIT)"
VAZE_SOURCE = ("sgvaze/osr_closed_set_all_you_need data/open_set_splits/osr_splits.py "
               "(MIT; lists identical to ARPL splits_2020)")

# Neal et al., lwneal/counterfactual-open-set generativeopenset/datasets/download_{mnist,
# svhn,cifar10}.py (no licence stated): the UNKNOWN classes of split 0..4, the same in the
# three scripts. download_cifar100.py: CIFAR+N knowns = CIFAR-10 non-animals, unknowns =
# the first 10 / 50 CIFAR-100 animal classes in alphabetical (= id) order; one split.
NEAL_UNKNOWN: tuple[tuple[int, ...], ...] = _TABLES["neal_unknown"]
NEAL_PLUS_KNOWN: tuple[int, ...] = _TABLES["neal_plus_known"]
NEAL_PLUS_UNKNOWN: dict[int, tuple[int, ...]] = {
    int(n): ids for n, ids in _TABLES["neal_plus_unknown"].items()}
NEAL_SOURCE = "lwneal/counterfactual-open-set generativeopenset/datasets (no licence stated)"

# CSSR known classes, trials a..e = spl_a..spl_e.json of xyzedd/CSSR exps/{cifar10,svhn,
# tinyimagenet} (commit d5a99e9, no licence file): the classes whose `convert_class` entry
# is not -1, labelled in ascending id order (as convert_class numbers them). The CIFAR10 /
# SVHN lists are those of docs/data.md (exps/cifar10 and exps/svhn hold the same lists);
# TinyImageNet ids are ImageFolder's sorted wnids.
CSSR_KNOWN_10: tuple[tuple[int, ...], ...] = _TABLES["cssr_known_10"]
CSSR_KNOWN_TINYIMAGENET: tuple[tuple[int, ...], ...] = _TABLES["cssr_known_tinyimagenet"]
CSSR_SOURCE = "xyzedd/CSSR exps/<dataset>/spl_a..e.json (no licence file)"

# DIAS / MEDAF `splits_AUROC`, in the order of Vanixxz/MEDAF misc/util.py (commit 33d3ac9,
# no licence file), which osr_main.py runs as trials 0..4; the CIFAR10/SVHN lists and the
# CIFAR+10 unknown lists are those of docs/data.md. wjun0830/Difficulty-Aware-Simulator
# split.py (MIT) holds the same class sets (and the MNIST lists, equal to its CIFAR10 ones);
# its osr.py runs them in reverse and its CIFAR+10 lists are rotated by one position.
# The MNIST, SVHN and CIFAR10 lists are one table (dias_known_10).
# CIFAR+N: known = airplane, automobile, ship, truck in every trial.
DIAS_KNOWN_10: tuple[tuple[int, ...], ...] = _TABLES["dias_known_10"]
DIAS_KNOWN_TINYIMAGENET: tuple[tuple[int, ...], ...] = _TABLES["dias_known_tinyimagenet"]
DIAS_PLUS_KNOWN: tuple[int, ...] = _TABLES["dias_plus_known"]
DIAS_PLUS_UNKNOWN: dict[int, tuple[tuple[int, ...], ...]] = {
    int(n): lists for n, lists in _TABLES["dias_plus_unknown"].items()}
DIAS_SOURCE = ("Vanixxz/MEDAF misc/util.py splits_AUROC (no licence file; same sets as "
               "wjun0830/Difficulty-Aware-Simulator split.py, MIT)")

# The Semantic Shift Benchmark (Vaze et al., ICLR 2022), copied from sgvaze/SSB
# SSB/splits/{cub,scars,aircraft}_ssb_splits.json (cub at commit 5f8db89, scars and
# aircraft at ffded7c; the repository states no licence): `known_classes` in label order and
# `unknown_classes` per difficulty (Easy, Medium, Hard), as published; the files'
# known-unknown pairs are not used. Class ids: CUB class number - 1, Stanford Cars devkit
# class - 1 (cars_meta.mat order), FGVC-Aircraft index of the sorted variant name.
SSB_SPLITS: dict[str, dict] = {
    name: {"known": _TABLES[f"ssb_{name}"]["known"],
           "unknown": {d: _tuples(ids) for d, ids in _TABLES[f"ssb_{name}"]["unknown"].items()}}
    for name in ("cub", "scars", "aircraft")}
SSB_SOURCE = "sgvaze/SSB SSB/splits/<dataset>_ssb_splits.json (no licence stated)"
# The ImageNet part, from SSB/splits/imagenet_ssb_splits.json (commit ffded7c): the
# ImageNet-21K-P classes (wnids) unknown per difficulty, Easy (1000) and Hard (980), as
# published; the known classes are all 1000 of ImageNet-1K (the file lists them too).
SSB_IMAGENET_UNKNOWN: dict[str, tuple[str, ...]] = {
    d: _tuples(wnids) for d, wnids in _TABLES["ssb_imagenet"]["unknown"].items()}
# The class ids of the SSB's ImageNet-21K-P source: positions in Easy, then Hard.
SSB_IMAGENET_21K_WNIDS: tuple[str, ...] = SSB_IMAGENET_UNKNOWN["Easy"] + SSB_IMAGENET_UNKNOWN["Hard"]
# Vaze et al.'s README (every stored version of sgvaze/osr_closed_set_all_you_need) lists
# hyper-parameters but no SSB results; their paper's tables are not stored here.
SSB_PUBLISHED_NOTE = ("Vaze et al.'s SSB numbers are in their paper's tables, not in their "
                      "repository's README, and are not stored here")
