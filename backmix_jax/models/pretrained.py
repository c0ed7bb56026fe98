"""Pretrained weights into a backbone's variables: PyTorch names and layouts -> Flax.

The backbones that import weights (`bottleneck_resnet`, `vit`) name their modules as the
PyTorch state dict does, with `_<digit>` for `.<digit>` (`layer1_0` = `layer1.0`,
`blocks_3` = `blocks.3`, `downsample_0` = `downsample.0`), so the mapping is mechanical:

  Flax variable                 PyTorch tensor          layout
  params .../kernel (4-D)       .../weight [O,I,kh,kw]  -> HWIO [kh,kw,I,O]
  params .../kernel (2-D)       .../weight [out,in]     -> [in,out] (a Linear; the fused
                                                           attn.qkv stays fused: [D,3D])
  params .../scale              .../weight              BatchNorm / LayerNorm gain
  params .../bias               .../bias
  params cls_token, pos_embed   same names              [1,1,D], [1,1+N,D] as stored
  batch_stats .../mean, var     .../running_mean, running_var

The classifier head (`fc.*`, `head.*`) is skipped (the framework brings its own head) and
BatchNorm's `num_batches_tracked` has no Flax counterpart. Every other tensor must match
one variable of the same shape: missing, unexpected or wrongly shaped tensors raise one
`WeightsError` line naming them, so a file of another architecture (or another width or
depth) never half-loads. One exception: a `pos_embed` for another grid of patches (e.g.
ViT-B/16 at 384 px loaded into 224 px) is resampled bicubically to the model's grid, as
timm does when it loads such weights. Nothing is ever downloaded: see weight_files.py.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from backmix_jax.models.weight_files import WeightsError, read_weights

# Tensors of the file that belong to the PyTorch model's classifier, not to the backbone.
HEAD_PREFIXES = ("fc.", "head.")
# PyTorch buffers with no Flax counterpart.
IGNORED_SUFFIXES = ("num_batches_tracked",)
_LEAF_NAMES = {("params", "kernel"): "weight", ("params", "scale"): "weight",
               ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}
_LISTED = 4  # names shown per kind of mismatch


def torch_name(collection: str, path: tuple[str, ...]) -> str:
  """The PyTorch state-dict name of Flax variable `path` in `collection`.

  ('params', ('layer1_0', 'conv1', 'kernel')) -> 'layer1.0.conv1.weight'."""
  modules = [re.sub(r"_(\d+)$", r".\1", m) for m in path[:-1]]
  leaf = _LEAF_NAMES.get((collection, path[-1]), path[-1])
  return ".".join(modules + [leaf])


def to_flax_layout(name: str, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """A PyTorch tensor in the layout of the Flax variable of shape `shape` (kernels
  transposed; a pos_embed of another patch grid resampled to the grid `shape` holds)."""
  if name.endswith(".weight") and tensor.ndim == 4:
    tensor = tensor.transpose(2, 3, 1, 0)   # OIHW -> HWIO
  elif name.endswith(".weight") and tensor.ndim == 2:
    tensor = tensor.T                       # Linear [out,in] -> Dense [in,out]
  if name == "pos_embed" and tensor.shape != tuple(shape):
    tensor = _resample_pos_embed(tensor, shape)
  return tensor


def _torch_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The PyTorch shape of a Flax variable of shape `shape` (to_flax_layout's inverse), so a
  mismatch names two shapes in one layout."""
  if name.endswith(".weight") and len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(reversed(shape)) if name.endswith(".weight") and len(shape) == 2 else tuple(shape)


def _resample_pos_embed(pos: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """[1,1+n*n,D] -> [1,1+m*m,D] (m*m = shape[1]-1): the class token's entry kept, the grid's
  resampled bicubically; left as it is when either is not a square grid of one width."""
  n, m = np.sqrt(pos.shape[1] - 1), np.sqrt(shape[1] - 1)
  if pos.ndim != 3 or pos.shape[2] != shape[2] or n % 1 or m % 1:
    return pos
  n, m, d = int(n), int(m), pos.shape[2]
  grid = jax.image.resize(jnp.asarray(pos[0, 1:]).reshape(n, n, d), (m, m, d), "bicubic",
                          antialias=False)
  return np.concatenate([pos[:, :1], np.asarray(grid).reshape(1, m * m, d)], axis=1)


def _listed(names) -> str:
  names = list(names)
  more = f", ... +{len(names) - _LISTED}" if len(names) > _LISTED else ""
  return ", ".join(names[:_LISTED]) + more


def load_into(variables: dict, tensors: dict[str, np.ndarray],
              source: str = "weights") -> tuple[dict, list[str]]:
  """`variables` ({'params', 'batch_stats'} of one backbone) with every variable replaced by
  its tensor of `tensors` ({PyTorch name: array}).

  Returns (new variables as float32 NumPy trees of the same structure, report lines: how
  many tensors were loaded, what was skipped or resampled). Raises WeightsError, one line,
  when a tensor is missing, unexpected or of the wrong shape."""
  used, missing, wrong, resampled, out = set(), [], [], [], {}
  for collection in ("params", "batch_stats"):
    flat = traverse_util.flatten_dict(variables.get(collection, {}))
    new = {}
    for path, leaf in flat.items():
      name = torch_name(collection, path)
      if name not in tensors:
        missing.append(name)
        continue
      used.add(name)
      value = to_flax_layout(name, tensors[name], leaf.shape)
      if value.shape != tuple(leaf.shape):
        wrong.append(f"{name} (file {list(tensors[name].shape)}, network "
                     f"{list(_torch_shape(name, leaf.shape))})")
        continue
      if value.shape != tensors[name].shape and name == "pos_embed":
        resampled.append(f"pos_embed {list(tensors[name].shape)} -> {list(value.shape)}")
      new[path] = np.asarray(value, np.float32)
    if flat:
      out[collection] = traverse_util.unflatten_dict(new)
  skipped = [n for n in tensors if n.startswith(HEAD_PREFIXES)]
  unexpected = [n for n in tensors if n not in used and n not in skipped
                and not n.endswith(IGNORED_SUFFIXES)]
  problems = [f"{len(names)} {kind} ({_listed(names)})"
              for kind, names in (("missing", missing), ("unexpected", unexpected),
                                  ("wrongly shaped", wrong)) if names]
  if problems:
    raise WeightsError(f"{source} does not fit the network: " + "; ".join(problems))
  report = [f"loaded {len(used)} tensors from {source}"]
  if skipped:
    report.append(f"skipped the classifier head: {_listed(skipped)}")
  report.extend(f"resampled {r}" for r in resampled)
  return out, report


def load_pretrained(variables: dict, path: str) -> tuple[dict, list[str]]:
  """`load_into` with the tensors of the local file `path` (weight_files.read_weights)."""
  return load_into(variables, read_weights(path), f"weights file {path!r}")
