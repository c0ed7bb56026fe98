"""Data sources: tfds (mocked), TinyImageNet folders, the shared npz files, no-TensorFlow path.

The shared files are read from $BACKMIX_SHARED_DATA or <repo>/../shared/data; tests that
need them skip when they are absent.
"""
import io
import os
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from backmix_jax.data import images, sources, splits
from backmix_jax.data.openset import make_open_set
from backmix_jax.data.core import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("BACKMIX_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR_NPZ = SHARED / "cifar10_jpeg_bytes.npz"
MNIST_NPZ = SHARED / "mnist.npz"


def needs(path):
  return pytest.mark.skipif(not path.is_file(), reason=f"{path} not available")


def hide_tensorflow(monkeypatch):
  """Make `import tensorflow` / `import tensorflow_datasets` fail, as on a JAX-only image."""
  for name in ("tensorflow", "tensorflow_datasets"):
    monkeypatch.setitem(sys.modules, name, None)


# ---------------------------------------------------------------- conform / decode


def test_resize_bilinear_matches_pillow_rgb_then_resize_as_arpl_does():
  """MNIST 28 -> 32: identical to PIL convert('RGB').resize((32, 32), BILINEAR) (ARPL)."""
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
  ours = images.conform(gray, 32, 3)
  for g, o in zip(gray, ours):
    ref = Image.fromarray(g[..., 0], mode="L").convert("RGB").resize((32, 32), Image.BILINEAR)
    np.testing.assert_array_equal(o, np.asarray(ref))
  assert ours.shape == (3, 32, 32, 3) and ours.dtype == np.uint8


def test_to_channels_rgb_to_gray_matches_pillow_luma():
  """3 -> 1 channel gives Pillow's convert('L') values; 1 -> 3 repeats the grey plane."""
  rng = np.random.default_rng(1)
  rgb = rng.integers(0, 256, (4, 9, 7, 3), dtype=np.uint8)
  gray = images.to_channels(rgb, 1)
  for x, g in zip(rgb, gray):
    np.testing.assert_array_equal(g[..., 0], np.asarray(Image.fromarray(x).convert("L")))
  back = images.to_channels(gray, 3)
  assert back.shape == rgb.shape and (back == gray).all()
  with pytest.raises(DataError, match="channels must be 1 or 3"):
    images.to_channels(rgb, 2)


def jpeg(array, quality=90):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def test_decode_images_resizes_odd_sizes_and_needs_a_size_when_they_differ():
  """Mixed sizes are resized to `size`; without a size they are refused."""
  blobs = [jpeg(np.full((64, 64, 3), 50, np.uint8)), jpeg(np.full((40, 48, 3), 200, np.uint8))]
  out = images.decode_images(blobs, 64, decoder="pillow")
  assert out.shape == (2, 64, 64, 3)
  assert abs(int(out[0].mean()) - 50) <= 2 and abs(int(out[1].mean()) - 200) <= 2
  with pytest.raises(DataError, match="differ in size"):
    images.decode_images(blobs, None, decoder="pillow")


# ---------------------------------------------------------------- tfds (mocked)


@pytest.mark.parametrize("name, shape, num_classes", [
    ("mnist", (28, 28, 1), 10), ("svhn_cropped", (32, 32, 3), 10),
    ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100)])
def test_tfds_sources_read_whole_splits_into_arrays(tmp_path, name, shape, num_classes):
  """tfds:<name> reads train and test with the builder's label names, without a download."""
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
    src = sources.load_source(f"tfds:{name}", data_dir=str(tmp_path), image_size=None)
    resized = sources.load_source(f"tfds:{name}", data_dir=str(tmp_path), image_size=32,
                                  channels=3)
  for split in (src.train, src.test):
    assert split.images.shape == (7,) + shape and split.images.dtype == np.uint8
    assert split.labels.dtype == np.int64
    assert ((0 <= split.labels) & (split.labels < num_classes)).all()
  assert len(src.class_names) == num_classes
  assert resized.train.images.shape == (7, 32, 32, 3)


def _ragged_tfds_dataset(tmp_path):
  """A prepared TFDS dataset of JPEG files of six sizes, one class each, as CUB and Cars are
  stored (Image features of unknown height and width): (data_dir, the files)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  rng = np.random.default_rng(0)
  files = []
  for i, (h, w) in enumerate([(20, 30), (33, 17), (24, 24), (40, 28), (18, 22), (26, 35)]):
    f = tmp_path / f"img{i}.jpg"
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(f, quality=90)
    files.append(f)

  class BackmixRaggedProbe(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=list("abcdef"))}),
          supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(range(4)),
              "test": self._generate_examples(range(4, 6))}

    def _generate_examples(self, ids):
      for i in ids:
        yield i, {"image": str(files[i]), "label": i}

  data_dir = tmp_path / "tfds"
  BackmixRaggedProbe(data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir), files


def test_tfds_images_of_many_sizes_decode_as_the_folder_readers_do(tmp_path):
  """A TFDS dataset whose images differ in size (caltech_birds2011, cars196) is read as its
  stored JPEG bytes and decoded at data.image_size: each image equals the same file decoded
  by `decode_images` (the folder readers' path), label for label; without an image_size it
  is one DataError naming the split."""
  data_dir, files = _ragged_tfds_dataset(tmp_path)
  src = sources.load_source("tfds:backmix_ragged_probe", data_dir=data_dir, image_size=16)
  assert src.class_names == tuple("abcdef")
  for split, ids in ((src.train, range(4)), (src.test, range(4, 6))):
    assert sorted(split.labels.tolist()) == list(ids)
    expected = images.decode_images([files[i].read_bytes() for i in split.labels], 16,
                                     decoder="pillow")
    np.testing.assert_array_equal(split.images, expected)
  few = sources.load_source("tfds:backmix_ragged_probe", data_dir=data_dir, image_size=16,
                            max_per_split=2)
  assert few.train.images.shape == (2, 16, 16, 3)
  with pytest.raises(DataError, match="backmix_ragged_probe split 'train': images differ"):
    sources.load_source("tfds:backmix_ragged_probe", data_dir=data_dir, image_size=None)


def test_dataset_names_are_tfds_shorthands_for_unknown_sources(tmp_path):
  """Split.unknown_source names ('cifar100', 'svhn') load the tfds test split."""
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    for name in ("cifar100", "svhn"):
      unknown = sources.load_unknown_source(name, data_dir=str(tmp_path), max_per_split=3)
      assert unknown.images.shape == (3, 32, 32, 3)
    mnist = sources.load_source("mnist", data_dir=str(tmp_path), channels=3)
  assert mnist.test.images.shape == (5, 32, 32, 3)


def test_tfds_without_prepared_data_says_how_to_prepare_and_does_not_download(tmp_path):
  """An empty data_dir gives a DataError naming `tfds build`; nothing is downloaded."""
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DataError, match="not prepared") as info:
    sources.load_source("tfds:cifar10", data_dir=str(tmp_path))
  assert "tfds build cifar10" in str(info.value)
  assert not any(tmp_path.rglob("*.tfrecord*"))


# ---------------------------------------------------------------- TinyImageNet folder

WNIDS = ("n09999999", "n01443537", "n02124075")  # created unsorted on purpose
COLOURS = {"n01443537": (200, 30, 30), "n02124075": (30, 200, 30), "n09999999": (30, 30, 200)}


def make_tiny_imagenet(root, refoldered_val=False, images_subdir=True):
  """train/<wnid>/[images/]<wnid>_i.JPEG and val/, 2 train + 1 val image per class."""
  lines = []
  for wnid in WNIDS:
    folder = root / "train" / wnid / ("images" if images_subdir else "")
    folder.mkdir(parents=True)
    (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("not an image\n")
    for i in range(2):
      (folder / f"{wnid}_{i}.JPEG").write_bytes(jpeg(np.full((64, 64, 3), COLOURS[wnid],
                                                               np.uint8)))
    name = f"val_{WNIDS.index(wnid)}.JPEG"
    val = root / "val" / (wnid if refoldered_val else "images")
    val.mkdir(parents=True, exist_ok=True)
    (val / name).write_bytes(jpeg(np.full((64, 64, 3), COLOURS[wnid], np.uint8)))
    lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
  if not refoldered_val:
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def assert_labels_follow_sorted_wnids(split, class_names):
  for image, label in zip(split.images, split.labels):
    colour = np.array(COLOURS[class_names[label]])
    assert np.abs(image.reshape(-1, 3).mean(0) - colour).max() < 8


@pytest.mark.parametrize("refoldered_val, images_subdir", [(False, True), (True, False)])
def test_folder_source_reads_tinyimagenet_with_sorted_wnid_class_ids(tmp_path, refoldered_val,
                                                                      images_subdir):
  """Class id = position in sorted wnids, for the official and the re-foldered val layout."""
  make_tiny_imagenet(tmp_path, refoldered_val, images_subdir)
  src = sources.load_source(f"folder:{tmp_path}", image_size=64)
  assert src.class_names == tuple(sorted(WNIDS))
  assert src.train.images.shape == (6, 64, 64, 3) and src.test.images.shape == (3, 64, 64, 3)
  assert list(src.train.labels) == [0, 0, 1, 1, 2, 2] and list(src.test.labels) == [0, 1, 2]
  assert_labels_follow_sorted_wnids(src.train, src.class_names)
  assert_labels_follow_sorted_wnids(src.test, src.class_names)


def test_folder_source_finds_the_tiny_imagenet_200_subfolder_and_converts_grey(tmp_path):
  """root/tiny-imagenet-200/ is accepted; greyscale JPEGs become 3 equal channels."""
  make_tiny_imagenet(tmp_path / "tiny-imagenet-200")
  grey = tmp_path / "tiny-imagenet-200" / "train" / WNIDS[1] / "images" / "grey.JPEG"
  buf = io.BytesIO()
  Image.fromarray(np.full((64, 64), 90, np.uint8), mode="L").save(buf, format="JPEG")
  grey.write_bytes(buf.getvalue())
  src = sources.load_source(f"folder:{tmp_path}", image_size=64)
  assert len(src.train) == 7
  grey_image = src.train.images[list(src.train.labels).index(0)]  # grey.JPEG sorts first
  assert (grey_image[..., 0] == grey_image[..., 1]).all()


def test_folder_source_rejects_val_annotations_with_unknown_wnids(tmp_path):
  """A val wnid absent from train/ is an error, not a silent relabel."""
  make_tiny_imagenet(tmp_path)
  path = tmp_path / "val" / "val_annotations.txt"
  path.write_text(path.read_text() + "val_x.JPEG\tn00000000\t0\t0\t1\t1\n")
  with pytest.raises(DataError, match="n00000000"):
    sources.load_source(f"folder:{tmp_path}", image_size=64)


# ---------------------------------------------------------------- npz files


def test_plain_array_npz_with_28px_grey_images(tmp_path):
  """An npz of [N,28,28] uint8 arrays loads, resized to 32, with default class names."""
  rng = np.random.default_rng(2)
  path = tmp_path / "digits.npz"
  np.savez(path, train_images=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
           train_labels=np.arange(10) % 4, test_images=rng.integers(0, 256, (6, 28, 28),
                                                                    dtype=np.uint8),
           test_labels=np.arange(6) % 4)
  src = sources.load_source(f"npz:{path}")
  assert src.train.images.shape == (10, 32, 32, 1) and src.class_names == ("0", "1", "2", "3")
  np.savez(path, train_labels=np.arange(3))
  with pytest.raises(DataError, match="neither train_jpeg nor train_images"):
    sources.load_source(f"npz:{path}")
  with pytest.raises(DataError, match="no such file"):
    sources.load_source(f"npz:{tmp_path / 'missing.npz'}")


@needs(CIFAR_NPZ)
def test_cifar10_npz_slice_covers_every_class():
  """max_per_split keeps evenly spaced samples, so a class-sorted file keeps all classes."""
  src = sources.load_source(f"npz:{CIFAR_NPZ}", max_per_split=200)
  assert src.train.images.shape == (200, 32, 32, 3) and src.test.images.shape == (200, 32, 32, 3)
  assert src.class_names[:3] == ("airplane", "automobile", "bird")
  assert (np.bincount(src.train.labels, minlength=10) == 20).all()
  assert 100 < src.train.images.mean() < 140  # CIFAR-10's mean intensity is about 120


@needs(CIFAR_NPZ)
def test_tf_and_pillow_jpeg_decoders_give_identical_pixels():
  """The tf.data fast path decodes bit-identically to Pillow, so it never changes the data."""
  pytest.importorskip("tensorflow")
  pillow = sources.load_source(f"npz:{CIFAR_NPZ}", max_per_split=300, decoder="pillow")
  tf_path = sources.load_source(f"npz:{CIFAR_NPZ}", max_per_split=300, decoder="tf")
  np.testing.assert_array_equal(pillow.train.images, tf_path.train.images)
  np.testing.assert_array_equal(pillow.test.images, tf_path.test.images)


@needs(MNIST_NPZ)
def test_mnist_npz_as_arpl_sees_it():
  """mnist.npz with channels=3: 32 px RGB, equal channels, original labels."""
  src = sources.load_source(f"npz:{MNIST_NPZ}", channels=3, max_per_split=100)
  assert src.train.images.shape == (100, 32, 32, 3)
  assert (src.train.images[..., 0] == src.train.images[..., 2]).all()
  assert set(src.test.labels) == set(range(10))


@pytest.mark.slow
@needs(CIFAR_NPZ)
def test_cifar10_arpl_trial0_gives_30000_train_6000_known_4000_unknown():
  """The full shared CIFAR-10 with ARPL trial 0: the counts the issue asks for."""
  src = sources.load_source(f"npz:{CIFAR_NPZ}")
  assert (len(src.train), len(src.test)) == (50_000, 10_000)
  split = splits.get_split("cifar10", "arpl", 0)
  data = make_open_set(src.train, src.test, split.known, split.unknown,
                       num_source_classes=len(src.class_names))
  assert (len(data.train), len(data.test_known), len(data.test_unknown)) == (30_000, 6_000, 4_000)
  assert set(data.train.labels) == set(range(6))


# ---------------------------------------------------------------- without TensorFlow


def test_npz_and_folder_sources_load_with_tensorflow_hidden(tmp_path, monkeypatch):
  """On a JAX-only machine npz and folder sources work; tfds says what is missing."""
  hide_tensorflow(monkeypatch)
  make_tiny_imagenet(tmp_path / "tiny")
  folder = sources.load_source(f"folder:{tmp_path / 'tiny'}", image_size=64, decoder="tf")
  assert folder.train.images.shape == (6, 64, 64, 3)
  path = tmp_path / "jpeg.npz"
  blobs = [jpeg(np.full((32, 32, 3), 10 * i, np.uint8)) for i in range(4)]
  offsets = np.cumsum([0] + [len(b) for b in blobs])
  buf = np.frombuffer(b"".join(blobs), np.uint8)
  np.savez(path, train_jpeg=buf, train_offsets=offsets, train_labels=np.arange(4),
           test_jpeg=buf, test_offsets=offsets, test_labels=np.arange(4),
           class_names=np.array(["a", "b", "c", "d"]))
  src = sources.load_source(f"npz:{path}")
  assert src.train.images.shape == (4, 32, 32, 3) and src.class_names == ("a", "b", "c", "d")
  assert abs(int(src.test.images[3].mean()) - 30) <= 2
  with pytest.raises(DataError, match="tensorflow-datasets"):
    sources.load_source("tfds:mnist")


def test_digits_source_keeps_working():
  """The CPU demo source is unchanged (1 channel, 32 px) and takes channels=3."""
  src = sources.load_source("digits")
  assert src.train.images.shape[1:] == (32, 32, 1) and len(src.train) + len(src.test) == 1797
  assert sources.load_source("digits", channels=3).test.images.shape[1:] == (32, 32, 3)


@pytest.mark.parametrize("spec", ["imagenet", "npz:", "folder", "tfds:"])
def test_unknown_specs_raise(spec):
  """A spec that names no source is a DataError listing the known ones."""
  with pytest.raises(DataError, match="unknown data source"):
    sources.load_source(spec)
