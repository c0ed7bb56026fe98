"""The published open-set class lists, as data copied from their repositories.

Each table names its repository, file and licence. Class ids follow the torchvision / tfds
order: CIFAR-10 and CIFAR-100 (fine) label ids, digit value for MNIST / SVHN (tfds
svhn_cropped already stores digit 0 as 0), TinyImageNet = index in the sorted wnids of
train/. The long tables are written one published list per line, ids separated by spaces
(`_lists` reads them; a more indented line continues the list above it). Which benchmark
runs which list under which protocol is said by the registry (`benchmarks.BENCHMARKS`);
how a protocol orders its trials, by `splits.PROTOCOLS`.
"""
from __future__ import annotations


def _lists(text: str) -> tuple[tuple[int, ...], ...]:
  """Lists written one per line (a line indented deeper than the first continues the one
  above it) -> one tuple of int class ids per list."""
  rows: list[tuple[int, ...]] = []
  lines = [line for line in text.splitlines() if line.strip()]
  margin = len(lines[0]) - len(lines[0].lstrip())
  for line in lines:
    ids = tuple(int(x) for x in line.split())
    if len(line) - len(line.lstrip()) > margin:
      rows[-1] += ids
    else:
      rows.append(ids)
  return tuple(rows)


# ARPL `splits_2020`, copied from iCGY96/ARPL split.py (file commit 4bc4fae, MIT licence),
# in published order; identical to sgvaze/osr_closed_set_all_you_need
# data/open_set_splits/osr_splits.py (`osr_splits`, MIT). mnist/svhn/cifar10/tiny_imagenet:
# known classes. cifar100: the 4 known CIFAR-10 classes of CIFAR+N; cifar100-10/-50: the
# unknown CIFAR-100 classes, paired with cifar100 by list index.
ARPL_SPLITS_2020 = {
    "mnist": _lists("""
        2 4 5 9 8 3
        3 2 6 9 4 0
        5 8 3 2 4 6
        3 7 8 4 0 5
        6 3 4 9 8 2"""),
    "svhn": _lists("""
        5 3 7 2 8 6
        3 8 7 6 2 5
        8 9 4 7 2 1
        3 8 2 5 0 6
        4 9 2 7 1 0"""),
    "cifar10": _lists("""
        0 6 4 9 1 7
        7 6 4 9 0 1
        1 5 7 3 9 4
        8 6 1 9 0 7
        2 4 1 7 9 6"""),
    "cifar100": _lists("""
        4 7 9 1
        6 7 1 9
        9 6 1 7
        6 4 9 1
        1 0 9 8"""),
    "cifar100-10": _lists("""
        30 25 1 9 8 0 46 52 49 71
        41 9 49 40 73 60 48 30 95 71
        8 9 49 40 73 60 48 95 30 71
        95 60 30 73 46 49 68 99 8 71
        33 2 3 97 46 21 64 63 88 43"""),
    "cifar100-50": _lists("""
        27 94 29 77 88 26 69 48 75 5 59 93 39 57 45 40 78 20 98 47 66 70 91 76 41 83 99 32
          53 72 2 95 21 73 84 68 35 11 55 60 30 25 1 9 8 0 46 52 49 71
        65 97 86 24 45 67 2 3 91 98 79 29 62 82 33 76 0 35 5 16 54 11 99 52 85 1 25 66 28 84
          23 56 75 46 21 72 55 68 8 69 41 9 49 40 73 60 48 30 95 71
        20 83 65 97 94 2 93 16 67 29 62 33 24 98 5 86 35 54 0 91 52 66 85 84 56 11 1 76 25
          55 21 99 72 41 23 75 28 68 69 46 8 9 49 40 73 60 48 95 30 71
        92 82 77 64 5 33 62 56 70 0 20 28 67 14 84 53 91 29 85 2 52 83 75 35 11 21 72 98 55
          1 41 76 25 66 69 9 48 54 40 23 95 60 30 73 46 49 68 99 8 71
        47 6 19 0 62 93 59 65 54 70 34 55 23 38 72 76 53 31 78 96 77 27 92 18 82 50 98 32 1
          75 83 4 51 35 80 11 74 66 36 42 33 2 3 97 46 21 64 63 88 43"""),
    "tiny_imagenet": _lists("""
        108 147 17 58 193 123 72 144 75 167 134 14 81 171 44 197 152 66 1 133
        198 161 91 59 57 134 61 184 90 35 29 23 199 38 133 19 186 18 85 67
        177 0 119 26 78 80 191 46 134 92 31 152 27 60 114 50 51 133 162 93
        98 36 158 177 189 157 170 191 82 196 138 166 43 13 152 11 75 174 193 190
        95 6 145 153 0 143 31 23 189 81 20 21 89 26 36 170 102 177 108 169"""),
}
ARPL_SOURCE = "iCGY96/ARPL split.py splits_2020 (MIT)"
VAZE_SOURCE = ("sgvaze/osr_closed_set_all_you_need data/open_set_splits/osr_splits.py "
               "(MIT; lists identical to ARPL splits_2020)")

# Neal et al., lwneal/counterfactual-open-set generativeopenset/datasets/download_{mnist,
# svhn,cifar10}.py (no licence stated): the UNKNOWN classes of split 0..4, the same in the
# three scripts. download_cifar100.py: CIFAR+N knowns = CIFAR-10 non-animals, unknowns =
# the first 10 / 50 CIFAR-100 animal classes in alphabetical (= id) order; one split.
NEAL_UNKNOWN = ((3, 6, 7, 8), (1, 2, 4, 6), (2, 3, 4, 9), (0, 1, 2, 6), (4, 5, 6, 9))
NEAL_PLUS_KNOWN = (0, 1, 8, 9)
NEAL_PLUS_UNKNOWN = {
    10: (1, 2, 3, 4, 6, 7, 11, 14, 15, 18),
    50: (1, 2, 3, 4, 6, 7, 11, 14, 15, 18, 19, 21, 24, 26, 27, 29, 30, 31, 32, 34, 35, 36, 38,
         42, 43, 44, 45, 46, 50, 55, 63, 64, 65, 66, 67, 72, 73, 74, 75, 77, 78, 79, 80, 88,
         91, 93, 95, 97, 98, 99),
}
NEAL_SOURCE = "lwneal/counterfactual-open-set generativeopenset/datasets (no licence stated)"

# CSSR known classes, trials a..e = spl_a..spl_e.json of xyzedd/CSSR exps/{cifar10,svhn,
# tinyimagenet} (commit d5a99e9, no licence file): the classes whose `convert_class` entry
# is not -1, labelled in ascending id order (as convert_class numbers them). The CIFAR10 /
# SVHN lists are those of docs/data.md; TinyImageNet ids are ImageFolder's sorted wnids.
CSSR_KNOWN_10 = ((2, 3, 4, 5, 6, 7), (1, 2, 4, 6, 7, 8), (0, 3, 4, 5, 6, 8),
                 (0, 1, 4, 6, 8, 9), (0, 2, 3, 5, 6, 7))
CSSR_KNOWN = {
    "cifar10": CSSR_KNOWN_10,
    "svhn": CSSR_KNOWN_10,
    "tinyimagenet": _lists("""
        0 7 8 27 29 32 42 51 62 72 76 91 95 163 171 173 178 186 188 195
        12 27 39 41 42 49 63 66 71 76 89 97 100 106 118 127 148 181 188 193
        7 29 42 46 50 56 58 59 61 63 65 66 72 88 103 136 145 154 172 199
        2 3 24 28 43 44 68 71 73 81 113 136 138 141 147 159 164 169 178 199
        2 9 26 47 55 75 80 81 98 116 119 121 134 135 156 159 164 184 190 191"""),
}
CSSR_SOURCE = "xyzedd/CSSR exps/<dataset>/spl_a..e.json (no licence file)"

# DIAS / MEDAF `splits_AUROC`, in the order of Vanixxz/MEDAF misc/util.py (commit 33d3ac9,
# no licence file), which osr_main.py runs as trials 0..4; the CIFAR10/SVHN lists and the
# CIFAR+10 unknown lists are those of docs/data.md. wjun0830/Difficulty-Aware-Simulator
# split.py (MIT) holds the same class sets (and the MNIST lists, equal to its CIFAR10 ones);
# its osr.py runs them in reverse and its CIFAR+10 lists are rotated by one position.
# CIFAR+N: known = airplane, automobile, ship, truck in every trial.
DIAS_KNOWN_10 = ((0, 1, 2, 4, 5, 9), (0, 3, 5, 7, 8, 9), (0, 1, 5, 6, 7, 8),
                 (3, 4, 5, 7, 8, 9), (0, 1, 2, 3, 7, 8))
DIAS_KNOWN = {
    "mnist": DIAS_KNOWN_10,
    "svhn": DIAS_KNOWN_10,
    "cifar10": DIAS_KNOWN_10,
    "tinyimagenet": _lists("""
        2 3 13 30 44 45 64 66 76 101 111 121 128 130 136 158 167 170 187 193
        4 11 32 42 51 53 67 84 87 104 116 140 144 145 148 149 155 168 185 193
        3 9 10 20 23 28 29 45 54 74 133 143 146 147 156 159 161 170 184 195
        1 15 17 31 36 44 66 69 84 89 102 137 154 160 170 177 182 185 195 197
        4 14 16 33 34 39 59 69 77 92 101 103 130 133 147 161 166 168 172 173"""),
}
DIAS_PLUS_KNOWN = (0, 1, 8, 9)
DIAS_PLUS_UNKNOWN = {
    10: _lists("""
        3 15 19 21 42 46 66 72 78 98
        26 31 34 44 45 63 65 77 93 98
        7 11 66 75 77 93 95 97 98 99
        2 11 15 24 32 34 63 88 93 95
        1 11 38 42 44 45 63 64 66 67"""),
    50: _lists("""
        1 2 7 9 10 12 15 18 21 23 26 30 32 33 34 36 37 39 40 42 44 45 46 47 49 50 51 52 55
          56 59 60 61 63 65 66 70 72 73 74 76 78 80 83 87 91 92 96 98 99
        0 2 4 5 9 12 14 17 18 20 21 23 24 25 31 32 33 35 39 43 45 49 50 51 52 54 55 56 60 64
          65 66 68 70 71 73 74 77 78 79 80 82 83 86 91 93 94 96 97 98
        0 4 10 11 12 14 15 17 18 21 23 26 27 28 29 31 32 33 36 39 40 42 43 46 47 51 53 56 57
          59 60 64 66 71 73 74 75 76 78 79 80 83 87 91 92 93 94 95 96 99
        0 2 5 6 9 10 11 12 14 16 18 19 21 22 23 26 27 28 29 31 33 35 36 37 38 39 40 43 45 49
          52 56 59 61 62 63 64 65 71 74 75 78 80 82 86 87 91 93 94 96
        0 1 4 6 7 12 15 16 17 19 20 21 22 23 26 27 28 32 39 40 42 43 44 47 49 50 52 53 54 55
          56 59 61 62 63 65 66 67 68 73 74 77 82 83 86 87 93 94 97 98"""),
}
DIAS_SOURCE = ("Vanixxz/MEDAF misc/util.py splits_AUROC (no licence file; same sets as "
               "wjun0830/Difficulty-Aware-Simulator split.py, MIT)")
