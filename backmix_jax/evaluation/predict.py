"""Run a trained network over a test set and turn its outputs into open-set metrics.

Every test sample is scored exactly once (the last batch is padded and masked), the
whole set at once, in float32 from logits: per-batch score normalisation and
low-precision softmax both change AUROC.
"""
from __future__ import annotations


import jax
import numpy as np

from backmix_jax import parallel
from backmix_jax.data import augment
from backmix_jax.data.pipeline import eval_batches
from backmix_jax.evaluation.metrics import open_set_metrics


def _predict_program(model, framework, score_names, normalization: str):
  """jit of (variables, score states, images uint8 [B,H,W,C]) -> dict(pred [B] int32,
  <score> [B] float32). The states are arguments, not constants, so one compilation serves
  every evaluation of a run (periodic evaluations included)."""
  @jax.jit
  def predict(variables, states, images):
    outputs = model.apply(variables, augment.normalize(images, normalization), train=False)
    out = {name: framework.score(outputs, name, states[name]) for name in score_names}
    out["pred"] = outputs["logits"].argmax(-1)
    return out

  return predict


class Scorer:
  """Scores test sets with one open-set score, compiled once and reused across evaluations.

  `scorer(variables, split)` -> dict of NumPy arrays [N] (`pred` and the score, under
  the key `score`), in the split's order; the score's training-set statistics (if it has
  any) are refitted on `train` for every new `variables` (see `fit`). One Scorer serves
  every evaluator of a run (`evaluators.build_evaluators`): under the same weights a split
  is scored once however many evaluators ask for it, and the statistics are fitted once.
  """

  def __init__(self, model, framework, score: str, *, train, batch_size: int,
               normalization: str, mesh):
    self.model, self.framework = model, framework
    self.score = framework.check_score(score)
    self.train, self.batch_size, self.normalization, self.mesh = (
        train, batch_size, normalization, mesh)
    self._predict = _predict_program(model, framework, (self.score,), normalization)
    self._weights = None  # the parameter arrays of the last `variables`
    self._states = None
    self._scored = {}     # id(split) -> (split, outputs) under those weights

  def fit(self, variables) -> dict:
    """The score states for `variables`, fitted when their arrays differ from the last
    call's (an evaluation's evaluators pass fresh dicts of the same arrays)."""
    leaves = jax.tree.leaves(variables)
    if self._weights is None or len(leaves) != len(self._weights) or any(
        a is not b for a, b in zip(leaves, self._weights)):
      self._states = fit_score_states(self.model, self.framework, variables, self.train,
                                      (self.score,), batch_size=self.batch_size,
                                      normalization=self.normalization, mesh=self.mesh)
      self._weights, self._scored = leaves, {}
    return self._states

  def __call__(self, variables, split) -> dict:
    states = self.fit(variables)
    if id(split) not in self._scored:  # the split is held, so its id is not reused
      out = predict_split(lambda v, x: self._predict(v, states, x), variables, split,
                          self.batch_size, self.mesh)
      self._scored[id(split)] = (split, dict(pred=out["pred"], score=out[self.score]))
    return dict(self._scored[id(split)][1])


def fit_score_states(model, framework, variables, split, score_names, *, batch_size: int,
                     normalization: str, mesh) -> dict:
  """{score name: framework.fit_score(name, ...)} over `split` (the training set, no augmentation).

  Frameworks reduce per-batch statistics on device; the batch sums are added on the host
  in float64, so long training sets lose no precision.
  """
  def reduce_train(fn):
    @jax.jit
    def batch_sums(variables, images, mask):
      outputs = model.apply(variables, augment.normalize(images, normalization), train=False)
      return fn(outputs, mask)

    total = None
    for batch in eval_batches(split, batch_size, jax.process_index(), jax.process_count()):
      g = parallel.to_global({"image": batch["image"], "mask": batch["mask"]}, mesh)
      sums = jax.tree.map(lambda x: parallel.to_host(x).astype(np.float64),
                          batch_sums(variables, g["image"], g["mask"]))
      total = sums if total is None else jax.tree.map(np.add, total, sums)
    return total

  return {name: framework.fit_score(name, reduce_train) for name in score_names}


def predict_split(predict_fn, variables, split, batch_size: int, mesh) -> dict:
  """All of `split` through `predict_fn` -> dict of NumPy arrays [N] in the split's order."""
  chunks = []
  for batch in eval_batches(split, batch_size, jax.process_index(), jax.process_count()):
    mask = batch.pop("mask")
    g = parallel.to_global({"image": batch["image"], "mask": mask}, mesh)
    out = predict_fn(variables, g["image"])
    host_mask = parallel.to_host(g["mask"])
    chunks.append({k: parallel.to_host(v)[host_mask] for k, v in out.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def open_set_outputs(scorer: Scorer, variables, known_split, unknown_split) -> dict:
  """Per-sample arrays of one open-set evaluation: known_scores, known_preds, known_labels
  [Nk], unknown_scores, unknown_preds [Nu]."""
  known = scorer(variables, known_split)
  unknown = scorer(variables, unknown_split)
  return dict(known_scores=known["score"], known_preds=known["pred"],
              known_labels=known_split.labels, unknown_scores=unknown["score"],
              unknown_preds=unknown["pred"])


def outputs_metrics(outputs: dict, num_classes: int, arpl_compat: bool = False) -> dict:
  """open_set_metrics of the arrays `open_set_outputs` returns."""
  return open_set_metrics(outputs["known_scores"], outputs["known_preds"],
                          outputs["known_labels"], outputs["unknown_scores"],
                          arpl_compat=arpl_compat, unknown_preds=outputs["unknown_preds"],
                          num_classes=num_classes)


def evaluate_open_set(model, framework, variables, data, *, score: str, batch_size: int,
                      normalization: str, mesh, arpl_compat: bool = False) -> tuple[dict, dict]:
  """Metrics of `variables` on data.test_known vs data.test_unknown with score `score`.

  Returns (metrics, outputs): outputs holds the per-sample arrays for plots
  (known_scores, known_preds, known_labels, unknown_scores, unknown_preds).
  """
  scorer = Scorer(model, framework, score, train=data.train, batch_size=batch_size,
                  normalization=normalization, mesh=mesh)
  outputs = open_set_outputs(scorer, variables, data.test_known, data.test_unknown)
  metrics = outputs_metrics(outputs, data.num_classes, arpl_compat)
  metrics["score"] = scorer.score
  return metrics, outputs
