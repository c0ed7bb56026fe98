"""Where the test suite's memory goes: reads the per-module log that
`BACKMIX_TEST_MEMLOG=<file> python -m pytest` writes (tests/conftest.py) and prints each test
module on its worker's timeline, the modules that ran at the same time with the largest summed
peak, and the largest module's peak.

  BACKMIX_TEST_MEMLOG=/tmp/memlog.jsonl python tools/peak_memory.py -- python -m pytest
  python tools/suite_memory.py /tmp/memlog.jsonl

A module's peak is its worker's resident memory at its highest while the module ran (what
earlier modules left behind included), sampled every 0.2 s.
"""
import argparse
import json


def read(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def overlaps(rows: list[dict]) -> list[tuple[float, dict, dict]]:
  """(summed peak, a, b) for every pair of modules of different workers that ran at the same
  time, largest first."""
  pairs = [(a["peak_gib"] + b["peak_gib"], a, b) for a in rows for b in rows
           if a["worker"] < b["worker"] and a["start"] < b["end"] and b["start"] < a["end"]]
  return sorted(pairs, key=lambda p: -p[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("log", help="the BACKMIX_TEST_MEMLOG file")
  parser.add_argument("--top", type=int, default=5, help="overlapping pairs to print")
  args = parser.parse_args()
  rows = read(args.log)
  if not rows:
    raise SystemExit(f"{args.log} holds no module records")
  t0 = min(r["start"] for r in rows)
  print("worker   start     end   time   peak    end  module (GiB, seconds from the start)")
  for r in sorted(rows, key=lambda r: r["start"]):
    print(f"{r['worker']:6} {r['start'] - t0:7.0f} {r['end'] - t0:7.0f} "
          f"{r['end'] - r['start']:6.0f} {r['peak_gib']:6.2f} {r['end_gib']:6.2f}  {r['module']}")
  pairs, largest = overlaps(rows), max(r["peak_gib"] for r in rows)
  if pairs:
    print(f"\nlargest summed peaks of modules running at once (the largest module alone: "
          f"{largest:.2f} GiB):")
    for total, a, b in pairs[:args.top]:
      print(f"  {total:5.2f} GiB  {a['module']} ({a['worker']}, {a['peak_gib']:.2f}) + "
            f"{b['module']} ({b['worker']}, {b['peak_gib']:.2f})")
  else:
    print(f"\none process, or no modules at the same time: peak {largest:.2f} GiB")


if __name__ == "__main__":
  main()
