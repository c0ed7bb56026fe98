"""Run a command and report its wall time and peak memory, summed over its process tree.

  python tools/peak_memory.py -- python -m pytest

`/usr/bin/time -v` reports the largest single process ("Maximum resident set size"); a test
run with several workers (pytest-xdist) or subprocesses holds the sum of them at once, which
is what decides whether it fits beside other work. This samples /proc every --interval
seconds (Linux only) and prints both: the peak of the tree's summed resident set size and
the peak of any one process in it. Sampling can miss a spike shorter than the interval.
Exits with the command's exit code.
"""
import argparse
import os
import subprocess
import sys
import time

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children():
  """{pid: parent pid} of every process visible in /proc."""
  parents = {}
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat") as f:
        # The command name (field 2) may hold spaces; the fields after its ')' do not.
        fields = f.read().rsplit(")", 1)[1].split()
      parents[int(name)] = int(fields[1])
    except (OSError, IndexError, ValueError):
      continue  # the process ended while we read it
  return parents


def _rss_kb(pid):
  try:
    with open(f"/proc/{pid}/statm") as f:
      return int(f.read().split()[1]) * PAGE_KB
  except (OSError, IndexError, ValueError):
    return 0


def tree_rss_kb(root):
  """(summed RSS of `root` and all its descendants, largest single RSS among them) in KB."""
  parents = _children()
  tree, frontier = {root}, [root]
  while frontier:
    pid = frontier.pop()
    kids = [c for c, p in parents.items() if p == pid and c not in tree]
    tree.update(kids)
    frontier.extend(kids)
  sizes = [_rss_kb(pid) for pid in tree]
  return sum(sizes), max(sizes, default=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
  args = parser.parse_args()
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command to measure after --")
  start = time.monotonic()
  proc = subprocess.Popen(command)
  peak_sum = peak_one = 0
  while proc.poll() is None:
    total, largest = tree_rss_kb(proc.pid)
    peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
    time.sleep(args.interval)
  wall = time.monotonic() - start
  print(f"peak_memory: {' '.join(command)}\n  exit {proc.returncode} | wall {wall:.1f} s "
        f"({wall / 60:.1f} min) | peak RSS summed over the process tree "
        f"{peak_sum / 2**20:.2f} GiB | largest single process {peak_one / 2**20:.2f} GiB "
        f"(sampled every {args.interval} s)", file=sys.stderr)
  sys.exit(proc.returncode)


if __name__ == "__main__":
  main()
