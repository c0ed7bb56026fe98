"""BackMix (Wang et al., TPAMI 2025) as pure JAX functions.

Every training image receives one square patch of *background* from a partner image: the
partner's foreground (the top `fg_ratio` cells of its class activation map, CAM) is first set
to `fill`, then a box of side P = round(patch_frac * H) is cut at a random corner of the masked
partner and pasted at an independent random corner of the target. Labels stay unchanged.

Two ways to get partners and their CAMs:

* live: partners are other samples of the same batch, CAMs come from a gradient-free forward
  of the clean batch (`class_activation_maps`, `apply_backmix`);
* bank: partners come from a second, independently shuffled data stream, CAMs from a
  per-example EMA bank (`init_bank`, `update_bank`, `apply_backmix_from_sources`), as in the
  authors' released dataset wrapper.

Knobs for studying why BackMix helps or hurts (the first value of each is the released
behaviour and the default):

* `placement` (PLACEMENTS): 'anywhere' pastes the whole box; 'background' lets pasted pixels
  land only on the target's background, its own top-`fg_ratio` CAM cells keep their pixels;
* `replace` (REPLACES): 'patch' pastes `num_patches` independent boxes of side P;
  'background' replaces every background cell of the target by the partner's pixels at the
  same place (the partner's foreground set to `fill`);
* `partner` (PARTNERS, partners from the batch): 'other_class' draws them among other labels;
* `fill` may be a per-channel [C] vector (e.g. the training set's mean, FILL_MODES);
* `resample_cams` puts CAMs on a finer (or coarser) grid than the network's;
* `oracle_cams` turns true foreground masks into CAMs (CAM_SOURCES 'oracle'); CAM_SOURCES
  'teacher' takes the CAMs of another, already trained network (training/teacher.py).

All shapes are fixed and every function is jit-able; `fg_ratio`, `patch_frac`, `partner`,
`placement`, `replace`, `num_patches`, `norm` and `return_info` must be static Python values,
`fill` (scalar or [C]) and `mix_prob` may be traced.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Allowed values of the static settings; the first of each tuple is the released behaviour.
CAM_NORMS = ('minmax', 'relu', 'softmax')
# Where CAMs come from: this batch under the network being trained, the bank, true masks, or
# this batch under a fixed trained network (backmix.teacher).
CAM_SOURCES = ('live', 'bank', 'oracle', 'teacher')
PARTNERS = ('permutation', 'uniform', 'other_class')
PLACEMENTS = ('anywhere', 'background')
REPLACES = ('patch', 'background')
FILL_MODES = ('constant', 'dataset_mean')  # resolved to a value by the caller (training.run)
BANK_INIT = 0.5  # the released wrapper starts every bank cell at 0.5


def class_activation_maps(class_maps, labels, norm='minmax'):
  """The CAM of each image's label, made non-negative.

  Args:
    class_maps: [B, g, g, K] per-location class scores, any float dtype.
    labels: int [B].
    norm: 'minmax' (rescaled to [0, 1] per image; a constant map gives zeros), 'relu'
      (max(map, 0)) or 'softmax' (softmax over the K classes at each cell, label channel).
  Returns:
    float32 [B, g, g], >= 0.
  """
  if norm not in CAM_NORMS:
    raise ValueError(f"unknown CAM norm {norm!r}; expected one of {CAM_NORMS}")
  maps = jnp.asarray(class_maps, jnp.float32)  # low-precision maps tie too easily in the top-k
  if norm == 'softmax':
    maps = jax.nn.softmax(maps, axis=-1)
  index = jnp.asarray(labels, jnp.int32)[:, None, None, None]
  cams = jnp.take_along_axis(maps, index, axis=-1)[..., 0]
  if norm == 'relu':
    return jnp.maximum(cams, 0.0)
  if norm == 'minmax':
    lo = cams.min(axis=(1, 2), keepdims=True)
    span = cams.max(axis=(1, 2), keepdims=True) - lo
    # A flat map has no foreground; the inner where keeps value and gradient free of NaN.
    # XLA may divide by multiplying with a rounded reciprocal, hence the clip at 1.
    scaled = jnp.minimum((cams - lo) / jnp.where(span > 0, span, 1.0), 1.0)
    return jnp.where(span > 0, scaled, 0.0)
  return cams


def fraction_problems(fg_ratio=None, patch_frac=None, mix_prob=None) -> list[str]:
  """The allowed ranges of the fractional settings (each checked when given), one sentence
  per violation: fg_ratio and patch_frac in (0, 1], mix_prob in [0, 1]."""
  out = []
  for name, value, low_open in (("fg_ratio", fg_ratio, True), ("patch_frac", patch_frac, True),
                                ("mix_prob", mix_prob, False)):
    if value is None:
      continue
    if not ((0 < value <= 1) if low_open else (0 <= value <= 1)):  # NaN fails both
      out.append(f"{name} must be in {'(' if low_open else '['}0, 1], got {value}")
  return out


def _check_fg_ratio(fg_ratio):
  for problem in fraction_problems(fg_ratio=fg_ratio):
    raise ValueError(problem)


def foreground_mask(cams, fg_ratio):
  """The top `fg_ratio` cells of each CAM, by rank (no threshold), as the released code does.

  Args:
    cams: [B, g, g].
    fg_ratio: static float in (0, 1].
  Returns:
    bool [B, g, g] with exactly int(fg_ratio * g * g) cells True per image. Equal values are
    ranked by flat (row-major) index, lowest first, so the mask is deterministic.
  """
  _check_fg_ratio(fg_ratio)
  b, g = cams.shape[0], cams.shape[1]
  k = int(fg_ratio * g * g)
  flat = jnp.asarray(cams, jnp.float32).reshape(b, g * g)
  order = jnp.argsort(-flat, axis=-1, stable=True)  # highest first, ties in index order
  rank = jnp.argsort(order, axis=-1)  # inverse permutation: the rank of every cell
  return (rank < k).reshape(b, g, g)


def upsample_mask(mask, size):
  """Nearest-neighbour upsampling of cell masks: bool [B, g, g] -> bool [B, size, size].

  Each cell becomes a (size/g) x (size/g) block of pixels; `size` must be divisible by g.
  """
  g = mask.shape[1]
  if size % g:
    raise ValueError(f"image size {size} is not divisible by the CAM grid {g}")
  s = size // g
  return jnp.repeat(jnp.repeat(mask, s, axis=1), s, axis=2)


def resample_cams(cams, grid):
  """CAMs on another grid: bilinear resampling of [B, g, g] to [B, grid, grid].

  A finer grid than the network's gives masks that follow an object's outline more closely
  than whole network cells; the ranking `foreground_mask` makes is of the resampled cells.

  Args:
    cams: float [B, g, g].
    grid: static int, the new grid; the image side must stay divisible by it.
  Returns:
    float32 [B, grid, grid]; `cams` itself (as float32) when grid == g.
  """
  cams = jnp.asarray(cams, jnp.float32)
  if cams.shape[1] == grid:
    return cams
  return jax.image.resize(cams, (cams.shape[0], grid, grid), method='linear')


def oracle_cams(masks, grid):
  """The CAM true foreground masks give: the fraction of foreground pixels in each grid cell.

  An upper bound on CAM quality, for data whose true foreground is known. Ranked like any CAM
  by `foreground_mask`: when the object covers fewer than int(fg_ratio * g * g) cells, the
  remaining top cells are empty ones, lowest flat index first.

  Args:
    masks: bool [B, H, H], True on true-foreground pixels.
    grid: static int g, the CAM grid of the network; H must be divisible by g.
  Returns:
    float32 [B, g, g] in [0, 1].
  """
  if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
    raise ValueError(f"masks must be square [B, H, H], got shape {masks.shape}")
  b, size = masks.shape[0], masks.shape[1]
  if size % grid:
    raise ValueError(f"image size {size} is not divisible by the CAM grid {grid}")
  s = size // grid
  cells = jnp.asarray(masks, jnp.float32).reshape(b, grid, s, grid, s)
  return cells.mean(axis=(2, 4))


def _check_fill(fill, channels):
  if jnp.ndim(fill) not in (0, 1) or (jnp.ndim(fill) == 1 and jnp.shape(fill)[0] != channels):
    raise ValueError(f"fill must be a scalar or [{channels}] per channel, got shape "
                     f"{jnp.shape(fill)}")


def paste_patches(images, partner_images, partner_masks, target_corners, source_corners,
                  patch, applied, fill=0.0, target_masks=None):
  """The deterministic core of BackMix: one masked partner box pasted into each image.

  Args:
    images: [B, H, W, C] targets.
    partner_images: [B, H, W, C]; row b is the partner (background source) of image b.
    partner_masks: bool [B, H, W], True on partner foreground pixels, which become `fill`.
    target_corners, source_corners: int [B, 2], (row, col) of the top-left corner of the box
      in the target and in the partner; boxes must lie inside the image (dynamic_slice would
      otherwise shift them).
    patch: static int P, the box side.
    applied: bool [B]; images with False are returned unchanged.
    fill: value written on partner foreground pixels, scalar or per channel [C].
    target_masks: optional bool [B, H, W], True on target pixels the box must not touch
      (placement='background': the target's own foreground keeps its pixels).
  Returns:
    [B, H, W, C] in the dtype of `images`: image b outside its target box, the masked
    partner box inside it (except on `target_masks`).
  """
  c = images.shape[-1]
  _check_fill(fill, c)
  fill = jnp.asarray(fill, images.dtype)

  def one(image, partner, mask, t, s, on, *keep):
    box = lax.dynamic_slice(partner, (s[0], s[1], 0), (patch, patch, c)).astype(image.dtype)
    fg = lax.dynamic_slice(mask, (s[0], s[1]), (patch, patch))
    box = jnp.where(fg[..., None], fill, box)
    # When not applied, write the target's own box back: one update serves both cases and
    # touches only P*P pixels instead of selecting between two whole images.
    own = lax.dynamic_slice(image, (t[0], t[1], 0), (patch, patch, c))
    if keep:
      kept = lax.dynamic_slice(keep[0], (t[0], t[1]), (patch, patch))
      box = jnp.where(kept[..., None], own, box)
    return lax.dynamic_update_slice(image, jnp.where(on, box, own), (t[0], t[1], 0))

  args = (images, partner_images, partner_masks, target_corners, source_corners, applied)
  if target_masks is not None:
    args += (target_masks,)
  return jax.vmap(one)(*args)


def replace_background(images, partner_images, partner_masks, target_masks, applied, fill=0.0):
  """replace='background': the target keeps its foreground, everything else is the partner.

  Args:
    images, partner_images: [B, H, W, C]; row b of partner_images is image b's partner.
    partner_masks: bool [B, H, W], partner foreground pixels (written as `fill`).
    target_masks: bool [B, H, W], target foreground pixels (kept).
    applied: bool [B]; images with False are returned unchanged.
    fill: scalar or per channel [C].
  Returns:
    [B, H, W, C] in the dtype of `images`.
  """
  _check_fill(fill, images.shape[-1])
  fill = jnp.asarray(fill, images.dtype)
  source = jnp.where(partner_masks[..., None], fill, partner_images.astype(images.dtype))
  take = applied[:, None, None, None] & ~target_masks[..., None]
  return jnp.where(take, source, images)


def draw_partners(rng, batch, partner='permutation', labels=None):
  """The partner (background source) index of each sample, int32 [batch].

  'permutation': shuffle the batch into a random cycle and give each sample the next one, so
    partners form a permutation without fixed points: every sample lends and receives exactly
    one background and never its own (except when batch == 1).
  'uniform': independent uniform draws with replacement; a sample may be its own partner,
    as in the released wrapper (which draws over the whole training set).
  'other_class': needs `labels` (int [batch]); each sample draws uniformly among the samples
    with another label (with replacement over samples: one may lend to several), or among
    all other samples when the batch holds only its label (itself when batch == 1).
  """
  if partner == 'permutation':
    order = jax.random.permutation(rng, batch).astype(jnp.int32)
    return jnp.zeros(batch, jnp.int32).at[order].set(jnp.roll(order, -1))
  if partner == 'uniform':
    return jax.random.randint(rng, (batch,), 0, batch, dtype=jnp.int32)
  if partner == 'other_class':
    if labels is None:
      raise ValueError("partner='other_class' needs the batch labels")
    labels = jnp.asarray(labels)
    differ = labels[:, None] != labels[None, :]
    others = ~jnp.eye(batch, dtype=bool)
    allowed = jnp.where(differ.any(axis=1, keepdims=True), differ, others)
    # The argmax of iid uniform scores over the allowed columns is a uniform pick among them.
    scores = jnp.where(allowed, jax.random.uniform(rng, (batch, batch)), -1.0)
    return jnp.argmax(scores, axis=1).astype(jnp.int32)
  raise ValueError(f"unknown partner rule {partner!r}; expected one of {PARTNERS}")


def patch_side(size: int, patch_frac: float) -> int:
  """The side P = round(patch_frac * size) of the square patch on `size` px images."""
  return round(patch_frac * size)


def patch_problems(size: int, patch_frac: float) -> list[str]:
  """The patch must fit: 1 <= P <= size, one sentence when it does not (training/validate.py
  reports it as `backmix <sentence>`)."""
  patch = patch_side(size, patch_frac)
  return [] if 1 <= patch <= size else [f"patch side {patch} px does not fit a {size} px image"]


def _patch_side(images, cams, fg_ratio, patch_frac):
  """Validates shapes and static settings; returns the box side P = round(patch_frac * H)."""
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f"images must be square [B, H, H, C], got shape {images.shape}")
  if cams.ndim != 3 or cams.shape[0] != images.shape[0] or cams.shape[1] != cams.shape[2]:
    raise ValueError(f"cams must be [B, g, g] with B = {images.shape[0]}, got {cams.shape}")
  size, grid = images.shape[1], cams.shape[1]
  if size % grid:
    raise ValueError(f"image size {size} is not divisible by the CAM grid {grid}")
  _check_fg_ratio(fg_ratio)
  for problem in patch_problems(size, patch_frac):
    raise ValueError(f"patch_frac {patch_frac}: {problem}")
  return patch_side(size, patch_frac)


def mode_problems(placement='anywhere', replace='patch', num_patches=1) -> list[str]:
  """The rules between the mixing-mode settings, one sentence per violation (named as the
  `config.backmix` fields; training/validate.py reports them as `backmix.<sentence>`):
  num_patches is an int >= 1, and replace='background', which replaces every background
  cell, refuses the settings it would ignore (num_patches != 1, placement != 'anywhere').
  Unknown placement or replace values are not checked here (their tuples are)."""
  out = []
  if not isinstance(num_patches, int) or isinstance(num_patches, bool) or num_patches < 1:
    out.append(f"num_patches must be an integer >= 1, got {num_patches!r}")
  if replace == 'background':
    if num_patches != 1:
      out.append(f"num_patches={num_patches!r} has no effect with replace='background'; "
                 "leave it 1")
    if placement != PLACEMENTS[0]:
      out.append(f"placement={placement!r} has no effect with replace='background' (it always "
                 f"keeps the target's foreground); leave it {PLACEMENTS[0]!r}")
  return out


def needs_target_cams(placement='anywhere', replace='patch') -> bool:
  """Whether mixing reads the target's own CAM (its foreground keeps its pixels): with
  placement or replace 'background'."""
  return placement == 'background' or replace == 'background'


def _check_mode(placement, replace, num_patches):
  """Static mixing settings; True when the target's own CAM is needed."""
  if placement not in PLACEMENTS:
    raise ValueError(f"unknown placement {placement!r}; expected one of {PLACEMENTS}")
  if replace not in REPLACES:
    raise ValueError(f"unknown replace {replace!r}; expected one of {REPLACES}")
  for problem in mode_problems(placement, replace, num_patches):
    raise ValueError(problem)
  return needs_target_cams(placement, replace)


def config_kwargs(b, fill, *, from_sources=False) -> dict:
  """The keyword arguments a `config.backmix` block `b` gives `apply_backmix` (or with
  from_sources=True `apply_backmix_from_sources`, which takes no `partner`): the one mapping
  from the config's mixing knobs to this module's, used by the train step and the mixing
  picture. `fill`: the resolved fill value, scalar or [C] (b.fill under fill_mode='constant',
  the data's channel mean under 'dataset_mean'; training.run.Run.fill)."""
  out = dict(fg_ratio=b.fg_ratio, patch_frac=b.patch_frac, fill=fill, mix_prob=b.mix_prob,
             placement=b.placement, replace=b.replace, num_patches=b.num_patches)
  if not from_sources:
    out["partner"] = b.partner
  return out


def apply_backmix_from_sources(rng, images, source_images, source_cams, *, fg_ratio=0.25,
                               patch_frac=0.25, fill=0.0, mix_prob=1.0, placement='anywhere',
                               replace='patch', num_patches=1, target_cams=None,
                               return_info=False):
  """BackMix with given partners: source b lends its background to image b (bank mode).

  Args:
    rng: PRNG key.
    images: [B, H, H, C] normalised targets, any dtype (the output keeps it).
    source_images: [B, H, H, C] partners, e.g. a second independently shuffled stream.
    source_cams: [B, g, g] their CAMs, e.g. `bank[source_indices]`; H divisible by g.
    fg_ratio: static, fraction of CAM cells masked as foreground.
    patch_frac: static, box side as a fraction of H.
    fill: value of masked foreground pixels, scalar or per channel [C].
    mix_prob: per-sample probability of mixing; the others are returned unchanged.
    placement: static, 'anywhere' or 'background' (target foreground pixels keep their own).
    replace: static, 'patch' (boxes) or 'background' (every target background cell).
    num_patches: static int >= 1, independent boxes per image for replace='patch'; later
      boxes overwrite earlier ones where they overlap.
    target_cams: [B, g, g] CAMs of the targets, e.g. `bank[indices]`; needed (and only read)
      for placement='background' or replace='background'.
    return_info: static; also return a dict with `partner` (int32 [B], here arange(B): the row
      of the source stream), `applied` (bool [B]), `source_masks` (bool [B, H, H], the
      partner's foreground pixels), `target_masks` (bool [B, H, H], the target's, when read);
      for replace='patch' also `target_box` and `source_box` (int32 [B, 2], top-left row, col;
      [B, num_patches, 2] when num_patches > 1) and `patch` (int P).
  Returns:
    mixed [B, H, H, C], or (mixed, info).
  """
  images = jnp.asarray(images)
  if source_images.shape != images.shape:
    raise ValueError(f"source_images {source_images.shape} must match images {images.shape}")
  if isinstance(mix_prob, (int, float)):
    for problem in fraction_problems(mix_prob=mix_prob):
      raise ValueError(problem)
  patch = _patch_side(images, source_cams, fg_ratio, patch_frac)
  needs_target = _check_mode(placement, replace, num_patches)
  if needs_target and (target_cams is None or target_cams.shape != source_cams.shape):
    raise ValueError(f"placement={placement!r}, replace={replace!r} need target_cams shaped like "
                     f"source_cams {source_cams.shape}, got "
                     f"{None if target_cams is None else target_cams.shape}")
  _check_fill(fill, images.shape[-1])
  batch, size = images.shape[0], images.shape[1]
  k_target, k_source, k_apply = jax.random.split(rng, 3)
  applied = jax.random.uniform(k_apply, (batch,)) < mix_prob  # always True at 1, never at 0
  masks = upsample_mask(foreground_mask(source_cams, fg_ratio), size)
  keep = upsample_mask(foreground_mask(target_cams, fg_ratio), size) if needs_target else None
  info = dict(partner=jnp.arange(batch, dtype=jnp.int32), applied=applied, source_masks=masks)
  if keep is not None:
    info['target_masks'] = keep
  if replace == 'background':
    mixed = replace_background(images, source_images, masks, keep, applied, fill)
  else:
    # Released code: randint(0, S - P), exclusive upper bound; S == P leaves only corner 0.
    high = max(size - patch, 1)
    shape = (batch, 2) if num_patches == 1 else (batch, num_patches, 2)
    target = jax.random.randint(k_target, shape, 0, high, dtype=jnp.int32)
    source = jax.random.randint(k_source, shape, 0, high, dtype=jnp.int32)
    mixed = images
    for i in range(num_patches):
      t, s = (target, source) if num_patches == 1 else (target[:, i], source[:, i])
      mixed = paste_patches(mixed, source_images, masks, t, s, patch, applied, fill, keep)
    info.update(target_box=target, source_box=source, patch=patch)
  if not return_info:
    return mixed
  return mixed, info


def apply_backmix(rng, images, cams, *, fg_ratio=0.25, patch_frac=0.25, fill=0.0,
                  partner='permutation', mix_prob=1.0, labels=None, placement='anywhere',
                  replace='patch', num_patches=1, return_info=False):
  """BackMix within a batch (live mode): partners are other samples of the same batch.

  Args:
    rng: PRNG key.
    images: [B, H, H, C] normalised images, any dtype (the output keeps it).
    cams: [B, g, g], the CAM of each image (read where that image is someone's partner, and
      as its own foreground for placement/replace='background').
    partner: static, one of PARTNERS (see `draw_partners`).
    labels: int [B], needed for partner='other_class'.
    fg_ratio, patch_frac, fill, mix_prob, placement, replace, num_patches, return_info: as in
      `apply_backmix_from_sources`; `info['partner']` holds the batch index of each sample's
      partner.
  Returns:
    mixed [B, H, H, C], or (mixed, info).
  """
  if partner not in PARTNERS:
    raise ValueError(f"unknown partner rule {partner!r}; expected one of {PARTNERS}")
  images = jnp.asarray(images)
  cams = jnp.asarray(cams)
  k_partner, k_mix = jax.random.split(rng)
  partners = draw_partners(k_partner, images.shape[0], partner, labels)
  needs_target = _check_mode(placement, replace, num_patches)
  out = apply_backmix_from_sources(
      k_mix, images, images[partners], cams[partners], fg_ratio=fg_ratio,
      patch_frac=patch_frac, fill=fill, mix_prob=mix_prob, placement=placement, replace=replace,
      num_patches=num_patches, target_cams=cams if needs_target else None,
      return_info=return_info)
  if not return_info:
    return out
  mixed, info = out
  return mixed, dict(info, partner=partners)


def init_bank(num_examples, grid):
  """The per-example CAM bank of the released wrapper: float32 [N, g, g], all 0.5."""
  return jnp.full((num_examples, grid, grid), BANK_INIT, jnp.float32)


def update_bank(bank, indices, cams, momentum=0.1):
  """EMA refresh of a batch's rows: bank[i] <- momentum * cam + (1 - momentum) * bank[i].

  Args:
    bank: float32 [N, g, g].
    indices: int [B], example ids in [0, N).
    cams: [B, g, g], fresh CAMs of those examples.
    momentum: weight of the fresh CAM (0.1 in the released code).
  Returns:
    The new bank, [N, g, g]. An id repeated within the batch gets the update of its last
    occurrence (one EMA step from the old row, not two chained ones), so the result is
    deterministic; XLA leaves the order of duplicate scatter writes unspecified.
  """
  indices = jnp.asarray(indices, jnp.int32)
  fresh = momentum * jnp.asarray(cams, jnp.float32) + (1 - momentum) * bank[indices]
  pos = jnp.arange(indices.shape[0])
  superseded = ((indices[:, None] == indices[None, :]) & (pos[None, :] > pos[:, None])).any(1)
  # Superseded writes go to row N, out of range, which mode='drop' discards.
  rows = jnp.where(superseded, bank.shape[0], indices)
  return bank.at[rows].set(fresh.astype(bank.dtype), mode='drop')
