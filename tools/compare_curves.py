"""Periodic evaluations of several runs side by side: one metric per picture, lines per run,
and a markdown table by epoch (with run 2 - run 1 when there are two runs).

  python tools/compare_curves.py --run plain=runs/plain_e120_s1 \
      --run backmix=runs/backmix_e120_s1 --metric auroc --out docs/results_c10_auroc.png

Reads each workdir's metrics.jsonl `eval` records (the open-set evaluator with
`evals.open_set.every_epochs`, plus the final evaluation) and prints the table; the PNG is
drawn by `evaluation.plots.plot_history`. Values are printed x100.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backmix_jax.evaluation import plots, report  # noqa: E402


def curves(runs: dict[str, str], metric: str) -> dict[str, dict[int, float]]:
  """{run label: {epoch: value}} of `metric` in each run's eval records (the last record of
  an epoch wins: a resumed run may evaluate an epoch twice)."""
  out = {}
  for label, workdir in runs.items():
    records = report.read_records(os.path.join(workdir, "metrics.jsonl"), "eval")
    out[label] = {int(r["epoch"]): float(r[metric]) for r in records
                  if metric in r and "epoch" in r}
  return out


def table(by_run: dict[str, dict[int, float]], metric: str) -> str:
  """Markdown: one row per epoch any run evaluated, one column per run (x100), and the
  difference of the second run to the first when there are exactly two."""
  labels = list(by_run)
  epochs = sorted(set().union(*(set(c) for c in by_run.values())))
  pair = len(labels) == 2
  head = ["epoch"] + [f"{l} {metric}" for l in labels] + ([f"{labels[1]} - {labels[0]}"]
                                                          if pair else [])
  lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
  for e in epochs:
    values = [by_run[l].get(e) for l in labels]
    cells = [str(e)] + [f"{100 * v:.2f}" if v is not None else "" for v in values]
    if pair:
      cells.append(f"{100 * (values[1] - values[0]):+.2f}" if None not in values else "")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", action="append", required=True, metavar="LABEL=WORKDIR",
                      help="a run to draw (repeat the flag for each run)")
  parser.add_argument("--metric", default="auroc", help="a key of the eval records "
                      "(auroc, oscr, acc, fpr95, ...)")
  parser.add_argument("--out", help="PNG to write (none: only the table)")
  args = parser.parse_args(argv)
  runs = {}
  for item in args.run:
    label, sep, workdir = item.partition("=")
    if not sep or not label or not workdir:
      parser.error(f"--run takes LABEL=WORKDIR, got {item!r}")
    if not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
      parser.error(f"--run {item}: no metrics.jsonl in {workdir}")
    runs[label] = workdir
  by_run = curves(runs, args.metric)
  empty = [l for l, c in by_run.items() if not c]
  if empty:
    parser.error(f"no eval record with {args.metric!r} in: {', '.join(empty)}")
  print(table(by_run, args.metric))
  if args.out:
    records = [{"step": e, f"{label}": v} for label, c in by_run.items() for e, v in c.items()]
    low = min(min(c.values()) for c in by_run.values())
    path = plots.plot_history(sorted(records, key=lambda r: r["step"]),
                              {label: label for label in by_run}, args.out,
                              title=f"{args.metric} at each evaluation", xlabel="epoch",
                              ylim=(max(0.0, low - 0.05), 1.0))
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
