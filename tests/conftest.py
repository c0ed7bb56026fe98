"""Test session setup: 4 virtual CPU devices, a quiet TensorFlow, a shared compilation cache,
and memory handed back after every test module.

XLA reads its flags once, when JAX first initialises a backend, so they are set here,
before any test module imports jax. The persistent compilation cache is set through the
environment so that the subprocesses tests start (CLI runs, the 2-process run) share it:
most tests train the same small programs, which are then loaded instead of compiled.
"""
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="backmix_xla_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest

from tests.helpers import release_memory, resident_gib

RELEASE_ABOVE_GIB = 1.5  # the session's own footprint (TensorFlow, JAX, data) is about 1 GiB
# Within a module: a test that compiles leaves its programs behind, and compiling the next
# needs room on top; above this, they are dropped (reloaded from the persistent cache if used).
# Low enough that a module of many small runs (test_frameworks: seven frameworks' steps and
# evaluators) stays near 2.4 GiB instead of 3.4, at a few percent of its time.
CLEAR_ABOVE_GIB = 1.6


@pytest.fixture(autouse=True)
def _bounded_memory():
  """After any test that leaves the process above CLEAR_ABOVE_GIB: drop compiled programs."""
  yield
  if resident_gib() > CLEAR_ABOVE_GIB:
    release_memory()


@pytest.fixture(autouse=True, scope="module")
def _free_each_modules_runs(request):
  """After each test module: clear its memoised builds (any module-level function with
  `cache_clear`, e.g. an lru_cache of built runs) and, above RELEASE_ABOVE_GIB, every
  compiled program, so a module's runs never outlive it. Without this the suite's memory
  grows with every module."""
  yield
  for value in list(vars(request.module).values()):
    if callable(getattr(value, "cache_clear", None)):
      value.cache_clear()
  # Below the threshold the compiled programs stay: the next module often reuses them.
  if resident_gib() > RELEASE_ABOVE_GIB:
    release_memory()


class _ModulePeaks:
  """Opt-in record of where the suite's memory goes: with BACKMIX_TEST_MEMLOG=<file>, each
  process (pytest or an xdist worker) samples its own resident memory every 0.2 s and appends
  one JSON line per test module: worker, module, start and end (Unix time), peak and final GiB.
  Summing the workers' lines that overlap in time shows which modules meet at the peak."""

  def __init__(self, path):
    self.path, self.peak = path, 0.0
    threading.Thread(target=self._sample, daemon=True).start()

  def _sample(self):
    while True:
      self.peak = max(self.peak, resident_gib())
      time.sleep(0.2)

  def record(self, module, start):
    line = dict(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"), module=module,
                start=start, end=time.time(), peak_gib=round(self.peak, 3),
                end_gib=round(resident_gib(), 3))
    with open(self.path, "a") as f:
      f.write(json.dumps(line) + "\n")


_PEAKS = _ModulePeaks(os.environ["BACKMIX_TEST_MEMLOG"]) if os.environ.get(
    "BACKMIX_TEST_MEMLOG") else None


@pytest.fixture(autouse=True, scope="module")
def _record_module_peak(request):
  if _PEAKS is None:
    yield
    return
  _PEAKS.peak, start = resident_gib(), time.time()
  yield
  _PEAKS.record(request.module.__name__, start)


def pytest_collection_modifyitems(config, items):
  """Tiers: `-m "not slow"` is the everyday loop, plain `pytest` runs everything.

  Tests that train or compile whole runs carry @pytest.mark.slow (or their module's
  `pytestmark`). A parametrized test runs its first parameter set in the fast tier and the
  others in the slow one, so every test function is exercised by the fast tier once.
  """
  first = set()
  for item in items:
    if getattr(item, "callspec", None) is None:
      continue
    name = (item.path, item.originalname)
    if name in first:
      item.add_marker(pytest.mark.slow)
    else:
      first.add(name)
