"""Prepared directories named by a URL (`arrayrecord:gs://bucket/dir`): staged into a local
cache before they are read.

array_record's reader opens local files only, so a directory whose name has a scheme
(`xx://`) is copied first into `<data.cache_dir>/<name>-<hash of the URL>` (default cache:
~/.cache/backmix_jax/shards), and every reader of the source (test splits, the lazy training
split, the grain stream, evaluators) opens that local copy. Copying:

  manifest.json is read first: it lists the shards with their sizes and SHA-256 sums;
  each shard is copied under a temporary name, hashed while it is copied, and moved into
  place with os.replace only when its size and SHA-256 are the manifest's (otherwise the
  copy is removed and the run stops in one line naming the shard);
  a shard already in the cache with the manifest's size and SHA-256 is not copied again;
  the labels files follow, and the manifest is written last, so a cache whose staging was
  interrupted has no manifest and is refused by the readers until it is staged again.

Every write goes through a temporary name and os.replace, so processes of one host that
stage the same URL at once never see a half-written file; a temporary file untouched for an
hour (a copy killed with -9) is removed by the next staging. Each host stages into its own
local cache: every host reads records of every shard (its slice of each global batch).
The remote side is read through etils.epath (gs:// through tf.io.gfile when TensorFlow is
installed); a `remote` argument replaces it (tests stand a local directory in for it).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from typing import Callable, Iterator

from backmix_jax.data import shards
from backmix_jax.data.core import DataError

CACHE_ROOT = "~/.cache/backmix_jax/shards"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 8 << 20  # bytes read from the remote side at a time
# A copy in progress writes its temporary file every few seconds; one untouched this long was
# left by a process killed mid-copy (kill -9, a lost VM) and is removed by the next staging.
STALE_PART_SECONDS = 3600
_PART = ".part"  # the suffix of every temporary file `_write` makes (a dot-file)

# (url, local directory) pairs this process has staged and verified: the reader of the
# splits and the grain stream both resolve the source, and checking the cache again would
# hash every shard a second time.
_STAGED: set[tuple[str, str]] = set()


def _print(message: str):
  print(message, flush=True)


def is_remote(directory: str) -> bool:
  """Whether an arrayrecord directory is a URL (`scheme://...`), read by staging."""
  return bool(_URL.match(directory))


def cache_directory(url: str, cache_dir: str = "") -> str:
  """The local copy of `url`: `<cache_dir or CACHE_ROOT>/<last part of the URL>-<12 hex
  digits of its SHA-256>`, so two URLs ending alike never share a copy."""
  url = url.rstrip("/")
  name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1]) or "shards"
  digest = hashlib.sha256(url.encode()).hexdigest()[:12]
  return os.path.join(os.path.expanduser(cache_dir or CACHE_ROOT), f"{name}-{digest}")


def cache_problems(cache_dir) -> list[str]:
  """The sentence for a data.cache_dir that cannot be a cache directory (config checks)."""
  if not isinstance(cache_dir, str):
    return [f"data.cache_dir must be a directory path or '' (default {CACHE_ROOT}), "
            f"got {cache_dir!r}"]
  path = os.path.expanduser(cache_dir)
  if cache_dir and os.path.exists(path) and not os.path.isdir(path):
    return [f"data.cache_dir={cache_dir!r} is a file, not a directory"]
  return []


def remote_path(url: str):
  """`url` as an etils.epath.Path; OSError when etils is missing or has no reader for the
  scheme."""
  try:
    # Imported here: only remote sources need it, and the JAX-only path never loads it.
    from etils import epath
  except ImportError as e:
    raise OSError(f"etils.epath cannot be imported ({e}); pip install etils[epath]") from None
  try:
    return epath.Path(url)
  except KeyError:  # epath.Path raises KeyError for a scheme it has no backend for
    raise OSError(f"etils.epath reads no {url.split('://')[0]}:// URLs "
                  "(it reads gs://, s3://, az://, hf://)") from None


def local_directory(directory: str, cache_dir: str = "", *,
                    remote: Callable[[str], object] | None = None,
                    progress: Callable[[str], None] = _print) -> str:
  """The local directory to read for an arrayrecord `directory`: itself when it is local,
  else its staged copy in the cache (`stage`, once per process). `remote`: URL -> path
  object of the remote side (default `remote_path`)."""
  if not is_remote(directory):
    return directory
  url = directory.rstrip("/")
  local = cache_directory(url, cache_dir)
  if (url, local) not in _STAGED or not os.path.exists(os.path.join(local, shards.MANIFEST)):
    stage(url, local, remote=remote, progress=progress)
    _STAGED.add((url, local))
  return local


def _unreadable(url: str, what: str, error: Exception) -> str:
  reason = " ".join(f"{type(error).__name__}: {error}".split())
  return (f"arrayrecord source: {what} cannot be read ({reason}); copy the directory to a "
          f"local disk (gcloud storage cp -r {url} LOCAL) and set "
          "data.source=arrayrecord:LOCAL")


def _chunks(source, url: str, what: str) -> Iterator[bytes]:
  """The bytes of the remote file `source`; any failure of the remote side is one DataError
  (tf.io.gfile raises tf.errors.OpError, not OSError; fsspec its own errors)."""
  try:
    with source.open("rb") as f:
      while chunk := f.read(_CHUNK):
        yield chunk
  except Exception as e:
    raise DataError(_unreadable(url, what, e)) from None


def _write(path: str, chunks, check: Callable[[int, str], str | None] = lambda n, sha: None):
  """Write `chunks` to `path` through a temporary name in its directory; `check(bytes,
  sha256)` returns a message to refuse the copy (it is removed and DataError raised)."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path),
                             prefix=f".{os.path.basename(path)}.", suffix=_PART)
  try:
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
      for chunk in chunks:
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    problem = check(size, digest.hexdigest())
    if problem:
      raise DataError(problem)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _remove_stale_parts(local: str, now: float | None = None):
  """Remove the temporary files in `local` older than STALE_PART_SECONDS (a killed copy's);
  younger ones may belong to another process of this host staging the same URL."""
  now = time.time() if now is None else now
  for name in os.listdir(local):
    if name.startswith(".") and name.endswith(_PART):
      path = os.path.join(local, name)
      try:
        if now - os.path.getmtime(path) > STALE_PART_SECONDS:
          os.remove(path)
      except FileNotFoundError:  # its own process finished or removed it meanwhile
        pass


def _cached(path: str, shard: dict) -> bool:
  """Whether the cached file `path` is the manifest's shard (its size and SHA-256)."""
  return (os.path.isfile(path) and os.path.getsize(path) == shard["bytes"]
          and shards.file_sha256(path) == shard["sha256"])


def _read_local(path: str) -> bytes | None:
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    return None


def _shard_check(shard: dict, where: str) -> Callable[[int, str], str | None]:
  """The `_write` check of a copied shard against its manifest entry."""
  def check(size: int, sha: str) -> str | None:
    if (size, sha) == (shard["bytes"], shard["sha256"]):
      return None
    return (f"arrayrecord source: shard {where} is {size} bytes with SHA-256 {sha[:16]}..., "
            f"the manifest says {shard['bytes']} bytes, {shard['sha256'][:16]}... (the copy was "
            "removed from the cache); upload the prepared directory again")
  return check


def stage(url: str, local: str, *, remote: Callable[[str], object] | None = None,
          progress: Callable[[str], None] = _print) -> str:
  """Copy the prepared directory at `url` into `local` (see the module docstring), checking
  every shard against the manifest's size and SHA-256; shards already there and intact are
  kept. Prints one line per shard copied and one summary line; returns `local`.
  DataError in one line when the URL cannot be read, a shard differs from the manifest or
  the cache cannot be written. `remote`: URL -> a path object with `/` and `open('rb')`, as
  etils.epath.Path (default `remote_path`)."""
  t0 = time.time()
  try:
    root = (remote or remote_path)(url)
  except OSError as e:  # remote_path: etils missing, or no reader for the scheme
    raise DataError(_unreadable(url, url, e)) from None
  where = f"{url}/{shards.MANIFEST}"
  manifest_bytes = b"".join(_chunks(root / shards.MANIFEST, url, where))
  manifest = shards.parse_manifest(manifest_bytes, where)
  files = [s for split in manifest["splits"].values() for s in split["shards"]]
  for shard in files:  # names come from a remote file: none may point outside the cache
    if os.path.basename(shard["file"]) != shard["file"] or shard["file"].startswith("."):
      raise DataError(f"arrayrecord source: {where} names a shard {shard['file']!r} that is "
                      "not a plain file name")
  try:
    copied = _copy(url, root, local, manifest_bytes, manifest["splits"], progress)
  except OSError as e:  # the local side (the remote one raises DataError): no room, no rights
    raise DataError(f"arrayrecord source: the cache {local} cannot be written ({e}); set "
                    "data.cache_dir to a local directory with room for "
                    f"{sum(s['bytes'] for s in files) / 1e6:.0f} MB") from None
  size = sum(s["bytes"] for s in files) / 1e6
  if copied:
    progress(f"staged {url} in {local}: {copied} of {len(files)} shards copied, "
             f"{len(files) - copied} reused from the cache, {size:.1f} MB, "
             f"{time.time() - t0:.1f} s")
  else:
    progress(f"staged {url}: reusing the cache {local} ({len(files)} shards, {size:.1f} MB, "
             f"SHA-256 checked, {time.time() - t0:.1f} s)")
  return local


def _copy(url: str, root, local: str, manifest_bytes: bytes, splits: dict,
          progress: Callable[[str], None]) -> int:
  """Bring `local` to the manifest `manifest_bytes` (its `splits`) of `root` (at `url`):
  shards that are missing or differ, the labels files, then the manifest. Returns the
  number of shards copied."""
  os.makedirs(local, exist_ok=True)
  _remove_stale_parts(local)
  manifest_path = os.path.join(local, shards.MANIFEST)
  same_manifest = _read_local(manifest_path) == manifest_bytes
  if not same_manifest and os.path.exists(manifest_path):
    os.remove(manifest_path)  # a copy of another version: unfinished until staged again
  files = [s for split in splits.values() for s in split["shards"]]
  copied = 0
  for i, shard in enumerate(files):
    path = os.path.join(local, shard["file"])
    if _cached(path, shard):
      continue
    where = f"{url}/{shard['file']}"
    _write(path, _chunks(root / shard["file"], url, where), _shard_check(shard, where))
    copied += 1
    progress(f"stage  {shard['file']} ({i + 1}/{len(files)}, {shard['bytes'] / 1e6:.1f} MB, "
             "SHA-256 as in the manifest)")
  for name in splits:
    labels = f"{name}_labels.npy"
    if not (same_manifest and os.path.isfile(os.path.join(local, labels))):
      _write(os.path.join(local, labels), _chunks(root / labels, url, f"{url}/{labels}"))
  if not same_manifest:
    _write(manifest_path, [manifest_bytes])
  return copied
