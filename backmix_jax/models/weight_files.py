"""Reading a local weights file into {name: NumPy array}: safetensors, PyTorch state dicts
(`.pth`/`.pt`/`.bin`) and `.npz`, told apart by their content, never by their name.

* safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
  data_offsets}} (plus an optional `__metadata__`), then the raw little-endian buffer;
  parsed here, no `safetensors` package needed.
* PyTorch (`torch.save` of a state dict since torch 1.6): a zip holding `<dir>/data.pkl`
  and one `<dir>/data/<key>` file per storage. Read without torch by a restricted
  unpickler: it knows only the handful of globals a state dict pickles (OrderedDict,
  torch's tensor-rebuild functions and storage types) and refuses every other one, so a
  file cannot run code. A whole pickled model (`torch.save(model)`) or torch's legacy
  pre-1.6 format is refused with a line saying what to save instead.
* npz: arrays under the PyTorch names (`np.savez(path, **{k: v.numpy() for k, v in
  state_dict.items()})`), loaded with allow_pickle=False.

Floating-point arrays come back as float32 (bfloat16 and float16 files included: bfloat16
through JAX's NumPy dtype); integer buffers (BatchNorm's
num_batches_tracked) keep their type. A checkpoint that wraps its state dict under
`state_dict` or `model`, and names prefixed `module.` (DistributedDataParallel), are
unwrapped. Problems raise `WeightsError` (a DataError: the commands exit with code 2).
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import zipfile

import jax.numpy as jnp
import numpy as np

from backmix_jax.data.core import DataError


# NumPy has no bfloat16; JAX's (ml_dtypes') is a NumPy dtype.
_BFLOAT16 = jnp.dtype(jnp.bfloat16)


class WeightsError(DataError):
  """A weights file cannot be read, or does not fit the network it is loaded into."""


# safetensors dtype names -> NumPy dtypes (little-endian, as the format stores them).
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": _BFLOAT16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}

# torch storage class names (as torch.save pickles them) -> NumPy dtypes.
_TORCH_STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def read_weights(path: str) -> dict[str, np.ndarray]:
  """{tensor name: array} of the weights file at `path` (safetensors, PyTorch or npz)."""
  if not os.path.isfile(path):
    raise WeightsError(f"weights file {path!r} does not exist (weights are never downloaded: "
                       "give the path of a local file)")
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      names = zf.namelist()
      if any(n.endswith("data.pkl") for n in names):
        tensors = _read_torch_zip(path, zf, names)
      elif names and all(n.endswith(".npy") for n in names):
        with np.load(path, allow_pickle=False) as npz:
          tensors = {k: npz[k] for k in npz.files}
      else:
        raise WeightsError(f"weights file {path!r} is a zip archive but neither a PyTorch "
                           "state dict nor an .npz")
  else:
    with open(path, "rb") as f:
      head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
      tensors = _read_safetensors(path)
    elif head[:1] == b"\x80":
      raise WeightsError(f"weights file {path!r} is in PyTorch's legacy (pre-1.6) format: "
                         "re-save it with torch.save(model.state_dict(), path) under torch>=1.6 "
                         "or as safetensors")
    else:
      raise WeightsError(f"weights file {path!r} is not safetensors, a PyTorch state dict or "
                         ".npz")
  return {k: _as_loaded(v) for k, v in _unwrap(tensors, path).items()}


def _as_loaded(a: np.ndarray) -> np.ndarray:
  """Floating point (bfloat16 included: NumPy does not count it as floating) as float32."""
  a = np.asarray(a)
  floating = np.issubdtype(a.dtype, np.floating) or a.dtype == _BFLOAT16
  return a.astype(np.float32) if floating else a


def _unwrap(tensors: dict, path: str) -> dict[str, np.ndarray]:
  """The flat state dict inside a checkpoint dict; `module.` prefixes dropped."""
  for key in ("state_dict", "model"):
    if isinstance(tensors.get(key), dict):
      tensors = tensors[key]
      break
  out = {}
  for name, value in tensors.items():
    if not isinstance(value, np.ndarray):
      raise WeightsError(f"weights file {path!r} holds {name!r}, which is not a tensor: "
                         "save the model's state_dict()")
    out[name[len("module."):] if name.startswith("module.") else name] = value
  return out


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > size - 8:
      raise WeightsError(f"safetensors file {path!r} is truncated (header of {n} bytes)")
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise WeightsError(f"safetensors file {path!r} has an unreadable header ({e})") from None
  # A read-only map: a 350 MB ViT-B file is not copied until its arrays are converted.
  buffer = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info.get("dtype") not in _SAFETENSORS_DTYPES:
      raise WeightsError(f"safetensors file {path!r}: {name!r} has unsupported dtype "
                         f"{info.get('dtype')!r}")
    begin, end = info["data_offsets"]
    if end > len(buffer):
      raise WeightsError(f"safetensors file {path!r} is truncated ({name!r} ends past the file)")
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
    out[name] = np.frombuffer(buffer[begin:end], dtype).reshape(info["shape"])
  return out


class _StorageType:
  """Stand-in for a torch storage class: only its element dtype is needed."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_TORCH_STORAGES[name])


def _rebuild_tensor(storage, offset, size, stride, *_):
  """torch._utils._rebuild_tensor_v2: a strided view of the storage, copied."""
  item = storage.dtype.itemsize
  if not size:
    return storage[offset:offset + 1].reshape(()).copy()
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, *_):
  """torch._utils._rebuild_parameter: a Parameter is its data."""
  return data


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles a torch state dict; any global outside a state dict's vocabulary is refused."""

  def __init__(self, file, zf: zipfile.ZipFile, prefix: str, byteorder: str, path: str):
    super().__init__(file)
    self._zf, self._prefix, self._byteorder, self._path = zf, prefix, byteorder, path

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _TORCH_STORAGES:
      return _StorageType(name)
    raise WeightsError(f"weights file {self._path!r} pickles {module}.{name}, which a state "
                       "dict does not hold: save the model's state_dict() (or safetensors)")

  def persistent_load(self, pid):
    kind, storage_type, key = pid[0], pid[1], pid[2]
    if kind != "storage" or not isinstance(storage_type, _StorageType):
      raise WeightsError(f"weights file {self._path!r} has a storage of unknown kind {pid[:2]}")
    dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
    return np.frombuffer(self._zf.read(f"{self._prefix}data/{key}"), dtype)


def _read_torch_zip(path: str, zf: zipfile.ZipFile, names: list[str]) -> dict:
  pkl = next(n for n in names if n.endswith("data.pkl"))
  prefix = pkl[:-len("data.pkl")]
  byteorder = "little"
  if f"{prefix}byteorder" in names:
    byteorder = zf.read(f"{prefix}byteorder").decode().strip()
  with zf.open(pkl) as f:
    try:
      loaded = _StateDictUnpickler(f, zf, prefix, byteorder, path).load()
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
      if isinstance(e, WeightsError):
        raise
      raise WeightsError(f"weights file {path!r} is an unreadable PyTorch file ({e})") from None
  if not isinstance(loaded, dict):
    raise WeightsError(f"weights file {path!r} holds a {type(loaded).__name__}, not a state dict")
  return loaded
