"""Remote prepared directories (arrayrecord:gs://...) staged into a local cache: copied and
checked against the manifest's SHA-256, reused on a second start, a damaged shard refused in
one line with nothing bad left in the cache, an unreadable URL named with the gcloud hint,
and only URLs routed through staging.

gs:// cannot be reached here: the remote side is a local prepared directory (the tiny one of
test_streaming.py) read through etils.epath's local backend, as staging reads gs:// through
its gfile backend.
"""
import os
import time

import numpy as np
import pytest
from etils import epath

from backmix_jax.data import sources, staging
from backmix_jax.data.core import DataError
from backmix_jax.training import validate
from tests.helpers import quick_config
from tests.test_streaming import (assert_same_batches, npz_source, open_set,  # noqa: F401
                                  prepared, stream)

URL = "gs://bucket/prepared/tiny"


def stand_in(directory):
  """A `remote` for staging: any URL is the local `directory`, through etils.epath."""
  return lambda url: epath.Path(directory)


def stage(prepared_dir, cache, lines=None):
  return staging.stage(URL, str(cache), remote=stand_in(prepared_dir),
                       progress=(lines if lines is not None else []).append)


def remote_copy(prepared_dir, tmp_path):
  out = tmp_path / "remote"
  out.mkdir()
  for name in os.listdir(prepared_dir):
    (out / name).write_bytes(open(os.path.join(prepared_dir, name), "rb").read())
  return out


def test_staging_copies_every_file_checked(prepared, tmp_path):
  """Every shard, the labels files and the manifest arrive byte for byte; one progress line
  per shard and a summary; no temporary file stays."""
  lines = []
  local = stage(prepared, tmp_path / "cache", lines)
  assert sorted(os.listdir(local)) == sorted(os.listdir(prepared))
  for name in os.listdir(prepared):
    assert open(os.path.join(local, name), "rb").read() == \
        open(os.path.join(prepared, name), "rb").read(), name
  shard_lines = [l for l in lines if l.startswith("stage  ")]
  assert len(shard_lines) == 5 and "SHA-256" in shard_lines[0]  # 3 training, 2 test shards
  assert lines[-1].startswith(f"staged {URL} in {local}: 5 of 5 shards copied")


def test_the_staged_source_reads_as_the_local_one(prepared, tmp_path, monkeypatch):
  """arrayrecord:gs://... through staging: the same images and labels as the local
  directory, the lazy training split and the grain stream included; the copy is made once
  per process."""
  opened = []
  monkeypatch.setattr(staging, "remote_path",
                      lambda url: opened.append(url) or stand_in(prepared)(url))
  cache = str(tmp_path / "cache")
  got = sources.load_source(f"arrayrecord:{URL}", image_size=8, channels=3, cache_dir=cache)
  want = sources.load_source(f"arrayrecord:{prepared}", image_size=8, channels=3)
  for split in ("train", "test"):
    np.testing.assert_array_equal(np.asarray(getattr(got, split).images),
                                  np.asarray(getattr(want, split).images))
    np.testing.assert_array_equal(getattr(got, split).labels, getattr(want, split).labels)
  assert got.class_names == want.class_names
  assert all(p.startswith(staging.cache_directory(URL, cache)) for p in got.train.images.paths)
  data = open_set(f"arrayrecord:{prepared}")
  remote = list(stream(data, "grain", f"arrayrecord:{URL}", cache_dir=cache).batches(0, 4))
  assert_same_batches(remote, list(stream(data, "grain", f"arrayrecord:{prepared}").batches(0, 4)))
  assert opened == [URL]  # the stream found the copy the reader staged


def test_a_second_staging_reuses_the_cache(prepared, tmp_path):
  """A second start copies nothing (the files stay the same inodes) and says it reuses the
  cache; a cached shard that was damaged since is copied again, alone."""
  cache = tmp_path / "cache"
  local = stage(prepared, cache)
  inodes = {n: os.stat(os.path.join(local, n)).st_ino for n in os.listdir(local)}
  lines = []
  stage(prepared, cache, lines)
  assert not [l for l in lines if l.startswith("stage  ")]
  assert len(lines) == 1 and "reusing the cache" in lines[0]
  assert {n: os.stat(os.path.join(local, n)).st_ino for n in os.listdir(local)} == inodes
  shard = os.path.join(local, "train-00001-of-00003.array_record")
  data = bytearray(open(shard, "rb").read())
  data[-1] ^= 0xFF
  open(shard, "wb").write(bytes(data))
  lines = []
  stage(prepared, cache, lines)
  assert [l.split()[1] for l in lines if l.startswith("stage  ")] == [os.path.basename(shard)]
  assert open(shard, "rb").read() == \
      open(os.path.join(prepared, os.path.basename(shard)), "rb").read()


def test_a_shard_that_differs_from_the_manifest_is_refused(prepared, tmp_path):
  """A remote shard whose bytes are not the manifest's (same size): one DataError line naming
  the shard and the URL; neither the bad copy nor a temporary file stays, and no manifest is
  written, so the readers refuse the unfinished cache."""
  remote = remote_copy(prepared, tmp_path)
  name = "test-00000-of-00002.array_record"
  data = bytearray((remote / name).read_bytes())
  data[len(data) // 2] ^= 0xFF
  (remote / name).write_bytes(bytes(data))
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match=f"shard {URL}/{name} is .* the manifest says") as e:
    stage(remote, cache)
  assert "\n" not in str(e.value)
  left = os.listdir(cache)
  assert name not in left and not [n for n in left if n.endswith(".part")]
  assert "manifest.json" not in left


def test_a_killed_copys_temporary_file_is_removed_by_the_next_staging(prepared, tmp_path):
  """A `.part` file untouched for longer than STALE_PART_SECONDS (a copy killed with -9) is
  removed when the URL is staged again; a fresh one (another process copying now) is kept."""
  cache = tmp_path / "cache"
  stage(prepared, cache)
  old, fresh = cache / ".train-00000.abc.part", cache / ".train-00001.def.part"
  old.write_bytes(b"half a shard")
  fresh.write_bytes(b"being written")
  hour_ago = time.time() - staging.STALE_PART_SECONDS - 60
  os.utime(old, (hour_ago, hour_ago))
  stage(prepared, cache)
  assert not old.exists() and fresh.exists()


def test_an_unreadable_url_says_how_to_copy_it(prepared, tmp_path):
  """No reader for the scheme, or nothing at the URL: one DataError line with the gcloud
  command that copies the directory by hand."""
  for url, remote in (("nope://bucket/tiny", None),
                      (URL, stand_in(tmp_path / "missing"))):
    with pytest.raises(DataError, match=r"gcloud storage cp -r \S+ LOCAL") as e:
      staging.stage(url, str(tmp_path / "cache"), remote=remote, progress=lambda s: None)
    assert url in str(e.value) and "\n" not in str(e.value)


def test_only_urls_are_staged(prepared, tmp_path, monkeypatch):
  """A plain local directory is read where it is (nothing copied, etils never asked); any
  `scheme://` is a URL; the cache path depends on the whole URL."""
  monkeypatch.setattr(staging, "remote_path", lambda url: pytest.fail("staged a local path"))
  cache = tmp_path / "cache"
  sources.load_source(f"arrayrecord:{prepared}", image_size=8, channels=3, cache_dir=str(cache))
  assert staging.local_directory(prepared, str(cache)) == prepared and not cache.exists()
  assert [staging.is_remote(d) for d in ("gs://b/d", "s3://b/d", "xx://d", "/data/d",
                                         "data/gs:/d", "C:\\d")] == [True] * 3 + [False] * 3
  assert staging.cache_directory("gs://a/tiny", "/c") != staging.cache_directory("gs://b/tiny",
                                                                                  "/c")
  assert staging.cache_directory("gs://a/tiny/", "/c").startswith("/c/tiny-")


def test_cache_dir_is_checked_with_the_config(tmp_path):
  """data.cache_dir must be a path ('' = the default) that is not a file."""
  file = tmp_path / "f"
  file.write_text("")
  assert staging.cache_problems("") == [] and staging.cache_problems(str(tmp_path)) == []
  assert "is a file" in staging.cache_problems(str(file))[0]
  assert "must be a directory path" in staging.cache_problems(3)[0]
  problems = validate.problems(quick_config(**{"data.cache_dir": str(file)}))
  assert any(p.startswith("data.cache_dir=") for p in problems)
