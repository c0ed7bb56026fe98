"""The BackMix study on the fore-/background diagnostic: variants x seeds, then one table.

  python tools/fgbg_study.py --config configs/fgbg_digits.py --root runs/study --seeds 0 \
      --variants off,released,oracle_swap            # train what is missing, print the table
  python tools/fgbg_study.py --config configs/fgbg_digits.py --root runs/study --summary_only

Each run is `train_and_evaluate(config + the variant's overrides, root/<variant>_s<seed>)`
(a finished workdir is not retrained), so a killed study resumes where it stopped. The
summary reads every metrics.json under --root: mean ± std over seeds per variant of the
diagnostic's condition metrics and the final CAM localisation, and for each variant the
difference to `off` paired by seed (same data, same initialisation and batch order).
Extra overrides for every run: --set key=value (repeatable), e.g. --set num_epochs=8.
Teacher variants take their CAMs from the same seed's `off` run (train it first).
The tables are `evaluation.report`'s (summarize_trials, trials_table_markdown), the CAM
figure `evaluation.plots.plot_history`.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from backmix_jax.evaluation import plots, report  # noqa: E402

# name -> overrides of config.backmix (the released wrapper's rules are the defaults).
VARIANTS = {
    "off": dict(enabled=False),
    "released": dict(),
    # Released rules, one knob changed.
    "oracle": dict(cam_source="oracle"),
    "place_bg": dict(placement="background"),
    "fg50": dict(fg_ratio=0.5),
    "mean_fill": dict(fill_mode="dataset_mean"),
    "other_class": dict(partner="other_class"),
    "mix50": dict(mix_prob=0.5),
    "warmup": dict(warmup_epochs=5),
    "mix_clean": dict(train_on="mix+clean"),
    # Background swap: the target keeps its top-half cells, every other cell comes from a
    # random partner (its foreground cells filled with the dataset mean), so a training
    # image's background says nothing about its label. With the true masks (oracle) this is
    # what BackMix aims at with a perfect CAM; with live CAMs it is what a CAM can give.
    "oracle_swap": dict(cam_source="oracle", replace="background", fg_ratio=0.5,
                        fill_mode="dataset_mean"),
    "oracle_swap_half": dict(cam_source="oracle", replace="background", fg_ratio=0.5,
                             fill_mode="dataset_mean", mix_prob=0.5),
    "cam_swap": dict(replace="background", fg_ratio=0.5, fill_mode="dataset_mean"),
    "cam_swap_warm": dict(replace="background", fg_ratio=0.5, fill_mode="dataset_mean",
                          warmup_epochs=5),
    "cam_swap_half": dict(replace="background", fg_ratio=0.5, fill_mode="dataset_mean",
                          mix_prob=0.5),
    # CAMs of a fixed teacher: the same seed's finished `off` run (root/off_s<seed>), so the
    # mask comes from a network that had a whole schedule to find the digit.
    "teacher": dict(cam_source="teacher"),
    "teacher_swap": dict(cam_source="teacher", replace="background", fg_ratio=0.5,
                         fill_mode="dataset_mean"),
    # The same keeping only as many cells as the digit covers (25.8 % of the grid): fewer of
    # the target's own background cells around the digit survive the swap.
    "teacher_swap25": dict(cam_source="teacher", replace="background", fg_ratio=0.25,
                           fill_mode="dataset_mean"),
}

# Table column: key (see _value) -> header.
COLUMNS = {"acc/known_correlated": "acc corr", "acc/known_swapped": "acc swap",
           "acc/known_unrelated": "acc unrel", "auroc/unknown_known_bg": "AUROC partial",
           "auroc/unknown_unknown_bg": "AUROC unk-bg", "auroc": "AUROC all",
           "cam:train/live_cell_precision": "CAM prec",
           "cam:train/live_pixel_recall": "CAM px rec",
           "cam:train/teacher_pixel_recall": "teacher px rec"}
# CAM figure: metrics.jsonl key -> legend suffix.
CAM_HISTORY = {"cam_localization/train/live_cell_precision": "cell precision",
               "cam_localization/train/live_pixel_recall": "pixel recall"}

CONFIG = flags.DEFINE_string("config", "configs/fgbg_digits.py", "Diagnostic config file.")
ROOT = flags.DEFINE_string("root", "runs/fgbg_study", "Directory of the study's workdirs.")
SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (config.seed) of every variant.")
NAMES = flags.DEFINE_list("variants", list(VARIANTS), f"Variants, of {', '.join(VARIANTS)}.")
SETS = flags.DEFINE_multi_string("set", [], "key=value override for every run (dotted keys).")
SUMMARY_ONLY = flags.DEFINE_bool("summary_only", False, "Only print the table of what exists.")
FIGURE = flags.DEFINE_string("figure", "", "Also draw the CAM localisation of --variants (first "
                             "seed) over training into this PNG.")


def _load_config(path: str):
  import importlib.util
  spec = importlib.util.spec_from_file_location("study_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _assign(config, dotted: str, value):
  *path, last = dotted.split(".")
  node = config
  for p in path:
    node = node[p]
  current = node[last]
  if isinstance(value, str) and not isinstance(current, str):
    import ast
    value = ast.literal_eval(value)
  node[last] = value


def _value(metrics: dict, key: str):
  if key.startswith("cam:"):
    return metrics.get("cam_localization", {}).get(key[4:])
  if "/" in key:
    return metrics.get("conditions", {}).get(key)
  return metrics.get(key)


def _values(metrics: dict) -> dict[str, float]:
  """The COLUMNS values one run's metrics.json holds."""
  return {k: v for k in COLUMNS if (v := _value(metrics, k)) is not None}


def _summary(per_seed: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
  """Mean and std over seeds of the keys every seed has (report.summarize_trials)."""
  common = set.intersection(*(set(d) for d in per_seed))
  return report.summarize_trials([{k: d[k] for k in COLUMNS if k in common} for d in per_seed])


def summary(root: str) -> str:
  """Markdown: mean ± std over seeds per variant, then each variant minus `off` paired by
  seed; x100 (report.trials_table_markdown)."""
  runs = {}
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    path = os.path.join(root, name, "metrics.json")
    if "_s" in name and os.path.exists(path):
      variant, seed = name.rsplit("_s", 1)
      with open(path) as f:
        runs.setdefault(variant, {})[seed] = _values(json.load(f))
  order = [v for v in VARIANTS if v in runs] + sorted(set(runs) - set(VARIANTS))
  rows = {f"{v} ({len(runs[v])} seeds)": _summary(list(runs[v].values())) for v in order}
  out = ["Mean ± std over seeds, x100.\n\n",
         report.trials_table_markdown(rows, first_column="variant", columns=COLUMNS)]
  if "off" in runs:
    diffs = {}
    for v in order:
      seeds = sorted(set(runs[v]) & set(runs["off"]))
      if v == "off" or not seeds:
        continue
      per_seed = [{k: runs[v][s][k] - runs["off"][s][k]
                   for k in set(runs[v][s]) & set(runs["off"][s])} for s in seeds]
      diffs[f"{v} ({len(seeds)} seeds)"] = _summary(per_seed)
    if diffs:
      out += ["\nDifference to `off`, paired by seed (mean ± std of the differences), x100.\n\n",
              report.trials_table_markdown(diffs, first_column="variant", columns=COLUMNS,
                                           signed=True)]
  return "".join(out)


def cam_figure(root: str, variants, seed: str, path: str) -> str:
  """Live-CAM cell precision and pixel recall on the training probe over training, two lines
  per variant (its workdir's metrics.jsonl), in one PNG (plots.plot_history)."""
  records = []
  for name in variants:
    for r in report.read_records(os.path.join(root, f"{name}_s{seed}", "metrics.jsonl"),
                                 "eval"):
      records.append({"step": r["step"], **{f"{name}: {k}": r[k] for k in CAM_HISTORY if k in r}})
  series = {f"{name}: {k}": f"{name} {label}" for name in variants
            for k, label in CAM_HISTORY.items()}
  return plots.plot_history(records, series, path,
                            title="live CAM on the training probe (top fg_ratio cells)")


def main(argv):
  del argv
  if not SUMMARY_ONLY.value:
    from backmix_jax.training.train import train_and_evaluate
    for name in NAMES.value:
      if name not in VARIANTS:
        raise app.UsageError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    for seed in SEEDS.value:
      for name in NAMES.value:
        workdir = os.path.join(ROOT.value, f"{name}_s{seed}")
        if os.path.exists(os.path.join(workdir, "metrics.json")):
          continue
        config = _load_config(CONFIG.value)
        config.seed = int(seed)
        for k, v in VARIANTS[name].items():
          config.backmix[k] = v
        if config.backmix.cam_source == "teacher":
          config.backmix.teacher = os.path.abspath(os.path.join(ROOT.value, f"off_s{seed}"))
          if not os.path.exists(os.path.join(config.backmix.teacher, "metrics.json")):
            raise app.UsageError(f"variant {name} needs its teacher: train `off` for seed "
                                 f"{seed} first (list it before {name} in --variants)")
        for item in SETS.value:
          key, _, value = item.partition("=")
          _assign(config, key, value)
        print(f"=== study run {name} seed {seed} -> {workdir}", flush=True)
        train_and_evaluate(config, workdir)
  print(summary(ROOT.value))
  if FIGURE.value:
    print("wrote", cam_figure(ROOT.value, NAMES.value, SEEDS.value[0], FIGURE.value))


if __name__ == "__main__":
  app.run(main)
