"""PNG plots of an evaluation: ROC curves, score histograms and OSCR curves; metric
histories over training; examples of the fore-/background diagnostic's images.

Figures are built with matplotlib's object API and the Agg canvas, never pyplot: nothing
opens a window, no global figure state is touched, and it works on headless TPU VMs.
Curves come from `metrics.roc_curve` / `metrics.oscr_curve`, so the plotted areas are the
reported metrics.
"""
from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from backmix_jax.data.composite import CONDITIONS
from backmix_jax.data.core import OpenSetData, evenly_spaced
from backmix_jax.evaluation import metrics


def _new_axes(figsize=(4.5, 4.0)):
  fig = Figure(figsize=figsize, dpi=120)
  FigureCanvasAgg(fig)
  return fig, fig.add_subplot()


def _save(fig: Figure, path) -> str:
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, format="png")
  return path


def plot_roc_curves(curves: Mapping[str, Sequence], path, title: str = "ROC") -> str:
  """Overlay ROC curves (e.g. baseline vs BackMix) in one PNG; returns the path.

  curves: label -> (known_scores [Nk], unknown_scores [Nu]); each legend entry shows the
  curve's AUROC x100.
  """
  if not curves:
    raise ValueError("curves is empty")
  fig, ax = _new_axes()
  for label, (known, unknown) in curves.items():
    fpr, tpr, _ = metrics.roc_curve(known, unknown)
    auroc = metrics.trapezoid(tpr, fpr)
    ax.plot(fpr, tpr, label=f"{label} (AUROC {100 * auroc:.2f})", linewidth=1.5)
  ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
  ax.set(xlabel="unknowns accepted (FPR)", ylabel="knowns accepted (TPR)", title=title,
         xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(loc="lower right", fontsize="small")
  return _save(fig, path)


def plot_roc(known_scores, unknown_scores, path, label: str | None = None) -> str:
  """One ROC curve. known_scores [Nk], unknown_scores [Nu]; returns the path."""
  return plot_roc_curves({label or "model": (known_scores, unknown_scores)}, path)


def plot_score_histogram(known_scores, unknown_scores, path, bins: int = 50,
                         title: str = "open-set scores") -> str:
  """Known vs unknown score histograms on shared bins, each normalised to unit area."""
  known = metrics.check_scores(known_scores, "known_scores")
  unknown = metrics.check_scores(unknown_scores, "unknown_scores")
  edges = np.histogram_bin_edges(np.concatenate([known, unknown]), bins=bins)
  fig, ax = _new_axes((5.0, 3.5))
  ax.hist(known, bins=edges, density=True, alpha=0.55, label=f"known (n={len(known)})")
  ax.hist(unknown, bins=edges, density=True, alpha=0.55, label=f"unknown (n={len(unknown)})")
  ax.set(xlabel="score (higher = known)", ylabel="density", title=title)
  ax.legend(fontsize="small")
  return _save(fig, path)


def plot_oscr_curves(curves: Mapping[str, Sequence], path, title: str = "OSCR") -> str:
  """Overlay OSCR curves: correct classification rate vs FPR; returns the path.

  curves: label -> (known_scores [Nk], known_correct bool [Nk], unknown_scores [Nu]).
  """
  if not curves:
    raise ValueError("curves is empty")
  fig, ax = _new_axes()
  for label, (known, correct, unknown) in curves.items():
    fpr, ccr = metrics.oscr_curve(known, correct, unknown)
    oscr = metrics.trapezoid(ccr, fpr)
    ax.plot(fpr, ccr, label=f"{label} (OSCR {100 * oscr:.2f})", linewidth=1.5)
  ax.set(xlabel="unknowns accepted (FPR)", ylabel="correct classification rate (CCR)",
         title=title, xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(loc="lower right", fontsize="small")
  return _save(fig, path)


def plot_oscr(known_scores, known_correct, unknown_scores, path,
              label: str | None = None) -> str:
  """One OSCR curve. known_scores, known_correct [Nk]; unknown_scores [Nu]."""
  return plot_oscr_curves({label or "model": (known_scores, known_correct, unknown_scores)},
                          path)


def plot_condition_histograms(scores: Mapping[str, np.ndarray], path, bins: int = 40,
                              title: str = "score per condition") -> str:
  """One density histogram per test condition (name -> scores [N]), overlaid; returns the path."""
  if not scores:
    raise ValueError("scores is empty")
  fig, ax = _new_axes((6.0, 4.0))
  values = np.concatenate([np.asarray(v, np.float64) for v in scores.values()])
  edges = np.histogram_bin_edges(values, bins=bins)
  for name, v in scores.items():
    ax.hist(np.asarray(v, np.float64), bins=edges, density=True, histtype="step",
            linewidth=1.5, label=f"{name} ({len(v)})")
  ax.set(xlabel="open-set score (higher = more known)", ylabel="density", title=title)
  ax.legend(fontsize="small")
  return _save(fig, path)


def plot_history(records: Sequence[Mapping], series: Mapping[str, str], path,
                 title: str = "", xlabel: str = "step",
                 ylim: tuple[float, float] = (0, 1.02)) -> str:
  """Lines of metrics over training: records of metrics.jsonl (x = their `step`), series
  key -> legend label."""
  fig, ax = _new_axes((6.0, 4.0))
  for key, label in series.items():
    points = [(r["step"], r[key]) for r in records if key in r]
    if points:
      steps, values = zip(*points)
      ax.plot(steps, values, marker="o", markersize=3, linewidth=1.5, label=label)
  ax.set(xlabel=xlabel, ylim=ylim, title=title)
  ax.legend(fontsize="small")
  return _save(fig, path)


def plot_fgbg_examples(path, panels: Sequence[tuple[str, OpenSetData]], num: int = 6) -> str:
  """The fore-/background diagnostic's images: a PNG of `num` examples per row, training
  images then each condition, with the true mask outlined in cyan; one column block per
  (title, OpenSetData) panel, side by side. Image titles: the digit and its label, or
  'unknown'. Saved with a 256-colour palette; returns the path."""
  from PIL import Image  # Pillow: only this picture re-encodes its PNG
  rows = ["train"] + list(CONDITIONS)
  fig = Figure(figsize=(1.05 * num * len(panels) + 0.9 * len(panels), 1.1 * len(rows) + 0.5))
  FigureCanvasAgg(fig)
  subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
  for sub, (title, data) in zip(subfigs, panels):
    by_name = {"train": data.train, **{c.name: c.split for c in data.conditions}}
    axes = sub.subplots(len(rows), num, squeeze=False)
    sub.subplots_adjust(left=0.14, right=0.98, top=0.9, bottom=0.02, wspace=0.08, hspace=0.3)
    sub.suptitle(title, fontsize=10)
    for r, name in enumerate(rows):
      s = by_name[name]
      for j, i in enumerate(evenly_spaced(len(s), num)[:num]):
        ax = axes[r, j]
        img = s.images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.contour(s.masks[i].astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.7)
        lab = int(s.labels[i])
        ax.set_title(f"digit {data.known_classes[lab]} = {lab}" if lab >= 0 else "unknown",
                     fontsize=6, pad=1)
      for ax in axes[r]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("on" if ax.images else "off")
      axes[r, 0].set_ylabel(name.replace("_", "\n", 1), fontsize=7)
  buf = io.BytesIO()
  fig.savefig(buf, dpi=110)
  # 256 colours: a third of the size of the RGB file, no visible change at this scale.
  Image.open(buf).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
  return os.fspath(path)
