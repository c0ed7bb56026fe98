"""`cam_localization`: how well the CAMs BackMix masks with find the true foreground (data
with masks only), and `localization`, the per-image precision and recall it averages."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from backmix_jax import backmix
from backmix_jax.cams import step_model_cams
from backmix_jax.data import augment
from backmix_jax.evaluation import plots, report
from backmix_jax.evaluation.evaluators.registry import (Evaluator, EvaluatorError, fmt,
                                                        register)


def localization(cams, masks, fg_ratio: float):
  """Precision and recall of the top-`fg_ratio` CAM cells against a true foreground mask.

  Args:
    cams: [B, g, g] CAMs.
    masks: bool [B, H, W] true foreground pixels, H divisible by g.
    fg_ratio: static, the share of cells BackMix calls foreground.
  Returns:
    dict of float32 [B]: cell_precision (chosen cells that hold any true foreground),
    cell_recall (cells holding foreground that were chosen), pixel_recall (true foreground
    pixels inside chosen cells: what masking a partner removes), fg_cells (share of cells
    holding foreground: the fg_ratio that would match the object's size).
  """
  b, g = cams.shape[0], cams.shape[1]
  s = masks.shape[1] // g
  pixels = jnp.asarray(masks, jnp.float32).reshape(b, g, s, g, s).sum((2, 4))  # [B,g,g]
  true = pixels > 0
  chosen = backmix.foreground_mask(cams, fg_ratio)
  hit = (chosen & true).sum((1, 2)).astype(jnp.float32)
  n_true = true.sum((1, 2)).astype(jnp.float32)
  total = pixels.sum((1, 2))
  return dict(
      cell_precision=hit / jnp.maximum(chosen.sum((1, 2)), 1),
      cell_recall=hit / jnp.maximum(n_true, 1),
      pixel_recall=jnp.where(chosen, pixels, 0).sum((1, 2)) / jnp.maximum(total, 1),
      fg_cells=n_true / (g * g))


@register("cam_localization")
class CamLocalizationEvaluator(Evaluator):
  """How well the CAMs BackMix masks with find the true foreground (data with masks only).

  `train/*`: the CAMs the train step computes (same function, same norm and statistics
  settings: `live_*` the network's own, `bank_*` the bank rows in bank mode, `teacher_*` the
  fixed teacher's with cam_source='teacher') on the first `probe_size` training images;
  `test/*`: the same on the reference known test condition (or test_known). Means of
  `localization` over the images, at the run's fg_ratio.
  """
  options = dict(probe_size=512)

  def __init__(self, run, workdir=None, **options):
    super().__init__(run, workdir, **options)
    train = run.data.train
    if train.masks is None:
      raise EvaluatorError("the cam_localization evaluator needs data with true foreground "
                           "masks (data.source=composite); this data has none")
    n = min(int(self.opts["probe_size"]), len(train))
    self.sets = {"train": (train.take(np.arange(n)), np.arange(n))}
    known = next((c.split for c in run.data.conditions if c.known), run.data.test_known)
    if known.masks is not None:
      self.sets["test"] = (known, None)
    self._fn = None

  def _program(self):
    if self._fn is None:
      cfg, bcfg = self.run.config, self.run.config.backmix
      model, framework = self.run.eval_model, self.run.framework

      @jax.jit
      def fn(variables, images, labels, masks, bank_rows, teacher):
        x = augment.normalize(images, cfg.data.normalize)
        out = {}
        for src, held in (("live", variables), ("teacher", teacher)):
          if held is not None:
            cams = step_model_cams(model, framework, held, x, labels, bcfg,
                                   rng=jax.random.key(0))
            out |= {f"{src}_{k}": v for k, v in localization(cams, masks, bcfg.fg_ratio).items()}
        if bank_rows is not None:
          out |= {f"bank_{k}": v for k, v in
                  localization(bank_rows, masks, bcfg.fg_ratio).items()}
        return out

      self._fn = fn
    return self._fn

  def evaluate(self, state):
    fn = self._program()
    # On the host's default device: the probe is small, and this holds on every process of
    # a multi-host run without sharding the probe.
    variables = jax.device_get(self.run.variables(state))
    teacher = jax.device_get(state.teacher) or None  # cam_source='teacher': what the step used
    bcfg = self.run.config.backmix
    in_bank_mode = bcfg.enabled and bcfg.cam_source == "bank"  # else a [1,g,g] placeholder
    bank = np.asarray(jax.device_get(state.bank)) if in_bank_mode else None
    out = {}
    batch = self.run.config.eval_batch_size
    for where, (split, rows) in self.sets.items():
      sums: dict[str, float] = {}
      for lo in range(0, len(split), batch):
        hi = min(lo + batch, len(split))
        bank_rows = None if bank is None or rows is None else jnp.asarray(bank[rows[lo:hi]])
        res = fn(variables, jnp.asarray(split.images[lo:hi]),
                 jnp.asarray(split.labels[lo:hi].astype(np.int32)),
                 jnp.asarray(split.masks[lo:hi]), bank_rows, teacher)
        for k, v in jax.device_get(res).items():
          sums[k] = sums.get(k, 0.0) + float(np.sum(v))
      out |= {f"{where}/{k}": v / len(split) for k, v in sums.items()}
    return out

  def summary(self, metrics):
    # The network's own CAMs, and the teacher's where the step masked with those.
    return " | ".join(
        f"{w}{'' if src == 'live' else ' ' + src} precision "
        f"{fmt(metrics[f'{w}/{src}_cell_precision'])} recall "
        f"{fmt(metrics[f'{w}/{src}_cell_recall'])} pixel recall "
        f"{fmt(metrics[f'{w}/{src}_pixel_recall'])}"
        for w in self.sets for src in ("live", "teacher") if f"{w}/{src}_cell_precision" in metrics)

  def markdown(self, metrics):
    lines = [self.heading(f"CAM localisation (top {self.run.config.backmix.fg_ratio:g} of cells "
                          "vs the true foreground)") + "\n",
             "| images | CAM | cell precision | cell recall | pixel recall | true foreground "
             "cells |", "|---|---|---:|---:|---:|---:|"]
    for w in self.sets:
      for src in ("live", "bank", "teacher"):
        if f"{w}/{src}_cell_precision" in metrics:
          lines.append(f"| {w} | {src} | " + " | ".join(
              fmt(metrics[f"{w}/{src}_{k}"])
              for k in ("cell_precision", "cell_recall", "pixel_recall", "fg_cells")) + " |")
    source = self.run.config.backmix.cam_source
    if self.run.config.backmix.enabled and source in ("oracle", "teacher"):
      used = "the true masks" if source == "oracle" else "the teacher's CAMs (teacher rows)"
      lines.append(f"\n(cam_source={source}: the train step mixed with {used}; the live rows "
                   "are the network's own CAMs, which it did not use.)")
    return "\n".join(lines) + "\n"

  def write(self, directory, tag=""):
    """cam_localization.png: precision and recall over training, from metrics.jsonl."""
    history = [r for r in report.read_records(os.path.join(self.workdir or directory,
                                                           "metrics.jsonl"), kind="eval")
               if f"{self.name}/train/live_cell_precision" in r]
    if not history:
      return []
    return [plots.plot_history(
        history, {f"{self.name}/{w}/live_{k}": f"{w} {k.replace('_', ' ')}"
                  for w in self.sets for k in ("cell_precision", "cell_recall", "pixel_recall")},
        os.path.join(directory, self.filename("cam_localization", tag, "png")),
        title="CAM foreground vs true foreground")]
