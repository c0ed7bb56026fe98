"""tools/suite_memory.py: reading the suite's per-module memory log (tests/conftest.py)."""
import json
import sys

from tools import suite_memory


def _row(worker, module, start, end, peak):
  return dict(worker=worker, module=module, start=start, end=end, peak_gib=peak, end_gib=peak)


def test_only_modules_of_different_workers_at_the_same_time_are_summed(tmp_path, capsys):
  """A pair counts when its modules ran on two workers with overlapping times; modules of one
  worker, or of two workers one after the other, never add up. Largest sum first; the command
  prints it and the timeline."""
  rows = [_row("gw0", "heavy", 0, 100, 3.0), _row("gw0", "after", 100, 150, 2.5),
          _row("gw1", "light", 10, 50, 1.0), _row("gw1", "late", 120, 200, 1.2),
          _row("gw1", "disjoint", 60, 90, 2.0)]
  pairs = suite_memory.overlaps(rows)
  assert [(round(t, 2), a["module"], b["module"]) for t, a, b in pairs] == [
      (5.0, "heavy", "disjoint"), (4.0, "heavy", "light"), (3.7, "after", "late")]
  log = tmp_path / "memlog.jsonl"
  log.write_text("".join(json.dumps(r) + "\n" for r in rows))
  argv, sys.argv = sys.argv, ["suite_memory", str(log)]
  try:
    suite_memory.main()
  finally:
    sys.argv = argv
  out = capsys.readouterr().out
  assert "5.00 GiB  heavy (gw0, 3.00) + disjoint (gw1, 2.00)" in out
  assert out.count("\n") > len(rows)
