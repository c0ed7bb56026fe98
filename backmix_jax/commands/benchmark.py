"""Training speed, side by side in one run: plain step, BackMix step, input pipeline, whole loop.

* plain / BackMix step: the jitted train step (`training.step.make_run_step`, BackMix off /
  on, everything else from the config) looping over a few batches already on the device;
* input pipeline: `TrainStream` batches moved to the devices (`parallel.to_global`), no step;
* training loop: pipeline + BackMix step, metrics read one step behind as `training.train`.

Each figure is the median over `repeats` blocks of `steps` steps, after `warmup` untimed
steps; the four kinds of block take turns (drifting load on a shared machine hits each
alike) and compilation is timed separately. `synthetic` replaces the dataset with random
uint8 images of the config's size (channels 3 unless data.channels says otherwise), so no
dataset (and, with data.backend=numpy, no TensorFlow) is needed.
`python -m experiments.benchmark` is `run_and_report` (`run_benchmark` + `format_table`)
behind flags; tools/minimal_step_speed.py reuses the block timers.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time

import flax
import jax
import jaxlib
import numpy as np
import optax

from backmix_jax import parallel
from backmix_jax.data.core import ArraySplit
from backmix_jax.data.openset import OpenSetData
from backmix_jax.data.pipeline import resolve_backend
from backmix_jax.training import sweep, validate
from backmix_jax.training.run import build_run
from backmix_jax.training.step import make_run_step


# (key in the results, row label); the table's row order.
ROWS = (("plain_step", "plain step (BackMix off)"), ("backmix_step", "BackMix step"),
        ("pipeline", "input pipeline"), ("loop", "training loop (pipeline + BackMix step)"))


def synthetic_open_set(image_size: int, channels: int, num_classes: int, num_train: int,
                       seed: int = 0):
  """OpenSetData of random uint8 images [num_train, S, S, C], labels uniform in 0..K-1.

  The test splits hold two images each: the benchmark never evaluates.
  """
  rng = np.random.default_rng(seed)

  def split(n, labels):
    return ArraySplit(rng.integers(0, 256, (n, image_size, image_size, channels), np.uint8),
                      labels.astype(np.int64))

  return OpenSetData(train=split(num_train, rng.integers(0, num_classes, num_train)),
                     test_known=split(2, np.zeros(2)), test_unknown=split(2, -np.ones(2)),
                     known_classes=tuple(range(num_classes)))


def with_backmix(config, enabled: bool):
  """A copy of `config` with BackMix switched on or off."""
  config = config.copy_and_resolve_references()
  config.backmix.enabled = enabled
  return config


def peak_memory_bytes() -> int | None:
  """Largest peak_bytes_in_use over local devices, or None where the backend has no stats (CPU).

  The allocator's peak covers the whole process so far, not one program.
  """
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
  peaks = [p for p in peaks if p is not None]
  return max(peaks) if peaks else None


def _summary(seconds: list[float], steps: int, batch: int) -> dict:
  median = statistics.median(seconds)
  return dict(images_per_second=steps * batch / median, seconds_per_step=median / steps,
              repeat_seconds=seconds)


def compile_step(step_fn, state, batch) -> dict:
  """Trace, lower and compile `step_fn` for these shapes (jit reuses the executable after).

  Returns dict(compile_seconds, temp_bytes): wall time, and XLA's scratch memory for one step.
  """
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  temp = None if mem is None else int(mem.temp_size_in_bytes)
  return dict(compile_seconds=seconds, temp_bytes=temp)


# Each *_block returns block(n): n more steps of its kind, blocking until they are done.

def step_block(step_fn, state, batches: list):
  """Steps cycling over device-resident batches; `state` is donated and carried along."""
  cell = [state]

  def block(n):
    state = cell[0]
    for i in range(n):
      state, _ = step_fn(state, batches[i % len(batches)])
    cell[0] = jax.block_until_ready(state)

  return block


def pipeline_block(stream, mesh, num_batches: int):
  """The host pipeline alone: batches gathered and placed on the devices."""
  it = stream.batches(0, num_batches)

  def block(n):
    for _ in range(n):
      jax.block_until_ready(parallel.to_global(next(it), mesh))

  return block


def loop_block(step_fn, state, stream, mesh, num_batches: int):
  """Pipeline + step as training.train runs them: each step's metrics read during the next."""
  it = stream.batches(0, num_batches)
  cell = [state, None]

  def block(n):
    state, pending = cell
    for _ in range(n):
      state, metrics = step_fn(state, parallel.to_global(next(it), mesh))
      if pending is not None:
        jax.device_get(pending)
      pending = metrics
    cell[:] = [jax.block_until_ready(state), pending]

  return block


def time_blocks(blocks: dict, *, steps: int, repeats: int) -> dict:
  """name -> list of `repeats` wall times of block(steps), blocks already warmed up.

  The blocks take turns, so load drifting on a shared machine affects each alike.
  """
  seconds = {name: [] for name in blocks}
  for _ in range(repeats):
    for name, block in blocks.items():
      t0 = time.perf_counter()
      block(steps)
      seconds[name].append(time.perf_counter() - t0)
  return seconds


def environment() -> dict:
  devices = jax.devices()
  return dict(
      date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      device=dict(platform=devices[0].platform, kind=devices[0].device_kind, count=len(devices),
                  processes=jax.process_count(), host_cpus=os.cpu_count()),
      versions=dict(python=platform.python_version(), jax=jax.__version__,
                    jaxlib=jaxlib.__version__, flax=flax.__version__, optax=optax.__version__,
                    numpy=np.__version__),
      # Both change the figures: XLA options, and compiles served from a persistent cache.
      xla_flags=os.environ.get("XLA_FLAGS", ""),
      compilation_cache=jax.config.jax_compilation_cache_dir)


def run_benchmark(config, *, steps: int = 20, repeats: int = 3, warmup: int = 2,
                  device_batches: int = 4, synthetic: bool = False, synthetic_classes: int = 6,
                  synthetic_batches: int = 8) -> dict:
  """Measure the four figures for `config` (BackMix settings from it, forced on/off per row).

  Returns a JSON-able dict: environment, settings, one dict per row of ROWS
  (images_per_second, seconds_per_step, repeat_seconds; steps also compile_seconds,
  peak_memory_bytes, temp_bytes) and `ratios`.
  """
  if min(steps, repeats, device_batches) < 1 or warmup < 0:
    raise validate.ConfigError("steps, repeats and device_batches must be >= 1, warmup >= 0")
  validate.check_config(config)
  on, off = with_backmix(config, True), with_backmix(config, False)
  data = None
  if synthetic:
    data = synthetic_open_set(config.data.image_size, config.data.channels or 3,
                              synthetic_classes, synthetic_batches * config.batch_size, config.seed)
  run = build_run(on, data)
  mesh, stream = run.mesh, run.stream
  host_state = jax.device_get(run.state)

  def fresh_state():  # every measurement donates its own copy of the initial state
    return jax.device_put(host_state, parallel.replicated(mesh))

  def make(cfg):
    return make_run_step(run, config=cfg)

  on_device = [parallel.to_global(b, mesh) for b in stream.batches(0, device_batches)]
  plain_batches = [{k: b[k] for k in ("image", "label", "index")} for b in on_device]
  b = config.batch_size
  results = dict(environment())
  results["command"] = " ".join(sys.argv)
  results["config"] = dict(
      model=config.model, dtype=config.dtype, batch_size=b, framework=config.framework,
      image_shape=list(run.data.train.images.shape[1:]), num_classes=run.data.num_classes,
      train_size=len(run.data.train), data="synthetic" if synthetic else config.data.source,
      backend=resolve_backend(config.data.backend),
      backmix={k: on.backmix[k] for k in ("cam_source", "fg_ratio", "patch_frac", "partner",
                                          "train_on", "cam_batch_stats")})
  results["settings"] = dict(steps=steps, repeats=repeats, warmup=warmup,
                             device_batches=device_batches)
  plain_fn, backmix_fn = make(off), make(on)
  compiled, blocks = {}, {}
  # Compile and warm up one step at a time, reading the allocator's peak after each.
  for name, fn, batches in (("plain_step", plain_fn, plain_batches),
                            ("backmix_step", backmix_fn, on_device)):
    state = fresh_state()
    compiled[name] = compile_step(fn, state, batches[0])
    blocks[name] = step_block(fn, state, batches)
    blocks[name](warmup)
    compiled[name]["peak_memory_bytes"] = peak_memory_bytes()
  total = warmup + steps * repeats
  blocks["pipeline"] = pipeline_block(stream, mesh, total)
  blocks["loop"] = loop_block(backmix_fn, fresh_state(), stream, mesh, total)
  blocks["pipeline"](warmup)
  blocks["loop"](warmup)
  seconds = time_blocks(blocks, steps=steps, repeats=repeats)
  for name, _ in ROWS:
    results[name] = dict(_summary(seconds[name], steps, b), **compiled.get(name, {}))
  step_ips = results["backmix_step"]["images_per_second"]
  results["ratios"] = dict(
      backmix_over_plain_time=results["backmix_step"]["seconds_per_step"]
      / results["plain_step"]["seconds_per_step"],
      loop_over_step=results["loop"]["images_per_second"] / step_ips,
      pipeline_over_step=results["pipeline"]["images_per_second"] / step_ips)
  return results


def _mib(x) -> str:
  return "n/a" if x is None else f"{x / 2**20:,.0f}"


def format_table(results: dict) -> str:
  """Markdown table of one `run_benchmark` result, with its ratios underneath."""
  c, d = results["config"], results["device"]
  lines = [f"{c['model']} | {c['dtype']} | batch {c['batch_size']} | images {c['image_shape']} | "
           f"{c['num_classes']} classes | data {c['data']} ({c['backend']}) | BackMix "
           f"{c['backmix']['cam_source']} | {d['count']} x {d['kind']}",
           "",
           "| what | images/s | ms/step | compile s | peak device MiB |",
           "| --- | ---: | ---: | ---: | ---: |"]
  for key, label in ROWS:
    r = results[key]
    compile_s = f"{r['compile_seconds']:.1f}" if "compile_seconds" in r else ""
    peak = _mib(r["peak_memory_bytes"]) if "peak_memory_bytes" in r else ""
    lines.append(f"| {label} | {r['images_per_second']:,.0f} | {1e3 * r['seconds_per_step']:.2f} "
                 f"| {compile_s} | {peak} |")
  q = results["ratios"]
  lines += ["", f"BackMix/plain step time {q['backmix_over_plain_time']:.2f}x | "
            f"loop/step {q['loop_over_step']:.2f} | pipeline/step {q['pipeline_over_step']:.1f}x"]
  return "\n".join(lines)


def write_json(results: dict, path: str) -> None:
  """`run_benchmark`'s result as indented JSON at `path` (parent directories created)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(results, f, indent=2)


def run_and_report(config, *, json_path: str | None = None, **options) -> dict:
  """`run_benchmark(config, **options)` (with options['sweep'] = R > 0:
  `run_sweep_benchmark(config, R, ...)`), its table printed and, with `json_path`, written
  there as JSON (`python -m experiments.benchmark`). Returns the results."""
  runs = options.pop("sweep", 0)
  if runs:
    results = run_sweep_benchmark(config, runs, **options)
    print(format_sweep_table(results))
  else:
    results = run_benchmark(config, **options)
    print(format_table(results))
  if json_path:
    write_json(results, json_path)
    print(f"wrote {json_path}")
  return results


def run_sweep_benchmark(config, runs: int, *, steps: int = 20, repeats: int = 3,
                        warmup: int = 2, device_batches: int = 4, synthetic: bool = False,
                        synthetic_classes: int = 6, synthetic_batches: int = 8) -> dict:
  """Aggregate images/s of a sweep of `runs` runs (seeds 0..runs-1 of `config`, one program,
  training/sweep.py) against one run of the same config, timed in turns (interleaved), on
  batches already on the device. R runs one after another train at the single run's rate,
  so `speedup` = sweep aggregate / single is what the sweep gains over R x one run.

  Returns a JSON-able dict: environment, settings, `single` and `sweep` (images_per_second,
  seconds_per_step, repeat_seconds, compile_seconds) and `speedup`.
  """
  if runs < 1 or min(steps, repeats, device_batches) < 1 or warmup < 0:
    raise validate.ConfigError("--sweep, steps, repeats and device_batches must be >= 1")
  validate.check_config(config)
  data = None
  if synthetic:
    data = synthetic_open_set(config.data.image_size, config.data.channels or 3,
                              synthetic_classes, synthetic_batches * config.batch_size, config.seed)
  configs = []
  for seed in range(runs):
    c = config.copy_and_resolve_references()
    c.seed = seed
    configs.append(c)
  s = sweep.build_sweep(configs, data)
  run = s.runs[0]
  single_fn = make_run_step(run)
  single_batches = [parallel.to_global(b, run.mesh) for b in run.stream.batches(0, device_batches)]
  sweep_batches = [sweep.to_global(b, s.mesh)
                   for b in sweep.sweep_batches(s.streams, 0, device_batches)]
  mix, fill = sweep.sweep_inputs(s)
  single_state = jax.device_put(jax.device_get(run.state), parallel.replicated(run.mesh))
  stacked = sweep.stack_states(s, [r.state for r in s.runs])

  def sweep_fn(state, batch):
    return s.step_fn(state, batch, mix, fill)

  t0 = time.perf_counter()
  s.step_fn.lower(stacked, sweep_batches[0], mix, fill).compile()
  sweep_compile = time.perf_counter() - t0
  blocks = {"single": step_block(single_fn, single_state, single_batches),
            "sweep": step_block(sweep_fn, stacked, sweep_batches)}
  compiled = {"single": compile_step(single_fn, jax.device_put(jax.device_get(run.state),
                                                                parallel.replicated(run.mesh)),
                                     single_batches[0]),
              "sweep": dict(compile_seconds=sweep_compile)}
  for block in blocks.values():
    block(warmup)
  seconds = time_blocks(blocks, steps=steps, repeats=repeats)
  b = config.batch_size
  results = dict(environment())
  results["command"] = " ".join(sys.argv)
  results["config"] = dict(model=config.model, dtype=config.dtype, batch_size=b, runs=runs,
                           framework=config.framework, backmix=bool(config.backmix.enabled),
                           cam_source=config.backmix.cam_source,
                           data="synthetic" if synthetic else config.data.source)
  results["settings"] = dict(steps=steps, repeats=repeats, warmup=warmup,
                             device_batches=device_batches)
  results["single"] = dict(_summary(seconds["single"], steps, b), **compiled["single"])
  results["sweep"] = dict(_summary(seconds["sweep"], steps, runs * b), **compiled["sweep"])
  results["speedup"] = (results["sweep"]["images_per_second"]
                        / results["single"]["images_per_second"])
  return results


def format_sweep_table(results: dict) -> str:
  """Markdown table of one `run_sweep_benchmark` result."""
  c, d = results["config"], results["device"]
  r = c["runs"]
  single, swept = results["single"], results["sweep"]
  return "\n".join([
      f"{c['model']} | {c['dtype']} | batch {c['batch_size']} | BackMix "
      f"{'on (' + c['cam_source'] + ')' if c['backmix'] else 'off'} | data {c['data']} | "
      f"{d['count']} x {d['kind']}", "",
      "| what | images/s (all runs) | ms/step | compile s |",
      "| --- | ---: | ---: | ---: |",
      f"| one run | {single['images_per_second']:,.0f} | {1e3 * single['seconds_per_step']:.2f} "
      f"| {single['compile_seconds']:.1f} |",
      f"| {r} x one run, one after another | {single['images_per_second']:,.0f} | "
      f"{1e3 * r * single['seconds_per_step']:.2f} | |",
      f"| sweep of {r} runs (one program) | {swept['images_per_second']:,.0f} | "
      f"{1e3 * swept['seconds_per_step']:.2f} | {swept['compile_seconds']:.1f} |", "",
      f"sweep aggregate / (R x one run): {results['speedup']:.2f}x"])
