"""The Semantic Shift Benchmark (SSB): the host-side image helper, the readers of the
datasets' original folder layouts (written here as tiny synthetic trees that follow each
layout exactly), the class lists per difficulty, and a tiny run that reports one row per
difficulty. Images are PNG (lossless): red = class id, green = 1 for a training image."""
import contextlib
import io
import pathlib

import numpy as np
import pytest
import scipy.io
from PIL import Image

from backmix_jax.data import split_lists, splits, sources
from backmix_jax.data.core import DataError
from backmix_jax.data.images import resize_shorter_center_crop
from backmix_jax.data.openset import load_open_set
from backmix_jax.training.train import train_and_evaluate
from configs import ssb_aircraft, ssb_cub, ssb_imagenet, ssb_scars

SIDE = 16


def _image(path: pathlib.Path, class_id: int, train: bool):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", (SIDE, SIDE), (class_id, int(train), 7)).save(path, format="PNG")


def write_cub(root: pathlib.Path, classes, per_split=1) -> pathlib.Path:
  """CUB_200_2011/ with images.txt, image_class_labels.txt, train_test_split.txt, images/
  and classes.txt; class id c is the released class c + 1. Train and test images alternate
  in images.txt, as in the release."""
  base = root / "CUB_200_2011"
  rows, image_id = [], 0
  for c in classes:
    for k in range(2 * per_split):
      image_id += 1
      rel = f"{c + 1:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
      train = k % 2 == 0
      _image(base / "images" / rel, c, train)
      rows.append((image_id, rel, c + 1, int(train)))
  (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in rows))
  (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
  (base / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
  (base / "classes.txt").write_text("".join(f"{c + 1} {c + 1:03d}.Bird_{c}\n"
                                            for c in range(200)))
  return base


def write_aircraft(root: pathlib.Path, names) -> pathlib.Path:
  """fgvc-aircraft-2013b/data/ with images_variant_{trainval,test}.txt (`<id> <variant>`,
  names with spaces) and images/<id>.jpg; one trainval and one test image per variant,
  listed in the given (unsorted) order."""
  data = root / "fgvc-aircraft-2013b" / "data"
  cid = {n: i for i, n in enumerate(sorted(names))}
  for split, train in (("trainval", True), ("test", False)):
    lines = []
    for k, name in enumerate(names):
      image_id = f"{int(train)}{k:06d}"
      _image(data / "images" / f"{image_id}.jpg", cid[name], train)
      lines.append(f"{image_id} {name}\n")
    (data / f"images_variant_{split}.txt").write_text("".join(lines))
  return data.parent


def _annotations(records):
  """The devkit's `annotations` struct array [1, N]: bbox_x1..y2, class, fname."""
  fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
  out = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
  for i, (class_number, fname) in enumerate(records):
    out[0, i] = (np.array([[0]]), np.array([[0]]), np.array([[SIDE - 1]]),
                 np.array([[SIDE - 1]]), np.array([[class_number]], np.uint8), np.array([fname]))
  return out


def write_scars(root: pathlib.Path, classes) -> pathlib.Path:
  """stanford_cars/ with cars_train/, cars_test/ and devkit/cars_train_annos.mat,
  cars_test_annos_withlabels.mat, cars_meta.mat; one image per class and split."""
  base = root / "stanford_cars"
  for split, mat in (("train", "cars_train_annos.mat"),
                     ("test", "cars_test_annos_withlabels.mat")):
    records = []
    for k, c in enumerate(classes):
      fname = f"{k + 1:05d}.jpg"
      _image(base / f"cars_{split}" / fname, c, split == "train")
      records.append((c + 1, fname))
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(base / "devkit" / mat, {"annotations": _annotations(records)})
  names = np.zeros((1, 196), dtype=object)
  for c in range(196):
    names[0, c] = np.array([f"Car {c}"])
  scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
  return base


def write_imagenet(root: pathlib.Path, wnids) -> pathlib.Path:
  """imagenet/ with train/<wnid>/ and val/<wnid>/, one landscape 24 x 16 image each (red =
  the wnid's position in `wnids`)."""
  for split, train in (("train", True), ("val", False)):
    for k, wnid in enumerate(wnids):
      path = root / "imagenet" / split / wnid / f"{wnid}_{split}.JPEG"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.new("RGB", (24, SIDE), (k, int(train), 7)).save(path, format="PNG")
  return root / "imagenet"


def write_imagenet21k(root: pathlib.Path, wnids_by_group) -> pathlib.Path:
  """<wnid>/ folders with one image each, red = 1 + the index of its group; plus a folder
  of a class outside the SSB, which the reader must ignore."""
  for g, wnids in enumerate(wnids_by_group):
    for wnid in wnids + (("n99999999",) if g == 0 else ()):
      path = root / "imagenet21k_val" / wnid / f"{wnid}.JPEG"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.new("RGB", (SIDE, 20), (1 + g, 0, 7)).save(path, format="PNG")
  return root / "imagenet21k_val"


def _classes(split):
  return split.images[:, 0, 0, 0].astype(int)


def test_shorter_side_crop_keeps_the_aspect_and_takes_the_centre():
  """At crop_fraction 1 an image whose shorter side is already `size` is not resampled:
  the result is exactly its central window, for landscape and portrait alike."""
  image = np.random.RandomState(0).randint(0, 256, (16, 30, 3)).astype(np.uint8)
  assert np.array_equal(resize_shorter_center_crop(image, 16, 1.0), image[:, 7:23])
  portrait = image.transpose(1, 0, 2)
  assert np.array_equal(resize_shorter_center_crop(portrait, 16, 1.0), portrait[7:23])
  assert resize_shorter_center_crop(image, 8).shape == (8, 8, 3)
  assert resize_shorter_center_crop(image[..., :1], 8).shape == (8, 8, 1)


def test_cub_reader_takes_the_released_train_test_split_and_class_numbers(tmp_path):
  """cub: labels = released class - 1, train/test from train_test_split.txt, images.txt
  order, names from classes.txt; the folder above CUB_200_2011/ is accepted too."""
  base = write_cub(tmp_path, (0, 5, 199), per_split=2)
  for path in (tmp_path, base):
    src = sources.load_source(f"cub:{path}", image_size=SIDE)
    assert src.train.labels.tolist() == [0, 0, 5, 5, 199, 199]
    assert src.test.labels.tolist() == [0, 0, 5, 5, 199, 199]
    assert np.array_equal(_classes(src.train), src.train.labels)
    assert (src.train.images[..., 1] == 1).all() and (src.test.images[..., 1] == 0).all()
    assert len(src.class_names) == 200 and src.class_names[5] == "006.Bird_5"


def test_aircraft_reader_numbers_variants_in_sorted_order(tmp_path):
  """aircraft: trainval is train, test is test; class id = index of the variant name
  (spaces kept) in the sorted trainval names."""
  names = ["Cessna 172", "707-320", "A300B4", "Boeing 737-800"]
  write_aircraft(tmp_path, names)
  src = sources.load_source(f"aircraft:{tmp_path}", image_size=SIDE)
  assert src.class_names == tuple(sorted(names))
  assert src.train.labels.tolist() == [3, 0, 1, 2]
  assert np.array_equal(_classes(src.train), src.train.labels)
  assert np.array_equal(_classes(src.test), src.test.labels)
  assert (src.train.images[..., 1] == 1).all() and (src.test.images[..., 1] == 0).all()


def test_scars_reader_reads_the_devkit_annotations(tmp_path):
  """scars: files and classes from the devkit's .mat annotations (class - 1), train from
  cars_train/, test from cars_test/, names from cars_meta.mat."""
  base = write_scars(tmp_path, (195, 0, 42))
  src = sources.load_source(f"scars:{base}", image_size=SIDE)
  assert src.train.labels.tolist() == [195, 0, 42] == src.test.labels.tolist()
  assert np.array_equal(_classes(src.test), src.test.labels)
  assert (src.train.images[..., 1] == 1).all() and (src.test.images[..., 1] == 0).all()
  assert src.class_names[42] == "Car 42"


def test_imagenet_readers_number_wnids_as_classifiers_and_the_ssb_list(tmp_path):
  """imagenet: labels = index of the wnid in sorted(train/), val/ is the test split, images
  centre-cropped to the square; imagenet21k: only the SSB's classes, labelled by their
  position in the Easy + Hard list, test split only."""
  wnids = ["n01440764", "n01443537", "n02119789"]
  src = sources.load_source(f"imagenet:{write_imagenet(tmp_path, wnids)}", image_size=SIDE)
  assert src.train.labels.tolist() == [0, 1, 2] == src.test.labels.tolist()
  assert src.train.images.shape == (3, SIDE, SIDE, 3) and src.class_names == tuple(wnids)
  assert np.array_equal(_classes(src.test), [0, 1, 2])
  easy, hard = (split_lists.SSB_IMAGENET_UNKNOWN[d] for d in ("Easy", "Hard"))
  folder = write_imagenet21k(tmp_path, [easy[:2], hard[-1:]])
  unknown = sources.load_unknown_source(f"imagenet21k:{folder}", image_size=SIDE)
  assert sorted(unknown.labels.tolist()) == [0, 1, 1979]
  with pytest.raises(DataError, match="only a test split"):
    sources.load_source(f"imagenet21k:{folder}", image_size=SIDE)


@pytest.mark.parametrize("spec, expected", [
    ("cub:{}", "CUB_200_2011/"), ("aircraft:{}", "data/images_variant_trainval.txt"),
    ("scars:{}", "devkit/cars_train_annos.mat"), ("imagenet:{}", "train/<wnid>/"),
    ("imagenet21k:{}", "<wnid>/ image folders")])
def test_a_missing_dataset_folder_is_one_line_naming_the_expected_path(tmp_path, spec,
                                                                        expected):
  """A path without the dataset: one DataError line naming the path and the layout."""
  with pytest.raises(DataError) as info:
    sources.load_source(spec.format(tmp_path / "nowhere"), image_size=SIDE)
  message = str(info.value)
  assert "\n" not in message and str(tmp_path / "nowhere") in message and expected in message


def test_the_published_lists_partition_each_dataset():
  """The stored SSB lists: known + Easy + Medium + Hard are every class exactly once, with
  the published sizes and first entries (sgvaze/SSB splits files)."""
  sizes = {"cub": (200, 100, 32, 34, 34), "scars": (196, 98, 76, 15, 7),
           "aircraft": (100, 50, 20, 17, 13)}
  for name, (n, *counts) in sizes.items():
    t = split_lists.SSB_SPLITS[name]
    lists = [t["known"], t["unknown"]["Easy"], t["unknown"]["Medium"], t["unknown"]["Hard"]]
    assert [len(x) for x in lists] == counts
    assert sorted(sum(lists, ())) == list(range(n))
  assert split_lists.SSB_SPLITS["cub"]["known"][:3] == (150, 70, 34)
  assert split_lists.SSB_SPLITS["scars"]["unknown"]["Hard"] == (23, 42, 83, 94, 113, 126, 190)
  assert split_lists.SSB_SPLITS["aircraft"]["unknown"]["Easy"][:3] == (80, 81, 42)
  easy, hard = (split_lists.SSB_IMAGENET_UNKNOWN[d] for d in ("Easy", "Hard"))
  assert (len(easy), len(hard), len(set(easy) | set(hard))) == (1000, 980, 1980)
  assert (easy[0], easy[-1], hard[0], hard[-1]) == ("n00021939", "n04600912", "n01848648",
                                                    "n02380875")


def test_the_imagenet_benchmark_assembles_1k_known_and_21k_difficulties(tmp_path):
  """ssb_imagenet on fake folders (1000 class folders, 3 of them with images): known labels
  are ImageNet class indices, the unknowns come from the 21K-P folders, and Easy / Hard
  pick their groups' images."""
  wnids = [f"n{i:08d}" for i in range(1000)]
  root = write_imagenet(tmp_path, wnids[:3])
  for wnid in wnids[3:]:  # ImageNet-1K's other classes, as empty folders
    (root / "train" / wnid).mkdir()
  easy, hard = (split_lists.SSB_IMAGENET_UNKNOWN[d] for d in ("Easy", "Hard"))
  c = ssb_imagenet.get_config()
  c.data.source = f"imagenet:{root}"
  c.data.unknown_source = f"imagenet21k:{write_imagenet21k(tmp_path, [easy[:3], hard[:2]])}"
  c.data.image_size = SIDE
  data = load_open_set(c)
  assert data.train.labels.tolist() == [0, 1, 2] and len(data.test_unknown) == 5
  groups = dict(data.unknown_groups)
  assert list(groups) == ["Easy", "Hard"]
  red = _classes(data.test_unknown)
  assert (red[groups["Easy"]] == 1).all() and (red[groups["Hard"]] == 2).all()
  assert len(groups["Easy"]) == 3 and len(groups["Hard"]) == 2


def test_every_ssb_split_names_its_difficulties():
  """Protocol ssb, trial 0: the known list in published order, every unknown class, and
  the groups Easy, Medium, Hard and Medium+Hard (Vaze et al.'s 'Hard'); no other trial."""
  for benchmark, config in (("ssb_cub", ssb_cub), ("ssb_scars", ssb_scars),
                            ("ssb_aircraft", ssb_aircraft)):
    c = config.get_config()
    s = splits.get_split(c.dataset, c.protocol, c.trial)
    groups = dict(s.unknown_groups)
    assert c.dataset == benchmark and list(groups) == ["Easy", "Medium", "Hard", "Medium+Hard"]
    assert groups["Medium+Hard"] == groups["Medium"] + groups["Hard"]
    assert sorted(s.unknown) == sorted(groups["Easy"] + groups["Medium+Hard"])
    with pytest.raises(DataError, match="only trial 0"):
      splits.get_split(c.dataset, c.protocol, 1)


@pytest.fixture(scope="module")
def cub_tree(tmp_path_factory):
  """A CUB tree of all 200 classes, one training and one test image each."""
  root = tmp_path_factory.mktemp("cub")
  write_cub(root, range(200))
  return root


def test_the_benchmark_assembles_known_and_each_difficulty(cub_tree):
  """ssb_cub on the tree: 100 known classes labelled in list order, the 100 unknown test
  images as -1, and each group's indices pick exactly its classes' images."""
  c = ssb_cub.get_config()
  c.data.source = f"cub:{cub_tree}"
  c.data.image_size = SIDE
  data = load_open_set(c)
  known = splits.get_split("ssb_cub", "ssb").known
  assert (len(data.train), len(data.test_known), len(data.test_unknown)) == (100, 100, 100)
  assert np.array_equal(np.array(known)[data.train.labels], _classes(data.train))
  assert (data.test_unknown.labels == -1).all()
  wanted = dict(splits.get_split("ssb_cub", "ssb").unknown_groups)
  for name, index in data.unknown_groups:
    assert sorted(_classes(data.test_unknown)[index]) == sorted(wanted[name])


def test_a_difficulty_without_images_is_one_line(tmp_path):
  """A folder holding no image of a whole difficulty (here only the known classes and
  Easy) fails before training, naming the group."""
  t = split_lists.SSB_SPLITS["cub"]
  write_cub(tmp_path, t["known"] + t["unknown"]["Easy"])
  c = ssb_cub.get_config()
  c.data.source = f"cub:{tmp_path}"
  c.data.image_size = SIDE
  with pytest.raises(DataError, match="unknown group 'Medium'"):
    load_open_set(c)


@pytest.fixture(scope="module")
def trained_cub(cub_tree, tmp_path_factory):
  """ssb_cub shrunk to a smoke run on the tree: cnn_small at 16 px (its CAM grid 4 x 4),
  BackMix on, 3 steps of batch 32; RandAugment off (tested on its own in
  test_randaugment.py; its compilation would double this test's time)."""
  c = ssb_cub.get_config()
  c.data.source = f"cub:{cub_tree}"
  c.data.image_size = SIDE
  c.data.backend = "numpy"
  c.model = "cnn_small"
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 1
  c.data.randaugment_n = 0
  c.optimizer.update(warmup_epochs=0, restarts=0)  # one epoch: one cosine cycle
  c.checkpoint_every_steps = 1000
  workdir = tmp_path_factory.mktemp("run")
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    metrics = train_and_evaluate(c, str(workdir))
  return metrics, workdir, printed.getvalue()


@pytest.mark.slow
def test_a_tiny_ssb_run_reports_one_row_per_difficulty(trained_cub):
  """Train and evaluate end to end: the final metrics hold AUROC, OSCR and accuracy for
  each difficulty (the accuracy is the known test set's, the same in every row), and
  metrics.md and the closing printout have the per-difficulty table."""
  metrics, workdir, printed = trained_cub
  rows = metrics["unknown_sets"]
  for group in ("Easy", "Medium", "Hard", "Medium+Hard"):
    for key in ("auroc", "oscr", "acc"):
      assert 0.0 <= rows[f"{group}/{key}"] <= 1.0
    assert rows[f"{group}/acc"] == metrics["acc"]
  assert "mean/auroc" not in rows
  for text in ((workdir / "metrics.md").read_text(), printed):
    assert all(f"| {group} |" in text for group in ("Easy", "Medium", "Hard", "Medium+Hard"))


def test_unknown_sets_scores_each_group_as_a_slice_of_the_unknowns():
  """The unknown_sets evaluator on a benchmark with groups: one row per group, each the
  metrics of the known test set against exactly that group's unknowns (AUROC by hand),
  no mean row without extra sources; the SSB has no published rows and says why."""
  from types import SimpleNamespace

  from backmix_jax.data.core import ArraySplit, OpenSetData
  from backmix_jax.evaluation import published
  from backmix_jax.evaluation.evaluators.unknown_sets import UnknownSetsEvaluator

  def split(n, labels):
    return ArraySplit(np.zeros((n, 2, 2, 3), np.uint8), np.asarray(labels, np.int64))

  known, unknown = split(2, [0, 1]), split(4, [-1] * 4)
  scores = {id(known): np.array([0.9, 0.4]), id(unknown): np.array([0.1, 0.5, 0.2, 0.95])}

  def scorer(variables, s):
    return dict(score=scores[id(s)], pred=np.zeros(len(s), np.int64))

  data = OpenSetData(split(2, [0, 1]), known, unknown, (0, 1),
                     unknown_groups=(("Easy", np.array([0, 2])), ("Hard", np.array([1, 3]))))
  run = SimpleNamespace(data=data, variables=lambda state: None)
  evaluator = UnknownSetsEvaluator(run, scorer=scorer)
  metrics = evaluator.evaluate(state=None)
  assert metrics["Easy/auroc"] == 1.0  # 0.9 and 0.4 both above 0.1 and 0.2
  assert metrics["Hard/auroc"] == 0.25  # of 4 pairs against 0.5 and 0.95 only 0.9 > 0.5
  assert "mean/auroc" not in metrics and evaluator.rows == ["Easy", "Hard"]
  assert "not stored here" in published.published_notes("ssb_cub", "ssb")[0]
