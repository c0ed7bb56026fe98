"""The fore-/background diagnostic: digits with known masks composed onto background images.

BackMix argues that backgrounds which co-occur with a class mislead an open-set model: an
unknown object shown on a familiar background is taken for the class that background came
with. This benchmark makes that testable, because here the foreground of every image is
known exactly and the class-background correlation is a parameter.

Foregrounds: grey digits from any source spec `sources.load_source` reads (`digits`,
`mnist`/`tfds:mnist`, `npz:<path>`), resized to `fg_size` px (antialiased bilinear),
scaled so each digit's brightest pixel is 255, and pasted at a uniformly random position of
an `image_size` canvas. Compositing: alpha = intensity / 255 and
pixel = alpha * 255 + (1 - alpha) * bg_dim * background; the background is dimmed (x0.6 by
default) so a white stroke keeps >= 40 % of the grey range of contrast on any background.
True mask = alpha > 0.25 (bool [H,W]): the stroke and its inner half of the blurred rim.

Backgrounds: `textures` (generated: 10 procedural stripe classes, each with its own hue,
orientation and frequency; every image has a random phase, small jitter of the three class
parameters and pixel noise) or any source spec of photos (`cifar10`,
`npz:/path/to/cifar10.npz`), resized to image_size. Training images take
their backgrounds from the source's train split, test images from its test split.

Pairing: known class i (position i in the known list, K classes) is paired with background
class bg_known[i] (default: the first K background classes); the other background classes
are "unknown backgrounds" and never appear in training. A training image of class i gets a
background of class bg_known[i] with probability rho, otherwise one of a uniformly drawn
other known background class.

Test conditions (`CONDITIONS`), scored one by one; the three known conditions show the same
digits at the same positions (so do the two unknown ones), only the backgrounds differ:
  known_correlated     known digit on its paired background class
  known_swapped        known digit on another known class's background
  known_unrelated      known digit on an unknown background class
  unknown_known_bg     unknown digit on a known background class (uniform over the K)
  unknown_unknown_bg   unknown digit on an unknown background class
Known conditions have labels 0..K-1, unknown ones -1; every split carries its masks. Every
set is in a seeded random order (the three known conditions in the same one), so any
prefix mixes the classes.

Everything is drawn from NumPy generators seeded with (seed, stream), one stream per part,
so a config gives the same arrays on every call. `load_open_set(config, split)` is the
entry point of `openset.load_open_set` for data.source='composite'.

Modules: `spec` (the data.composite block and its checks), `synthesis` (digits, textures,
compositing: pure NumPy), `assembly` (the benchmark from sources: `build`,
`load_open_set`). Its picture is `evaluation.plots.plot_fgbg_examples`, drawn by
`python -m experiments.fgbg_examples`.
"""
from backmix_jax.data.composite.assembly import (Composed, Diagnostic, build,
                                                 load_open_set)
from backmix_jax.data.composite.spec import (CONDITIONS, KNOWN_CONDITIONS, NUM_TEXTURE_CLASSES,
                                             TEXTURES, UNKNOWN_CONDITIONS, CompositeSpec,
                                             config_problems)
from backmix_jax.data.composite.synthesis import (MASK_THRESHOLD, compose, dim,
                                                  prepare_glyphs, render_textures)
