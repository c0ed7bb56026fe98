"""Input pipeline guarantees: exact evaluation coverage, resumable and host-sliced training
streams, identical backends, and the CIFAR-10 trial-0 counts end to end.

Every sample's label is its row number, so a batch says exactly which rows it holds.
"""
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax import parallel
from backmix_jax.data.pipeline import TrainStream, epoch_permutation, eval_batches
from backmix_jax.data.core import ArraySplit, DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("BACKMIX_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR_NPZ = SHARED / "cifar10_jpeg_bytes.npz"


def numbered(n: int, side: int = 2) -> ArraySplit:
  """n samples, label = row; image pixels spell the row (base 256) so gathers can be checked."""
  rows = np.arange(n)
  digits = np.stack([rows // 256, rows % 256], -1).astype(np.uint8)       # [n,2]
  images = np.broadcast_to(digits[:, None, None, :], (n, side, side, 2)).copy()
  return ArraySplit(images, rows.astype(np.int64))


def row_of(images: np.ndarray) -> np.ndarray:
  """Inverse of `numbered`: [b,H,W,2] uint8 -> [b] rows."""
  return images[:, 0, 0, 0].astype(np.int64) * 256 + images[:, 0, 0, 1]


def collect(stream: TrainStream, start: int, stop: int) -> list[dict]:
  return list(stream.batches(start, stop))


# ---------------------------------------------------------------- evaluation batches


@pytest.mark.parametrize("n, batch", [(1, 8), (7, 8), (100, 8), (257, 64), (64, 64), (3, 4)])
@pytest.mark.parametrize("processes", [1, 2])
def test_eval_batches_score_every_sample_exactly_once_in_order(n, batch, processes):
  """Sizes that do not divide the batch: the process slices of each padded global batch,
  concatenated and masked, give rows 0..n-1 once each; every slice has the same shape."""
  data = numbered(n)
  per_process = [list(eval_batches(data, batch, p, processes)) for p in range(processes)]
  assert len({len(b) for b in per_process}) == 1  # every process runs the same number of steps
  assert len(per_process[0]) == -(-n // batch)
  seen = []
  for step in zip(*per_process):
    for b in step:
      assert b["image"].shape[0] == b["label"].shape[0] == b["mask"].shape[0] == batch // processes
      assert b["label"].dtype == np.int32 and b["mask"].dtype == bool
      np.testing.assert_array_equal(row_of(b["image"]), b["label"])  # image and label agree
    mask = np.concatenate([b["mask"] for b in step])
    labels = np.concatenate([b["label"] for b in step])
    seen.append(labels[mask])
  np.testing.assert_array_equal(np.concatenate(seen), np.arange(n))


def test_eval_batches_reject_a_batch_that_processes_cannot_share():
  with pytest.raises(DataError, match="not divisible by 3 processes"):
    next(eval_batches(numbered(10), 8, 0, 3))


# ---------------------------------------------------------------- training stream

N, BATCH, SEED = 103, 8, 7  # 12 steps per epoch, 7 samples left over each epoch
TOTAL = 40                  # a little over 3 epochs


@pytest.fixture(scope="module")
def full_run():
  """The uninterrupted single-process stream, with the partner stream on."""
  stream = TrainStream(numbered(N), BATCH, SEED, partner_stream=True, backend="numpy")
  return collect(stream, 0, TOTAL)


def test_batches_carry_the_rows_they_name(full_run):
  """image, label, partner_image are the rows named by index / partner_index."""
  for b in full_run:
    np.testing.assert_array_equal(row_of(b["image"]), b["index"])
    np.testing.assert_array_equal(b["label"], b["index"])
    np.testing.assert_array_equal(row_of(b["partner_image"]), b["partner_index"])
    assert b["image"].dtype == np.uint8 and b["label"].dtype == np.int32
    assert b["index"].dtype == b["partner_index"].dtype == np.int32


@pytest.mark.parametrize("start", [1, 5, 11, 12, 13, 24, 30, 39])
def test_resume_from_step_s_yields_the_uninterrupted_batches(full_run, start):
  """Data position = step: a stream restarted at `start` (mid-epoch or on an epoch boundary)
  continues with exactly the batches the uninterrupted stream yields from `start`."""
  stream = TrainStream(numbered(N), BATCH, SEED, partner_stream=True, backend="numpy")
  resumed = collect(stream, start, TOTAL)
  assert len(resumed) == TOTAL - start
  for a, b in zip(resumed, full_run[start:]):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_no_sample_is_repeated_or_skipped_within_an_epoch(full_run):
  """Each full epoch visits 12 x 8 distinct rows, exactly the first 96 of its permutation
  (the 7 left over are dropped); orders and left-over rows change between epochs."""
  spe = N // BATCH
  epochs = [np.concatenate([b["index"] for b in full_run[e * spe:(e + 1) * spe]])
            for e in range(TOTAL // spe)]
  for e, rows in enumerate(epochs):
    assert len(rows) == len(np.unique(rows)) == spe * BATCH
    assert rows.min() >= 0 and rows.max() < N
    np.testing.assert_array_equal(rows, epoch_permutation(SEED, e, N)[:spe * BATCH])
    # the partner stream has the same guarantee on its own permutation
    partners = np.concatenate([b["partner_index"] for b in full_run[e * spe:(e + 1) * spe]])
    assert len(np.unique(partners)) == spe * BATCH
  assert not np.array_equal(epochs[0], epochs[1])
  left_over = [set(range(N)) - set(rows) for rows in epochs]
  assert left_over[0] != left_over[1]


def test_partial_last_epoch_starts_the_next_permutation(full_run):
  """Steps past the last full epoch take the next epoch's permutation from its start."""
  spe = N // BATCH
  tail = np.concatenate([b["index"] for b in full_run[3 * spe:]])
  np.testing.assert_array_equal(tail, epoch_permutation(SEED, 3, N)[:len(tail)])


def test_two_process_slices_concatenate_to_the_global_batch(full_run):
  """Process p of 2 gets rows [p*b/2, (p+1)*b/2) of every global batch, partners included."""
  halves = [collect(TrainStream(numbered(N), BATCH, SEED, process_index=p, process_count=2,
                                partner_stream=True, backend="numpy"), 0, TOTAL)
            for p in range(2)]
  for g, h0, h1 in zip(full_run, *halves):
    for k in g:
      assert h0[k].shape[0] == h1[k].shape[0] == BATCH // 2
      np.testing.assert_array_equal(np.concatenate([h0[k], h1[k]]), g[k])


def test_two_process_resume_matches_too(full_run):
  """Resuming a 2-process run at step 17 gives each process its slice of the global batches."""
  for p in range(2):
    resumed = collect(TrainStream(numbered(N), BATCH, SEED, process_index=p, process_count=2,
                                  partner_stream=True, backend="numpy"), 17, TOTAL)
    for a, g in zip(resumed, full_run[17:]):
      np.testing.assert_array_equal(a["index"], g["index"][p * 4:(p + 1) * 4])


def test_partner_stream_is_independent_and_leaves_the_main_stream_unchanged(full_run):
  """Switching the partner stream on changes no main batch; partners follow their own order."""
  plain = collect(TrainStream(numbered(N), BATCH, SEED, backend="numpy"), 0, TOTAL)
  for a, b in zip(plain, full_run):
    assert "partner_index" not in a
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["image"], b["image"])
  main = np.concatenate([b["index"] for b in full_run])
  partner = np.concatenate([b["partner_index"] for b in full_run])
  # An independent uniform order coincides with the main one at ~1/N of the positions and
  # is no fixed relabelling of it (one main row meets several partners across epochs).
  assert np.mean(main == partner) < 0.05
  meets = {}
  for m, q in zip(main, partner):
    meets.setdefault(int(m), set()).add(int(q))
  assert np.mean([len(v) > 1 for v in meets.values()]) > 0.5


def test_seed_changes_the_order():
  a = collect(TrainStream(numbered(N), BATCH, 0, backend="numpy"), 0, 3)
  b = collect(TrainStream(numbered(N), BATCH, 1, backend="numpy"), 0, 3)
  assert not np.array_equal(a[0]["index"], b[0]["index"])


@pytest.mark.slow
def test_tf_and_numpy_backends_yield_identical_batches():
  """tf.data and the NumPy iterator give the same arrays with the same dtypes, partners too."""
  pytest.importorskip("tensorflow")
  streams = {backend: TrainStream(numbered(N), BATCH, SEED, process_index=1, process_count=2,
                                  partner_stream=True, backend=backend)
             for backend in ("tf", "numpy")}
  tf_batches, np_batches = (collect(streams[k], 9, 30) for k in ("tf", "numpy"))
  assert len(tf_batches) == len(np_batches) == 21
  for a, b in zip(tf_batches, np_batches):
    assert a.keys() == b.keys()
    for k in a:
      assert a[k].dtype == b[k].dtype, k
      np.testing.assert_array_equal(a[k], b[k])


def test_batches_take_an_end_step_not_a_count(full_run):
  """batches(start_step, end_step) yields steps start_step..end_step-1: from step 30 to
  step 33 is 3 batches, not 33 (a count), and an end before the start yields none."""
  stream = TrainStream(numbered(N), BATCH, SEED, partner_stream=True, backend="numpy")
  window = list(stream.batches(start_step=30, end_step=33))
  assert len(window) == 3
  for a, b in zip(window, full_run[30:33]):
    np.testing.assert_array_equal(a["index"], b["index"])
  assert list(stream.batches(start_step=30, end_step=3)) == []


def test_stream_reports_unusable_batch_sizes():
  with pytest.raises(DataError, match="not divisible by 3 processes"):
    TrainStream(numbered(N), 8, 0, process_count=3)
  with pytest.raises(DataError, match="exceeds the 103 training samples"):
    TrainStream(numbered(N), 128, 0)
  assert collect(TrainStream(numbered(N), 8, 0, backend="numpy"), 5, 5) == []


# ---------------------------------------------------------------- CIFAR-10 trial 0 end to end


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_NPZ.is_file(), reason=f"{CIFAR_NPZ} not available")
def test_cifar10_trial0_counts_and_every_test_image_is_scored_once():
  """configs/cifar10.py on the shared npz: 30,000 train, 6,000 known and 4,000 unknown test
  images; predict_split (padded, masked batches over the 4-device mesh) returns one output
  per image, in order: a per-image pixel checksum comes back exactly as computed on the host."""
  from backmix_jax.data.openset import load_open_set
  from backmix_jax.evaluation.predict import predict_split
  from configs import cifar10

  config = cifar10.get_config()
  config.data.source = f"npz:{CIFAR_NPZ}"
  data = load_open_set(config)
  assert (len(data.train), len(data.test_known), len(data.test_unknown)) == (30_000, 6_000, 4_000)
  assert data.known_classes == (2, 4, 1, 7, 9, 6)  # ARPL trial 0 = published list 4
  assert np.bincount(data.train.labels).tolist() == [5_000] * 6
  assert np.bincount(data.test_known.labels).tolist() == [1_000] * 6
  assert (data.test_unknown.labels == -1).all()

  @jax.jit
  def checksum(variables, images):
    del variables
    return {"sum": images.astype(jnp.int32).sum((1, 2, 3)), "first": images[:, 0, 0, 0]}

  mesh = parallel.make_mesh()
  for split in (data.test_known, data.test_unknown):
    out = predict_split(checksum, {}, split, 256, mesh)  # 256 divides neither 6,000 nor 4,000
    assert out["sum"].shape == (len(split),)
    np.testing.assert_array_equal(out["sum"], split.images.astype(np.int64).sum((1, 2, 3)))
    np.testing.assert_array_equal(out["first"], split.images[:, 0, 0, 0])
