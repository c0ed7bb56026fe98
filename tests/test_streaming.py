"""Prepared shards and the streaming backend (data.backend='grain'): prepare writes a source
exactly, the grain stream gives the in-memory backends' batches (partner stream and masks
included) from any start step and any process's share, and damaged shards stop in one line.

A tiny source: 10 classes, 60 training and 30 test images of 8 px.
"""
import dataclasses
import json
import os

import numpy as np
import pytest

from backmix_jax.commands.prepare import prepare
from backmix_jax.data import openset, shards, sources, streaming
from backmix_jax.data.core import ArraySplit, DataError, UndecodableImage
from backmix_jax.data.pipeline import TrainStream
from backmix_jax.data.shard_images import ShardImages
from backmix_jax.training import validate
from tests.helpers import quick_config

KNOWN = (6, 3, 4, 9, 8, 2)  # the digits config's trial 0, which prepare --known_only keeps
BATCH = 8
SEED = 3


@pytest.fixture(scope="module")
def npz_source(tmp_path_factory) -> str:
  """npz:<path> of the tiny source (random 8 px RGB images, 6 / 3 per class)."""
  rng = np.random.default_rng(0)
  path = tmp_path_factory.mktemp("src") / "tiny.npz"
  np.savez(path, train_images=rng.integers(0, 256, (60, 8, 8, 3), np.uint8),
           train_labels=np.arange(60) % 10,
           test_images=rng.integers(0, 256, (30, 8, 8, 3), np.uint8),
           test_labels=np.arange(30) % 10)
  return f"npz:{path}"


def tiny_config(source: str, **overrides):
  return quick_config(**{"data.source": source, "data.image_size": 8, "batch_size": BATCH,
                         **overrides})


@pytest.fixture(scope="module")
def prepared(npz_source, tmp_path_factory) -> str:
  """The tiny source prepared with 25 records per shard (3 training shards)."""
  out = str(tmp_path_factory.mktemp("prep") / "tiny")
  prepare(tiny_config(npz_source), "", out, records_per_shard=25, progress=lambda s: None)
  return out


def open_set(spec: str):
  src = sources.load_source(spec, image_size=8, channels=3)
  return openset.make_open_set(src.train, src.test, KNOWN)


def stream(data, backend, spec="", **kw) -> TrainStream:
  return TrainStream(data.train, BATCH, SEED, backend=backend, source=spec,
                     known_classes=data.known_classes, **kw)


def assert_same_batches(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert sorted(g) == sorted(w)
    for k in w:
      assert g[k].dtype == w[k].dtype, k
      np.testing.assert_array_equal(g[k], w[k], err_msg=k)


def test_prepare_writes_the_source_exactly(npz_source, prepared):
  """Reading the shards back gives the source's pixels and labels; the manifest counts
  every class and its checksum is the one over the shards' digests."""
  src = sources.load_source(npz_source, image_size=8, channels=3)
  back = sources.load_source(f"arrayrecord:{prepared}", image_size=8, channels=3)
  for a, b in ((src.train, back.train), (src.test, back.test)):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
  manifest = shards.read_manifest(prepared)
  assert manifest["splits"]["train"]["counts_per_class"] == {str(c): 6 for c in range(10)}
  assert [s["records"] for s in manifest["splits"]["train"]["shards"]] == [25, 25, 10]
  assert manifest["checksum"] == shards.checksum(manifest["splits"])
  assert (manifest["image_size"], manifest["channels"]) == (8, 3)


def test_prepare_refuses_a_prepared_directory(npz_source, prepared):
  """A second prepare into the same directory stops in one line, writing nothing."""
  with pytest.raises(DataError, match="already holds a prepared dataset"):
    prepare(tiny_config(npz_source), "", prepared, progress=lambda s: None)


def test_grain_batches_equal_the_in_memory_batches(prepared):
  """Same seed, same order function: the grain stream (no worker process) yields the NumPy
  backend's batches, partner stream included, across an epoch boundary, keys and dtypes too."""
  spec = f"arrayrecord:{prepared}"
  data = open_set(spec)  # 36 known training images: 4 steps per epoch
  want = list(stream(data, "numpy", partner_stream=True).batches(0, 10))
  got = list(stream(data, "grain", spec, partner_stream=True).batches(0, 10))
  assert_same_batches(got, want)


def test_a_resumed_stream_is_the_tail_of_the_uninterrupted_one(prepared):
  """The input position is the step: starting at step k gives exactly batches k.. of a
  stream started at 0 (nothing but the step is needed to resume)."""
  spec = f"arrayrecord:{prepared}"
  s = stream(open_set(spec), "grain", spec)
  assert_same_batches(list(s.batches(5, 11)), list(s.batches(0, 11))[5:])


def test_each_process_reads_only_its_share(prepared, monkeypatch):
  """With 2 processes each reads only the records of its half of every global batch, and
  the two halves together are the single-process batch."""
  spec = f"arrayrecord:{prepared}"
  data = open_set(spec)
  whole = list(stream(data, "grain", spec).batches(0, 6))
  read = []
  real = shards.read_records
  monkeypatch.setattr(shards, "read_records",
                      lambda source, positions: read.append(list(positions)) or
                      real(source, positions))
  halves = [list(stream(data, "grain", spec, process_index=p, process_count=2).batches(0, 6))
            for p in range(2)]
  assert all(len(r) == BATCH // 2 for r in read) and len(read) == 12
  for step, batch in enumerate(whole):
    for k in batch:
      np.testing.assert_array_equal(
          np.concatenate([halves[0][step][k], halves[1][step][k]]), batch[k], err_msg=k)


def test_known_only_shards_stream_the_same_batches(npz_source, prepared, tmp_path):
  """Shards holding only the split's known classes (prepare --known_only) give the same
  training batches as shards of the whole source."""
  out = str(tmp_path / "known")
  prepare(tiny_config(npz_source), "", out, known_only=True, progress=lambda s: None)
  assert sorted(shards.read_manifest(out)["splits"]["train"]["counts_per_class"]) == \
      sorted(str(c) for c in KNOWN)
  full = f"arrayrecord:{prepared}"
  data = open_set(full)
  assert_same_batches(list(stream(data, "grain", f"arrayrecord:{out}").batches(0, 5)),
                      list(stream(data, "grain", full).batches(0, 5)))
  other = dataclasses.replace(stream(data, "grain", f"arrayrecord:{out}"),
                              known_classes=(0, 1, 2, 3, 4, 5))
  with pytest.raises(DataError, match=r"holds no images of the run's known classes \[0, 1, 5\]"):
    next(other.batches(0, 1))


def test_masks_flow_through_the_stream(tmp_path):
  """Records with true-foreground masks stream fg_mask exactly as the in-memory gather."""
  rng = np.random.default_rng(1)
  split = ArraySplit(rng.integers(0, 256, (20, 8, 8, 1), np.uint8), np.arange(20) % 2,
                     rng.random((20, 8, 8)) > 0.5)
  shards.write_prepared(str(tmp_path), {"train": (shards.split_examples(split, np.arange(20)), 20)},
                        source="test", image_shape=(8, 8, 1), class_names=["a", "b"],
                        masks=True, records_per_shard=7)
  data = openset.make_open_set(split, split, (0, 1), unknown_test=split)
  want = list(TrainStream(data.train, 4, SEED, backend="numpy").batches(0, 7))
  got = list(TrainStream(data.train, 4, SEED, backend="grain", source=f"arrayrecord:{tmp_path}",
                         known_classes=(0, 1)).batches(0, 7))
  assert "fg_mask" in got[0]
  assert_same_batches(got, want)


def damaged_copy(prepared: str, tmp_path) -> str:
  out = tmp_path / "copy"
  out.mkdir()
  for name in os.listdir(prepared):
    (out / name).write_bytes(open(os.path.join(prepared, name), "rb").read())
  return str(out)


def test_a_missing_or_truncated_shard_stops_in_one_line(prepared, tmp_path):
  """A shard removed, cut short, or a manifest count that disagrees: DataError naming it."""
  d = damaged_copy(prepared, tmp_path)
  shard = os.path.join(d, "train-00001-of-00003.array_record")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  with pytest.raises(DataError, match="train-00001-of-00003.array_record is .* bytes"):
    shards.open_split(d, "train")
  os.remove(shard)
  with pytest.raises(DataError, match="train-00001-of-00003.array_record is missing"):
    shards.open_split(d, "train")
  manifest = json.load(open(os.path.join(d, shards.MANIFEST)))
  manifest["splits"]["test"]["shards"][0]["records"] += 1
  json.dump(manifest, open(os.path.join(d, shards.MANIFEST), "w"))
  with pytest.raises(DataError, match="holds 25 records, the manifest says 26"):
    shards.open_split(d, "test")


def test_a_corrupted_image_stops_naming_the_record(prepared):
  """Undecodable image bytes inside a record raise UndecodableImage (never skipped)."""
  source = shards.data_source(shards.open_split(prepared, "train").paths)
  good = source[0]

  class Damaged:
    def __getitems__(self, positions):
      return [good[:30] + b"\0" * (len(good) - 30) for _ in positions]

  with pytest.raises(UndecodableImage, match="image 4 cannot be decoded"):
    shards.read_records(Damaged(), [4])


def test_the_grain_backend_needs_prepared_shards():
  """data.backend=grain with any other source is one config problem naming both fields."""
  problems = validate.problems(quick_config(**{"data.backend": "grain"}))
  assert any("data.backend='grain'" in p and "data.source=arrayrecord:" in p for p in problems)


def test_known_records_relabel_as_the_open_set_split():
  """The records streamed for known classes (7, 2) are those relabel keeps, in order."""
  labels = np.array([2, 5, 7, 7, 0, 2])
  records, new = streaming.known_records(labels, (7, 2))
  np.testing.assert_array_equal(records, [0, 2, 3, 5])
  np.testing.assert_array_equal(new, [1, 0, 0, 1])


@pytest.mark.slow
def test_worker_count_does_not_change_the_batches(prepared):
  """2 Grain worker processes yield the batches of none (partner stream included)."""
  spec = f"arrayrecord:{prepared}"
  data = open_set(spec)
  want = list(stream(data, "grain", spec, partner_stream=True).batches(0, 9))
  got = list(stream(data, "grain", spec, partner_stream=True, workers=2).batches(0, 9))
  assert_same_batches(got, want)


def test_lazy_training_images_index_like_the_array(npz_source, prepared):
  """The arrayrecord training split is a lazy array: views by slice, integer array and mask
  stay lazy, an integer or np.asarray decodes, and the pixels are the source's."""
  lazy = sources.load_source(f"arrayrecord:{prepared}", image_size=8, channels=3).train.images
  want = sources.load_source(npz_source, image_size=8, channels=3).train.images
  assert isinstance(lazy, ShardImages) and lazy.shape == want.shape and lazy.dtype == np.uint8
  view = lazy[np.arange(60) % 3 == 0][[5, 1, 2]]
  assert isinstance(view, ShardImages)
  np.testing.assert_array_equal(np.asarray(view), want[np.arange(60) % 3 == 0][[5, 1, 2]])
  np.testing.assert_array_equal(lazy[7], want[7])
  np.testing.assert_array_equal(lazy[2:9, 1:3, :, 0], want[2:9, 1:3, :, 0])
  np.testing.assert_array_equal(lazy.mean(axis=(0, 1, 2), dtype=np.float64),
                                want.mean(axis=(0, 1, 2), dtype=np.float64))


def test_streaming_never_decodes_the_whole_training_split(prepared, monkeypatch):
  """Bounded memory, checked by what is decoded: loading the run's data, one epoch of the
  grain stream and the dataset-mean fill decode at most one chunk of the training split at a
  time (the chunk set to 7 of its 36 images here), and the fill is the in-memory one."""
  from backmix_jax.data import shard_images
  from backmix_jax.training.run import backmix_fill
  monkeypatch.setattr(shard_images, "_CHUNK", 7)
  sizes = []
  real = ShardImages._decode
  monkeypatch.setattr(ShardImages, "_decode",
                      lambda self, records: sizes.append(len(records)) or real(self, records))
  config = tiny_config(f"arrayrecord:{prepared}", **{"data.backend": "grain",
                                                     "backmix.fill_mode": "dataset_mean"})
  data = openset.load_open_set(config)
  batches = list(stream(data, "grain", config.data.source).batches(0, 4))
  fill = backmix_fill(config, data.train)
  assert len(batches) == 4 and sizes and max(sizes) <= 7
  in_memory = ArraySplit(np.asarray(data.train.images), data.train.labels)
  np.testing.assert_array_equal(fill, backmix_fill(config, in_memory))


def test_a_run_at_another_size_resizes_lazily_and_streams_the_same(npz_source, prepared):
  """Shards prepared at 8 px, a run at 12 px: the training split stays lazy, its pixels are
  the source's conformed to 12 px, and the grain stream gives the NumPy backend's batches."""
  spec = f"arrayrecord:{prepared}"
  lazy = sources.load_source(spec, image_size=12, channels=3)
  want = sources.load_source(npz_source, image_size=12, channels=3)
  assert isinstance(lazy.train.images, ShardImages) and lazy.train.images.shape[1:] == (12, 12, 3)
  np.testing.assert_array_equal(np.asarray(lazy.train.images), want.train.images)
  data = openset.make_open_set(lazy.train, lazy.test, KNOWN)
  assert_same_batches(list(stream(data, "grain", spec).batches(0, 3)),
                      list(stream(data, "numpy").batches(0, 3)))


def test_random_resized_crop_is_a_pure_function_of_seed_step_and_row(prepared):
  """data.random_resized_crop: the crops of a step are the same from any start step and
  for any split of the global batch over processes, differ between steps, and change
  nothing else of the batch."""
  spec = f"arrayrecord:{prepared}"
  data = open_set(spec)
  crop = stream(data, "grain", spec, random_resized_crop=True)
  whole = list(crop.batches(0, 5))
  assert_same_batches(list(crop.batches(2, 5)), whole[2:])
  halves = [list(dataclasses.replace(crop, process_index=p, process_count=2).batches(0, 5))
            for p in range(2)]
  for step, batch in enumerate(whole):
    np.testing.assert_array_equal(
        np.concatenate([halves[0][step]["image"], halves[1][step]["image"]]), batch["image"])
  plain = list(stream(data, "grain", spec).batches(0, 5))
  assert all(np.array_equal(a["index"], b["index"]) for a, b in zip(whole, plain))
  assert not np.array_equal(whole[0]["image"], plain[0]["image"])
  with pytest.raises(DataError, match="needs data.backend='grain'"):
    stream(data, "numpy", random_resized_crop=True)


def test_random_resized_crop_follows_torchvision():
  """The window search of torchvision's RandomResizedCrop: a window inside the image, of an
  area within `scale` (up to rounding) and the fallback central crop when nothing fits."""
  from backmix_jax.data.images import random_resized_crop
  image = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
  out = random_resized_crop(image, 16, np.random.default_rng(0))
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  # scale (1, 1) and a ratio no 40x60 window has: the fallback, the central 40x40 window.
  full = random_resized_crop(image, 40, np.random.default_rng(0), scale=(1.0, 1.0),
                             ratio=(1.0, 1.0))
  np.testing.assert_array_equal(full, image[:, 10:50])
