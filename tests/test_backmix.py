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
