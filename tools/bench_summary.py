"""One markdown table from several `experiments.benchmark --json` files (one row per file).

python tools/bench_summary.py runs/gpu_bench/*.json

Standard library only, so it runs on any image the benchmark ran on.
"""
from __future__ import annotations

import json
import sys

HEADER = ("| model | dtype | batch | plain step img/s | BackMix step img/s | BackMix/plain time "
          "| pipeline img/s | loop img/s | loop/step | compile s (plain, BackMix) "
          "| peak device MiB |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def summary_row(r: dict) -> str:
  """The table row of one benchmark result dict."""
  c, q = r["config"], r["ratios"]
  peak = r["backmix_step"]["peak_memory_bytes"]
  peak = "n/a" if peak is None else f"{peak / 2**20:,.0f}"
  return (f"| {c['model']} | {c['dtype']} | {c['batch_size']} "
          f"| {r['plain_step']['images_per_second']:,.0f} "
          f"| {r['backmix_step']['images_per_second']:,.0f} | {q['backmix_over_plain_time']:.2f}x "
          f"| {r['pipeline']['images_per_second']:,.0f} ({c['backend']}) "
          f"| {r['loop']['images_per_second']:,.0f} "
          f"| {q['loop_over_step']:.2f} | {r['plain_step']['compile_seconds']:.0f}, "
          f"{r['backmix_step']['compile_seconds']:.0f} | {peak} |")


def summary_table(results: list[dict]) -> str:
  """Header, one row per result, and the device and versions of the first."""
  if not results:
    return "no results"
  first = results[0]
  d, v = first["device"], first["versions"]
  lines = [HEADER] + [summary_row(r) for r in results]
  lines.append("")
  lines.append(f"{d['count']} x {d['kind']} ({d['platform']}), {first['date']}; jax {v['jax']}, "
               f"jaxlib {v['jaxlib']}, flax {v['flax']}, optax {v['optax']}, numpy {v['numpy']}, "
               f"python {v['python']}; data {first['config']['data']}, "
               f"images {first['config']['image_shape']}, "
               f"{first['config']['num_classes']} classes")
  return "\n".join(lines)


def main(paths: list[str]) -> int:
  results = []
  for path in paths:
    with open(path) as f:
      results.append(json.load(f))
  print(summary_table(results))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
