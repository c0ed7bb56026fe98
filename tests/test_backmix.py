"""Properties of the BackMix core (backmix_jax/backmix.py), checked against NumPy references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax import backmix

# (size, grid, channels, patch_frac, fg_ratio, dtype, partner): 28/32/64 px, gray and colour.
CASES = [
    (28, 7, 1, 0.25, 0.25, jnp.float32, 'permutation'),
    (28, 4, 3, 0.5, 0.25, jnp.bfloat16, 'uniform'),
    (32, 4, 3, 0.25, 0.25, jnp.float32, 'uniform'),
    (32, 8, 1, 0.5, 0.4, jnp.float32, 'permutation'),
    (64, 8, 3, 0.25, 0.25, jnp.bfloat16, 'permutation'),
]
BATCH = 6


def _bits(x):
  """Raw bits of an array, so comparisons are exact (no -0.0 == 0.0, no float tolerance)."""
  x = np.asarray(x)
  return x.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize])


def _np_foreground(cam, fg_ratio):
  """Reference top-k mask of one [g, g] CAM: rank by value, ties to the lowest flat index."""
  g = cam.shape[0]
  top = np.argsort(-cam.reshape(-1).astype(np.float64), kind='stable')[:int(fg_ratio * g * g)]
  cells = np.zeros(g * g, bool)
  cells[top] = True
  return cells.reshape(g, g)


def _expected(images, partner_images, partner_cams, info, fg_ratio, fill):
  """NumPy reference of BackMix given the drawn partners (already aligned) and boxes."""
  out = np.array(images)
  p, size = info['patch'], images.shape[1]
  for b in range(len(images)):
    if not info['applied'][b]:
      continue
    cell = size // partner_cams.shape[1]
    fg = np.kron(_np_foreground(partner_cams[b], fg_ratio), np.ones((cell, cell), bool))
    masked = np.array(partner_images[b])
    masked[fg.astype(bool)] = fill
    (tr, tc), (sr, sc) = info['target_box'][b], info['source_box'][b]
    out[b, tr:tr + p, tc:tc + p] = masked[sr:sr + p, sc:sc + p]
  return out


def _make(seed, size, grid, channels, dtype, batch=BATCH):
  """Random normalised images and random (mostly distinct, some tied) CAMs."""
  r = np.random.default_rng(seed)
  images = jnp.asarray(r.normal(size=(batch, size, size, channels)), dtype)
  cams = r.random((batch, grid, grid)).astype(np.float32)
  cams[0] = np.round(cams[0] * 3) / 3  # many ties in one CAM
  return images, jnp.asarray(cams)


@functools.lru_cache(maxsize=None)
def _jitted(fg_ratio, patch_frac, partner, fill=0.0, mix_prob=1.0):
  """One compiled apply_backmix per setting (and per shape, by jit's own cache)."""
  return jax.jit(functools.partial(backmix.apply_backmix, fg_ratio=fg_ratio, patch_frac=patch_frac,
                                   partner=partner, fill=fill, mix_prob=mix_prob, return_info=True))


@pytest.mark.parametrize('size,grid,channels,patch_frac,fg_ratio,dtype,partner', CASES)
def test_output_is_input_plus_one_masked_partner_box(size, grid, channels, patch_frac, fg_ratio,
                                                     dtype, partner):
  """Outside the target box output == input bit for bit; inside, the partner's pixel at the same
  offset from the source corner, or exactly `fill` where the partner's foreground is."""
  fill = -1.5  # distinct from any likely pixel, exactly representable in bfloat16
  fn = _jitted(fg_ratio, patch_frac, partner, fill)
  for seed in range(3):
    images, cams = _make(seed, size, grid, channels, dtype)
    mixed, info = fn(jax.random.key(seed), images, cams)
    info = jax.tree.map(np.asarray, info)
    p = round(patch_frac * size)
    assert mixed.dtype == images.dtype and mixed.shape == images.shape
    assert int(info['patch']) == p and info['applied'].all()
    assert ((info['target_box'] >= 0) & (info['target_box'] < max(size - p, 1))).all()
    assert ((info['source_box'] >= 0) & (info['source_box'] < max(size - p, 1))).all()
    im, mx = np.asarray(images), np.asarray(mixed)
    for b in range(BATCH):
      (tr, tc), (sr, sc) = info['target_box'][b], info['source_box'][b]
      outside = np.ones((size, size), bool)
      outside[tr:tr + p, tc:tc + p] = False
      np.testing.assert_array_equal(_bits(mx[b][outside]), _bits(im[b][outside]))
      partner_box = im[info['partner'][b], sr:sr + p, sc:sc + p]
      cell = size // grid
      fg = np.kron(_np_foreground(np.asarray(cams)[info['partner'][b]], fg_ratio),
                   np.ones((cell, cell), bool)).astype(bool)[sr:sr + p, sc:sc + p]
      want = np.where(fg[..., None], np.asarray(fill, im.dtype), partner_box)
      np.testing.assert_array_equal(_bits(mx[b, tr:tr + p, tc:tc + p]), _bits(want))


@pytest.mark.parametrize('size,grid,channels,patch_frac,fg_ratio,dtype,partner',
                         [CASES[1], CASES[3]])  # eager runs op by op: two shapes keep it fast
def test_jit_equals_eager_and_rng_controls_draw(size, grid, channels, patch_frac, fg_ratio, dtype,
                                                partner):
  """jit and eager agree bit for bit; the same key repeats the output, another key changes it."""
  images, cams = _make(7, size, grid, channels, dtype)
  fn = _jitted(fg_ratio, patch_frac, partner)
  key = jax.random.key(3)
  mixed, info = fn(key, images, cams)
  eager, eager_info = backmix.apply_backmix(key, images, cams, fg_ratio=fg_ratio,
                                            patch_frac=patch_frac, partner=partner,
                                            return_info=True)
  np.testing.assert_array_equal(_bits(mixed), _bits(eager))
  for name in ('partner', 'target_box', 'source_box', 'applied'):
    np.testing.assert_array_equal(info[name], eager_info[name])
  again, _ = fn(key, images, cams)
  np.testing.assert_array_equal(_bits(again), _bits(mixed))
  other, _ = fn(jax.random.key(4), images, cams)
  assert not np.array_equal(_bits(other), _bits(mixed))


def test_matches_numpy_transcription_of_released_wrapper():
  """Fixed partners and boxes at 32 px with an 8x8 bank: top 16 of 64 cells, 4x4 px per cell,
  foreground set to 0, 8 px box cut at the source corner and pasted at the target corner."""
  r = np.random.default_rng(0)
  b = 8
  images = r.normal(size=(b, 32, 32, 3)).astype(np.float32)
  bank = r.random((20, 8, 8)).astype(np.float32)
  bank_rows = np.array([3, 3, 0, 19, 7, 11, 4, 2])  # partner ids over the training set
  partner_images = r.normal(size=(b, 32, 32, 3)).astype(np.float32)
  targets = r.integers(0, 32 - 8, size=(b, 2))
  sources = r.integers(0, 32 - 8, size=(b, 2))
  sources[0] = targets[1] = (0, 0)
  sources[2] = targets[3] = (23, 23)  # the largest corner randint(0, 24) can give

  want = images.copy()
  for i in range(b):
    cam = bank[bank_rows[i]].reshape(64)
    cells = np.zeros(64, bool)
    cells[np.argsort(-cam, kind='stable')[:16]] = True
    pixels = cells.reshape(8, 8).repeat(4, axis=0).repeat(4, axis=1)
    masked = partner_images[i].copy()
    masked[pixels] = 0.0
    (sr, sc), (tr, tc) = sources[i], targets[i]
    want[i, tr:tr + 8, tc:tc + 8] = masked[sr:sr + 8, sc:sc + 8]

  masks = backmix.upsample_mask(backmix.foreground_mask(jnp.asarray(bank)[bank_rows], 0.25), 32)
  got = backmix.paste_patches(jnp.asarray(images), jnp.asarray(partner_images), masks,
                              jnp.asarray(targets), jnp.asarray(sources), 8,
                              jnp.ones(b, bool), 0.0)
  np.testing.assert_array_equal(_bits(got), _bits(want))


def test_bank_mode_draw_matches_reference():
  """apply_backmix_from_sources with bank CAMs: replaying its drawn boxes with the NumPy
  reference gives the identical image, and partner b is source row b."""
  images, _ = _make(1, 32, 8, 3, jnp.float32)
  sources, _ = _make(2, 32, 8, 3, jnp.float32)
  bank = backmix.update_bank(backmix.init_bank(10, 8), jnp.arange(10),
                             jax.random.uniform(jax.random.key(0), (10, 8, 8)))
  source_cams = bank[jnp.array([9, 0, 4, 4, 1, 7])]
  fn = jax.jit(functools.partial(backmix.apply_backmix_from_sources, fg_ratio=0.25,
                                 patch_frac=0.25, fill=0.0, return_info=True))
  mixed, info = fn(jax.random.key(5), images, sources, source_cams)
  info = jax.tree.map(np.asarray, info)
  np.testing.assert_array_equal(info['partner'], np.arange(BATCH))
  want = _expected(np.asarray(images), np.asarray(sources), np.asarray(source_cams), info, 0.25,
                   0.0)
  np.testing.assert_array_equal(_bits(mixed), _bits(want))


def test_corners_follow_released_exclusive_range():
  """Corners are uniform integers in [0, S-P): at 32 px with P = 8 they reach 0 and 23, never 24;
  target and source corners are independent; a patch as large as the image sits at corner 0
  and copies the whole masked partner."""
  images, cams = _make(0, 32, 8, 1, jnp.float32, batch=512)
  _, info = _jitted(0.25, 0.25, 'permutation')(jax.random.key(0), images, cams)
  for name in ('target_box', 'source_box'):
    corners = np.asarray(info[name])
    assert corners.min() == 0 and corners.max() == 23
    assert (corners[:, 0] != corners[:, 1]).mean() > 0.9  # row and column drawn independently
  assert (np.asarray(info['target_box']) != np.asarray(info['source_box'])).any(1).mean() > 0.9
  images, cams = _make(0, 32, 8, 1, jnp.float32)
  mixed, info = _jitted(0.25, 1.0, 'permutation')(jax.random.key(1), images, cams)
  assert int(info['patch']) == 32 and not np.asarray(info['target_box']).any()
  fg = backmix.upsample_mask(backmix.foreground_mask(cams, 0.25), 32)[info['partner']]
  want = np.where(np.asarray(fg)[..., None], 0.0, np.asarray(images)[info['partner']])
  np.testing.assert_array_equal(np.asarray(mixed), want)


def test_mix_prob_zero_is_identity_and_half_mixes_some():
  """mix_prob=0 returns every image unchanged; at 0.5 only the samples marked applied change."""
  images, cams = _make(4, 32, 4, 3, jnp.float32, batch=64)
  mixed, info = _jitted(0.25, 0.25, 'permutation', 0.0, 0.0)(jax.random.key(0), images, cams)
  np.testing.assert_array_equal(_bits(mixed), _bits(images))
  assert not np.asarray(info['applied']).any()
  mixed, info = _jitted(0.25, 0.25, 'permutation', 0.0, 0.5)(jax.random.key(0), images, cams)
  applied = np.asarray(info['applied'])
  assert 10 < applied.sum() < 54
  changed = (np.asarray(mixed) != np.asarray(images)).any(axis=(1, 2, 3))
  assert not changed[~applied].any() and changed[applied].all()


def test_partner_rules():
  """'permutation' partners are a permutation with no fixed point (B > 1); 'uniform' partners are
  draws with replacement in range, repeating some samples."""
  for batch in (1, 2, 5, 33):
    draw = jax.jit(backmix.draw_partners, static_argnums=(1, 2))
    for seed in range(4):
      p = np.asarray(draw(jax.random.key(seed), batch, 'permutation'))
      np.testing.assert_array_equal(np.sort(p), np.arange(batch))
      assert batch == 1 or (p != np.arange(batch)).all()
  u = np.asarray(backmix.draw_partners(jax.random.key(0), 64, 'uniform'))
  assert u.dtype == np.int32 and u.min() >= 0 and u.max() < 64 and len(set(u)) < 64
  with pytest.raises(ValueError):
    backmix.draw_partners(jax.random.key(0), 4, 'nearest')


@pytest.mark.slow
def test_runs_per_device_under_shard_map():
  """Inside shard_map over 4 devices each shard is mixed like a single-device call on that shard
  with the device's folded key (partners stay within the local batch)."""
  devices = jax.devices()[:4]
  mesh = jax.sharding.Mesh(np.array(devices), ('data',))
  spec = jax.sharding.PartitionSpec
  images, cams = _make(3, 28, 7, 1, jnp.float32, batch=8)

  def local(key, x, c):
    key = jax.random.fold_in(key, jax.lax.axis_index('data'))
    return backmix.apply_backmix(key, x, c)

  step = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec(), spec('data'), spec('data')),
                               out_specs=spec('data')))
  key = jax.random.key(9)
  mixed = np.asarray(step(key, images, cams))
  per = 8 // len(devices)
  for d in range(len(devices)):
    s = slice(d * per, (d + 1) * per)
    want = backmix.apply_backmix(jax.random.fold_in(key, d), images[s], cams[s])
    np.testing.assert_array_equal(mixed[s], np.asarray(want))


def test_invalid_settings_raise():
  """Patch larger than the image, size not divisible by the grid, fg_ratio outside (0, 1],
  unknown partner rule and mix_prob outside [0, 1] raise ValueError."""
  images, cams = _make(0, 28, 7, 1, jnp.float32)
  key = jax.random.key(0)
  bad = [dict(patch_frac=1.5), dict(patch_frac=0.01), dict(fg_ratio=0.0), dict(fg_ratio=1.5),
         dict(partner='self'), dict(mix_prob=1.2)]
  for kwargs in bad:
    with pytest.raises(ValueError):
      backmix.apply_backmix(key, images, cams, **kwargs)
  with pytest.raises(ValueError):
    backmix.apply_backmix(key, images, jnp.zeros((BATCH, 8, 8)))  # 28 % 8 != 0
  with pytest.raises(ValueError):
    backmix.apply_backmix_from_sources(key, images, images[:3], cams[:3])


def test_class_activation_maps_norms():
  """minmax: label map rescaled to [0, 1] per image, constant map -> zeros; relu: max(map, 0);
  softmax: softmax over classes at the label; always float32 and non-negative."""
  r = np.random.default_rng(0)
  maps = r.normal(size=(4, 5, 5, 6)).astype(np.float32)
  labels = np.array([0, 5, 2, 2])
  maps[3, ..., 2] = 1.7  # constant label map
  label_maps = maps[np.arange(4), ..., labels]  # [B, g, g]
  mm = np.asarray(backmix.class_activation_maps(jnp.asarray(maps), jnp.asarray(labels)))
  for b in range(3):
    x = label_maps[b]
    np.testing.assert_allclose(mm[b], (x - x.min()) / (x.max() - x.min()), rtol=1e-6, atol=1e-7)
    assert mm[b].min() == 0.0 and 1 - 1e-6 <= mm[b].max() <= 1.0
  np.testing.assert_array_equal(mm[3], np.zeros((5, 5), np.float32))
  relu = backmix.class_activation_maps(maps, labels, 'relu')
  np.testing.assert_array_equal(np.asarray(relu), np.maximum(label_maps, 0))
  soft = backmix.class_activation_maps(maps, labels, 'softmax')
  e = np.exp(maps - maps.max(-1, keepdims=True))
  np.testing.assert_allclose(np.asarray(soft), (e / e.sum(-1, keepdims=True))[np.arange(4), ...,
                                                                             labels], rtol=1e-5)
  low = backmix.class_activation_maps(jnp.asarray(maps, jnp.bfloat16), labels)
  assert low.dtype == jnp.float32 and bool((low >= 0).all()) and not bool(jnp.isnan(low).any())
  with pytest.raises(ValueError):
    backmix.class_activation_maps(maps, labels, 'sigmoid')


def test_foreground_mask_count_and_ties():
  """Exactly int(fg_ratio*g*g) cells per image; on heavily tied CAMs the chosen cells match a
  stable rank (lowest flat index first); all-equal CAMs select the first k cells."""
  r = np.random.default_rng(0)
  for g in (4, 7, 8):
    for ratio in (0.1, 0.25, 0.5, 1.0):
      k = int(ratio * g * g)
      cams = r.integers(0, 3, size=(5, g, g)).astype(np.float32)  # values 0..2: many ties
      mask = np.asarray(backmix.foreground_mask(jnp.asarray(cams), ratio))
      assert mask.dtype == bool and (mask.sum(axis=(1, 2)) == k).all()
      for b in range(5):
        np.testing.assert_array_equal(mask[b], _np_foreground(cams[b], ratio))
  flat = np.asarray(backmix.foreground_mask(jnp.full((2, 8, 8), 0.5), 0.25)).reshape(2, 64)
  assert flat[:, :16].all() and not flat[:, 16:].any()
  tied = np.asarray(backmix.foreground_mask(jnp.array([[[1.0, 0.0], [1.0, 1.0]]]), 0.5))
  np.testing.assert_array_equal(tied[0], [[True, False], [True, False]])
  for ratio in (0.0, -0.2, 1.01):
    with pytest.raises(ValueError):
      backmix.foreground_mask(jnp.zeros((1, 4, 4)), ratio)


def test_upsample_mask_nearest():
  """Each cell becomes a (size/g)^2 block of pixels; sizes not divisible by g raise."""
  mask = np.random.default_rng(0).random((3, 7, 7)) > 0.5
  up = np.asarray(backmix.upsample_mask(jnp.asarray(mask), 28))
  np.testing.assert_array_equal(up, np.kron(mask, np.ones((1, 4, 4))).astype(bool))
  with pytest.raises(ValueError):
    backmix.upsample_mask(jnp.asarray(mask), 32)


def test_bank_init_and_ema_update():
  """The bank starts at 0.5; a batch update sets bank[i] = 0.1*cam + 0.9*bank[i] on its rows only
  (same under jit, up to a fused multiply-add); a repeated id takes its last occurrence's update."""
  bank = backmix.init_bank(12, 8)
  assert bank.shape == (12, 8, 8) and bank.dtype == jnp.float32 and bool((bank == 0.5).all())
  r = np.random.default_rng(0)
  start = r.random((12, 8, 8)).astype(np.float32)
  idx = np.array([4, 0, 11, 7])
  cams = r.random((4, 8, 8)).astype(np.float32)
  new = np.asarray(backmix.update_bank(jnp.asarray(start), jnp.asarray(idx), jnp.asarray(cams)))
  want = start.copy()
  want[idx] = np.float32(0.1) * cams + np.float32(0.9) * start[idx]
  np.testing.assert_allclose(new, want, rtol=1e-6)
  untouched = np.setdiff1d(np.arange(12), idx)
  np.testing.assert_array_equal(_bits(new[untouched]), _bits(start[untouched]))
  jitted = jax.jit(backmix.update_bank)(jnp.asarray(start), jnp.asarray(idx), jnp.asarray(cams))
  np.testing.assert_allclose(np.asarray(jitted), new, rtol=1e-6)

  dup = np.array([3, 5, 3, 3])
  got = np.asarray(backmix.update_bank(jnp.asarray(start), jnp.asarray(dup), jnp.asarray(cams),
                                       momentum=0.5))
  np.testing.assert_allclose(got[3], 0.5 * cams[3] + 0.5 * start[3], rtol=1e-6)
  np.testing.assert_allclose(got[5], 0.5 * cams[1] + 0.5 * start[5], rtol=1e-6)


# ---- Study knobs: placement, replace, num_patches, other_class partners, fill, oracle CAMs ----

def _digest(*arrays):
  import hashlib
  h = hashlib.sha256()
  for x in arrays:
    h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  return h.hexdigest()[:16]


@pytest.mark.slow
def test_defaults_reproduce_the_released_outputs_bit_for_bit():
  """With every new knob at its default (given explicitly or not) the outputs and draws are the
  ones the code gave before the knobs existed (digests recorded from it for these keys);
  mixing is pure data movement, so the bits do not depend on the platform."""
  images, cams = _make(11, 32, 8, 3, jnp.float32, batch=8)
  labels = jnp.arange(8) % 3
  want = {'permutation': ('74275463be8b192f', '85634013e595164d'),
          'uniform': ('49e2a713ffd75d96', 'dea26f07257009e7')}
  for partner, (out_digest, draw_digest) in want.items():
    for extra in ({}, dict(labels=labels, placement='anywhere', replace='patch', num_patches=1)):
      out, info = jax.jit(functools.partial(backmix.apply_backmix, partner=partner,
                                            return_info=True, **extra))(jax.random.key(2), images,
                                                                        cams)
      assert _digest(out) == out_digest
      assert _digest(info['partner'], info['target_box'], info['source_box']) == draw_digest
  sources, source_cams = _make(12, 32, 8, 3, jnp.float32, batch=8)
  out = jax.jit(functools.partial(backmix.apply_backmix_from_sources, mix_prob=0.5, fill=-1.0))(
      jax.random.key(3), images, sources, source_cams)
  assert _digest(out) == 'fd2b9d3f0e9f0ccf'
  low, low_cams = _make(13, 28, 7, 1, jnp.bfloat16, batch=8)
  out = _jitted(0.4, 0.5, 'permutation')(jax.random.key(4), low, low_cams)[0]
  assert _digest(out) == 'b6763f61fa591e38'


def _cell_mask(cams, fg_ratio, size):
  """NumPy top-k foreground of [B, g, g] CAMs, upsampled to bool [B, size, size]."""
  cams = np.asarray(cams)
  cell = size // cams.shape[1]
  return np.stack([np.kron(_np_foreground(c, fg_ratio), np.ones((cell, cell))) > 0 for c in cams])


def _expected_boxes(images, partner_images, partner_fg, target_fg, targets, sources, patch, fill):
  """NumPy reference of `num_patches` boxes pasted in order; target_fg pixels (if given) keep
  their own values."""
  out = np.array(images)
  for b in range(len(out)):
    masked = np.where(partner_fg[b][..., None], np.asarray(fill, out.dtype), partner_images[b])
    for (tr, tc), (sr, sc) in zip(np.reshape(targets[b], (-1, 2)), np.reshape(sources[b], (-1, 2))):
      box = masked[sr:sr + patch, sc:sc + patch]
      if target_fg is not None:
        box = np.where(target_fg[b, tr:tr + patch, tc:tc + patch][..., None],
                       out[b, tr:tr + patch, tc:tc + patch], box)
      out[b, tr:tr + patch, tc:tc + patch] = box
  return out


@pytest.mark.parametrize('num_patches', [1, 3])
def test_placement_background_never_changes_target_foreground(num_patches):
  """placement='background': every pixel of the target's own top-fg_ratio CAM cells keeps its
  value bit for bit, in live mode (target CAMs = the batch's) and bank mode (given target
  CAMs); every other pixel is what the plain boxes would write there."""
  size, grid, fill = 32, 8, -1.5
  images, cams = _make(5, size, grid, 3, jnp.float32, batch=8)
  fn = jax.jit(functools.partial(backmix.apply_backmix, placement='background', fill=fill,
                                 patch_frac=0.5, num_patches=num_patches, return_info=True))
  mixed, info = fn(jax.random.key(1), images, cams)
  info = jax.tree.map(np.asarray, info)
  im, mx = np.asarray(images), np.asarray(mixed)
  own = _cell_mask(cams, 0.25, size)
  np.testing.assert_array_equal(info['target_masks'], own)
  np.testing.assert_array_equal(_bits(mx[own]), _bits(im[own]))
  partner_fg = _cell_mask(np.asarray(cams)[info['partner']], 0.25, size)
  want = _expected_boxes(im, im[info['partner']], partner_fg, own, info['target_box'],
                         info['source_box'], info['patch'], fill)
  np.testing.assert_array_equal(_bits(mx), _bits(want))
  assert (mx != im).any(axis=-1)[~own].mean() > 0.05  # background does get replaced

  sources, source_cams = _make(6, size, grid, 3, jnp.float32, batch=8)
  bank_rows = jax.random.uniform(jax.random.key(7), (8, grid, grid))
  mixed = jax.jit(functools.partial(backmix.apply_backmix_from_sources, placement='background',
                                    num_patches=num_patches))(
      jax.random.key(2), images, sources, source_cams, target_cams=bank_rows)
  own = _cell_mask(bank_rows, 0.25, size)
  np.testing.assert_array_equal(_bits(np.asarray(mixed)[own]), _bits(im[own]))
  with pytest.raises(ValueError, match='target_cams'):
    backmix.apply_backmix_from_sources(jax.random.key(2), images, sources, source_cams,
                                       placement='background')


def test_replace_background_keeps_target_foreground_and_takes_every_other_cell():
  """replace='background': the target's fg cells are unchanged; every other pixel is the
  partner's pixel at the same place, or exactly the fill (per channel here) on the partner's
  foreground; unapplied samples (mix_prob) are returned unchanged."""
  size, grid = 28, 7
  fill = np.array([-1.5, 0.25, 2.0], np.float32)
  images, cams = _make(8, size, grid, 3, jnp.float32, batch=16)
  fn = jax.jit(functools.partial(backmix.apply_backmix, replace='background', fill=fill,
                                 mix_prob=0.7, return_info=True))
  mixed, info = fn(jax.random.key(3), images, cams)
  info = jax.tree.map(np.asarray, info)
  assert 'target_box' not in info
  im, mx = np.asarray(images), np.asarray(mixed)
  partner = info['partner']
  own = _cell_mask(cams, 0.25, size)
  partner_fg = _cell_mask(np.asarray(cams)[partner], 0.25, size)
  want = np.where(partner_fg[..., None], fill, im[partner])
  want = np.where(own[..., None], im, want)
  applied = info['applied']
  assert 0 < applied.sum() < 16
  want[~applied] = im[~applied]
  np.testing.assert_array_equal(_bits(mx), _bits(want))
  np.testing.assert_array_equal(_bits(mx[own]), _bits(im[own]))
  with pytest.raises(ValueError, match='no effect'):
    backmix.apply_backmix(jax.random.key(0), images, cams, replace='background', num_patches=2)


def test_num_patches_pastes_that_many_independent_boxes():
  """num_patches=n draws [B, n, 2] corners in the released range, row and column and the n
  boxes independently; the output is the n masked partner boxes pasted in order, the rest of
  the image unchanged bit for bit."""
  size, n, fill = 32, 4, -1.5
  images, cams = _make(9, size, 8, 1, jnp.float32, batch=64)
  mixed, info = jax.jit(functools.partial(backmix.apply_backmix, num_patches=n, fill=fill,
                                          return_info=True))(jax.random.key(4), images, cams)
  info = jax.tree.map(np.asarray, info)
  p = info['patch']
  for name in ('target_box', 'source_box'):
    assert info[name].shape == (64, n, 2)
    assert info[name].min() == 0 and info[name].max() == size - p - 1
    assert (info[name][:, 0] != info[name][:, 1]).any(-1).mean() > 0.9  # boxes differ
  im = np.asarray(images)
  partner_fg = _cell_mask(np.asarray(cams)[info['partner']], 0.25, size)
  want = _expected_boxes(im, im[info['partner']], partner_fg, None, info['target_box'],
                         info['source_box'], p, fill)
  np.testing.assert_array_equal(_bits(mixed), _bits(want))
  covered = np.zeros((64, size, size), bool)
  for b in range(64):
    for tr, tc in info['target_box'][b]:
      covered[b, tr:tr + p, tc:tc + p] = True
  np.testing.assert_array_equal(_bits(np.asarray(mixed)[~covered]), _bits(im[~covered]))
  with pytest.raises(ValueError, match='num_patches'):
    backmix.apply_backmix(jax.random.key(0), images, cams, num_patches=0)


def test_other_class_partners_never_share_the_label():
  """partner='other_class': when the batch holds another label, the partner's label always
  differs, and over draws (small batches) every other-label sample is picked; with one label
  the partner is any other sample (never itself), with batch 1 itself; labels are required."""
  draw = jax.jit(backmix.draw_partners, static_argnums=(1, 2))
  r = np.random.default_rng(0)
  for batch in (2, 7, 32):
    labels = r.integers(0, 3, batch)
    labels[0], labels[1] = 0, 1  # at least two labels
    seen = np.zeros((batch, batch), bool)
    for seed in range(40):
      p = np.asarray(draw(jax.random.key(seed), batch, 'other_class', jnp.asarray(labels)))
      assert p.dtype == np.int32 and (labels[p] != labels).all()
      seen[np.arange(batch), p] = True
    if batch < 10:  # few enough candidates for 40 draws to reach each of them
      np.testing.assert_array_equal(seen, labels[:, None] != labels[None, :])
  same = np.asarray(draw(jax.random.key(0), 5, 'other_class', jnp.zeros(5, jnp.int32)))
  assert (same != np.arange(5)).all() and same.min() >= 0 and same.max() < 5
  assert np.asarray(draw(jax.random.key(0), 1, 'other_class', jnp.zeros(1, jnp.int32))) == [0]
  images, cams = _make(0, 28, 7, 1, jnp.float32)
  labels = jnp.array([0, 0, 0, 1, 1, 2])
  _, info = jax.jit(functools.partial(backmix.apply_backmix, partner='other_class',
                                      return_info=True))(jax.random.key(1), images, cams,
                                                         labels=labels)
  assert (np.asarray(labels)[np.asarray(info['partner'])] != np.asarray(labels)).all()
  with pytest.raises(ValueError, match='labels'):
    backmix.apply_backmix(jax.random.key(1), images, cams, partner='other_class')


def test_dataset_mean_fill_is_the_normalised_channel_mean():
  """fill_mode='dataset_mean' resolves (training.run.backmix_fill) to float32 [C], the mean of
  the normalised training images per channel, for both normalisations; 'constant' keeps
  `fill`; a [C] fill lands channel by channel on the partner's foreground, and a fill of the
  wrong length is refused."""
  from backmix_jax.data.augment import normalize
  from backmix_jax.data.core import ArraySplit
  from backmix_jax.training.run import backmix_fill
  from tests.helpers import quick_config
  r = np.random.default_rng(0)
  images = r.integers(0, 256, (20, 8, 8, 3), np.uint8)
  images[..., 2] //= 4  # distinct channel means
  train = ArraySplit(images, np.zeros(20, np.int64))
  for norm in ('cssr', 'unit'):
    config = quick_config(**{'backmix.fill_mode': 'dataset_mean', 'data.normalize': norm})
    fill = backmix_fill(config, train)
    want = np.asarray(normalize(jnp.asarray(images), norm)).mean(axis=(0, 1, 2))
    assert fill.dtype == np.float32 and fill.shape == (3,)
    np.testing.assert_allclose(fill, want, rtol=1e-5, atol=1e-6)
  assert backmix_fill(quick_config(**{'backmix.fill': -0.5}), train) == -0.5

  x, cams = _make(1, 32, 8, 3, jnp.float32)
  fill = jnp.array([-1.5, 0.5, 1.75])
  mixed, info = backmix.apply_backmix(jax.random.key(2), x, cams, fill=fill, patch_frac=1.0,
                                      return_info=True)
  fg = np.asarray(info['source_masks'])  # one box as large as the image: all of it
  np.testing.assert_array_equal(np.asarray(mixed)[fg], np.broadcast_to(fill, (fg.sum(), 3)))
  np.testing.assert_array_equal(np.asarray(mixed)[~fg], np.asarray(x)[np.asarray(
      info['partner'])][~fg])
  with pytest.raises(ValueError, match='fill'):
    backmix.apply_backmix(jax.random.key(2), x, cams, fill=jnp.zeros(2))


def test_oracle_cams_are_the_true_foreground_fraction_per_cell():
  """oracle_cams: each cell holds the fraction of true-foreground pixels in it (NumPy block
  mean); fully covered cells rank first in the foreground mask; shapes are checked."""
  r = np.random.default_rng(0)
  masks = r.random((3, 28, 28)) > 0.7
  masks[0] = False
  masks[0, 4:12, 8:16] = True  # exactly cells (1, 2), (1, 3), (2, 2), (2, 3) of a 7x7 grid
  cams = np.asarray(jax.jit(backmix.oracle_cams, static_argnums=1)(jnp.asarray(masks), 7))
  assert cams.dtype == np.float32 and cams.shape == (3, 7, 7)
  np.testing.assert_allclose(cams, masks.reshape(3, 7, 4, 7, 4).mean(axis=(2, 4)), rtol=1e-6)
  fg = np.asarray(backmix.foreground_mask(jnp.asarray(cams[:1]), 4 / 49))[0]
  assert fg[1:3, 2:4].all() and fg.sum() == 4
  with pytest.raises(ValueError):
    backmix.oracle_cams(jnp.asarray(masks), 8)


def test_resampled_cams_keep_the_hot_region_and_refine_the_oracle_mask():
  """resample_cams: the same grid returns the CAM unchanged; a constant CAM stays constant;
  a one-hot 4x4 CAM resampled to 8x8 ranks its top 4 cells inside the hot cell's 2x2 block.
  Oracle CAMs made on the finer grid select an L-shaped object exactly, which whole cells of
  the coarse grid cannot (the reason for backmix.cam_grid)."""
  one_hot = np.zeros((1, 4, 4), np.float32)
  one_hot[0, 1, 2] = 1.0
  np.testing.assert_array_equal(np.asarray(backmix.resample_cams(jnp.asarray(one_hot), 4)),
                                one_hot)
  flat = np.asarray(backmix.resample_cams(jnp.full((2, 4, 4), 0.3), 16))
  assert flat.shape == (2, 16, 16) and np.allclose(flat, 0.3)
  fine = jax.jit(backmix.resample_cams, static_argnums=1)(jnp.asarray(one_hot), 8)
  fg = np.asarray(backmix.foreground_mask(fine, 4 / 64))[0]
  assert fg.sum() == 4 and fg[2:4, 4:6].all()
  masks = np.zeros((1, 16, 16), bool)
  masks[0, 0:8, 0:4] = masks[0, 4:8, 4:8] = True  # an L: 3 cells of 4x4 px on a 4x4 grid
  coarse = np.asarray(backmix.foreground_mask(backmix.oracle_cams(jnp.asarray(masks), 2), 0.25))
  exact = np.asarray(backmix.foreground_mask(backmix.oracle_cams(jnp.asarray(masks), 4), 3 / 16))
  np.testing.assert_array_equal(np.kron(exact[0], np.ones((4, 4), bool)), masks[0])
  assert not np.array_equal(np.kron(coarse[0], np.ones((8, 8), bool)), masks[0])


def test_new_settings_are_validated():
  """Config checks: the allowed values come from backmix's tuples; unknown values, num_patches
  < 1, and settings a mode ignores (partner in bank mode, num_patches or placement with
  replace='background', cam_norm / cam_batch_stats with oracle CAMs, fill with dataset_mean)
  are each named; 'oracle' on data without masks is one clear ConfigError from build_run."""
  from backmix_jax.training import validate
  from backmix_jax.training.run import build_run
  from tests.helpers import quick_config
  assert validate.CHOICES['backmix.partner'] is backmix.PARTNERS
  assert validate.CHOICES['backmix.cam_source'] is backmix.CAM_SOURCES
  assert validate.problems(quick_config(**{
      'backmix.placement': 'background', 'backmix.num_patches': 3, 'backmix.partner':
      'other_class', 'backmix.fill_mode': 'dataset_mean', 'backmix.cam_source': 'oracle'})) == []
  cases = [
      ({'backmix.placement': 'object'}, "backmix.placement='object' is not one of anywhere"),
      ({'backmix.replace': 'all'}, "backmix.replace='all' is not one of patch, background"),
      ({'backmix.fill_mode': 'median'}, "backmix.fill_mode='median' is not one of constant"),
      ({'backmix.cam_source': 'truth'}, "is not one of live, bank, oracle"),
      ({'backmix.num_patches': 0}, 'num_patches must be an integer >= 1'),
      ({'backmix.cam_source': 'bank', 'backmix.partner': 'uniform'},
       "backmix.partner='uniform' has no effect with cam_source='bank'"),
      ({'backmix.cam_source': 'bank', 'backmix.partner': 'other_class'}, 'has no effect'),
      ({'backmix.replace': 'background', 'backmix.num_patches': 2},
       "num_patches=2 has no effect with replace='background'"),
      ({'backmix.replace': 'background', 'backmix.placement': 'background'},
       "placement='background' has no effect with replace='background'"),
      ({'backmix.cam_source': 'oracle', 'backmix.cam_norm': 'relu'},
       "cam_norm='relu' has no effect with cam_source='oracle'"),
      ({'backmix.cam_source': 'oracle', 'backmix.cam_batch_stats': True}, 'cam_batch_stats'),
      ({'backmix.fill_mode': 'dataset_mean', 'backmix.fill': 1.0}, "fill_mode='dataset_mean'"),
      ({'backmix.cam_grid': 5}, 'backmix.cam_grid=5 does not divide the image side 32'),
      ({'backmix.cam_grid': -1}, 'backmix.cam_grid must be an integer >= 0'),
      ({'backmix.cam_source': 'bank', 'backmix.cam_grid': 16},
       "cam_grid=16 is not available with cam_source='bank'"),
  ]
  for overrides, message in cases:
    found = validate.problems(quick_config(**overrides))
    assert len(found) == 1 and message in found[0], (overrides, found)
  with pytest.raises(validate.ConfigError, match="cam_source='oracle' needs true foreground "
                                                 "masks, but the training data of "
                                                 "data.source='digits' has none"):
    build_run(quick_config(**{'backmix.cam_source': 'oracle', 'data.image_size': 16}))


def _digits_with_masks(config):
  """The digits open set with a true foreground for every training image (its bright pixels)."""
  import dataclasses
  from backmix_jax.data.openset import load_open_set
  from backmix_jax.data.core import ArraySplit
  data = load_open_set(config)
  t = data.train
  return dataclasses.replace(data, train=ArraySplit(t.images, t.labels, t.images[..., 0] > 64))


@pytest.mark.slow
def test_batches_carry_true_masks_when_the_split_has_them():
  """Both input pipelines add fg_mask bool [b, H, W] = masks[index] when the training split has
  masks (bank mode's partner stream included) and leave it out when it has none."""
  from backmix_jax.data.pipeline import TrainStream
  from backmix_jax.data.core import ArraySplit
  r = np.random.default_rng(0)
  images = r.integers(0, 256, (40, 8, 8, 1), np.uint8)
  split = ArraySplit(images, r.integers(0, 3, 40), images[..., 0] > 128)
  for backend in ('numpy', 'tf'):
    for partner_stream in (False, True):
      stream = TrainStream(split, 16, 0, partner_stream=partner_stream, backend=backend)
      for batch in stream.batches(0, 3):
        assert batch['fg_mask'].dtype == np.bool_ and batch['fg_mask'].shape == (16, 8, 8)
        np.testing.assert_array_equal(batch['fg_mask'], split.masks[batch['index']])
    bare = TrainStream(ArraySplit(images, split.labels), 16, 0, backend=backend)
    assert 'fg_mask' not in next(iter(bare.batches(0, 1)))


@pytest.mark.slow
def test_train_step_runs_with_the_new_knobs(tmp_path):
  """Two data-parallel train steps through the real pipeline run and stay finite with oracle
  CAMs from the batch's true masks on a grid finer than the network's, background placement, two patches, other-class partners,
  the dataset-mean fill and mix+clean; without the fill value the step refuses to build
  (ConfigError); the
  mixing picture shows the same settings (the target's own foreground untouched, other-class
  partners, true masks carried)."""
  from backmix_jax import parallel
  from backmix_jax.training.run import build_run
  from backmix_jax.training.step import make_train_step
  from backmix_jax.training.validate import ConfigError
  from backmix_jax.commands import visualize as vis
  from tests.helpers import fresh_state, quick_config
  config = quick_config(**{
      'data.image_size': 16, 'batch_size': 64, 'backmix.cam_source': 'oracle',
      'backmix.placement': 'background', 'backmix.num_patches': 2,
      'backmix.partner': 'other_class', 'backmix.fill_mode': 'dataset_mean',
      'backmix.train_on': 'mix+clean', 'backmix.cam_grid': 8})
  run = build_run(config, _digits_with_masks(config))
  assert np.shape(run.fill) == run.data.train.images.shape[-1:]
  assert (-2.0 < run.fill).all() and (run.fill < 0.0).all()  # mostly dark digits
  kwargs = dict(model=run.train_model, framework=run.framework, tx=run.tx, config=config,
                steps_per_epoch=run.stream.steps_per_epoch)
  with pytest.raises(ConfigError, match='run.fill'):  # one line on the command line
    make_train_step(run.mesh, **kwargs)
  step_fn = make_train_step(run.mesh, fill=run.fill, **kwargs)
  state = fresh_state(run)
  for batch in run.stream.batches(0, 2):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
  assert int(state.step) == 2 and bool(metrics['finite']) and np.isfinite(float(metrics['loss']))

  rows = np.arange(6)
  train = run.data.train
  panels = vis.mixing_panels(run, state, train.images[rows], train.labels[rows], rows,
                             jax.random.key(0), masks=train.masks[rows])
  own = panels['target_masks']
  np.testing.assert_array_equal(panels['mixed'][own], panels['images'][own])
  np.testing.assert_array_equal(panels['partner_true_masks'], train.masks[rows][panels['partner']])
  assert (panels['labels'][panels['partner']] != panels['labels']).all()
  assert panels['target_box'].shape == (6, 2, 2)
  vis.render_grid(panels, str(tmp_path / 'grid.png'), config.data.normalize)
  assert (tmp_path / 'grid.png').stat().st_size > 0
