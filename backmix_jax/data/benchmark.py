"""From config to the open-set data of one benchmark trial: source + split + unknowns."""
from __future__ import annotations

from backmix_jax.data import sources, splits
from backmix_jax.data.openset import OpenSetData, make_open_set


def load_open_set(config) -> OpenSetData:
  """config.dataset/protocol/trial pick the class lists (config.known_classes overrides);
  config.data.source says where the images are, config.data.unknown_source (optional)
  where the unknowns of CIFAR+N / OOD come from instead of the split's default.
  data.source='composite' composes the fore-/background diagnostic from data.composite
  (see data/composite.py), with the same class split."""
  d = config.data
  # Resolve the split first: a bad protocol/trial fails before any image is read.
  split = None if config.known_classes else splits.get_split(config.dataset, config.protocol,
                                                             config.trial)
  if d.source == "composite":
    from backmix_jax.data import composite
    return composite.load_open_set(config, split)
  kwargs = dict(data_dir=d.data_dir or None, image_size=d.image_size)
  if d.get("channels"):
    kwargs["channels"] = d.channels
  src = sources.load_source(d.source, **kwargs)
  if split is None:  # a custom split: every other class of the source is unknown
    return make_open_set(src.train, src.test, tuple(config.known_classes),
                         num_source_classes=len(src.class_names))
  unknown_test = None
  if split.unknown_source:
    spec = d.get("unknown_source") or split.unknown_source
    unknown_test = sources.load_unknown_source(spec, **kwargs)
  return make_open_set(src.train, src.test, split.known, split.unknown,
                       num_source_classes=len(src.class_names), unknown_test=unknown_test)
