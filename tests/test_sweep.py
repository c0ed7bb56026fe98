"""Sweeps (training/sweep.py): R runs as one jitted program train each run as it trains
alone, and a sweep whose runs cannot share one program is refused in one line."""
import functools
import json

import jax
import numpy as np
import pytest

from backmix_jax.training import sweep as sw
from backmix_jax.training.errors import ConfigError
from tests.helpers import flat_params, quick_config, run_steps

STEPS = 3


def _three_runs():
  """2 seeds x BackMix on/off, mixed: seed 0 on, seed 1 off, seed 1 on (digits, cnn_small,
  4 virtual devices from conftest)."""
  return [quick_config(seed=0), quick_config(seed=1, **{"backmix.enabled": False}),
          quick_config(seed=1)]


@functools.lru_cache(maxsize=None)
def _alone(i):
  """Run i of `_three_runs` trained alone for STEPS steps: (state, per-step metrics); both
  sweep variants compare with the same single runs."""
  _, state, history = run_steps(_three_runs()[i], STEPS)
  return state, history


def _sweep_steps(configs, unroll):
  s = sw.build_sweep(configs, unroll=unroll)
  mix, fill = sw.sweep_inputs(s)
  stacked, history = sw.stack_states(s, [r.state for r in s.runs]), []
  for batch in sw.sweep_batches(s.streams, 0, STEPS):
    stacked, metrics = s.step_fn(stacked, sw.to_global(batch, s.mesh), mix, fill)
    history.append(jax.device_get(metrics))
  return s, stacked, history


@pytest.mark.slow
@pytest.mark.parametrize("unroll", [True, False])
def test_each_run_of_a_sweep_trains_as_it_would_alone(unroll):
  """After STEPS steps every run's parameters, batch statistics and metrics equal those of the
  run trained alone: bit for bit with the runs unrolled in one program (own stream, RNG,
  state, BackMix off as mix_prob=0 giving the clean images), and close with vmap, whose
  batched convolutions sum in another order: a ~1e-6 gradient difference that Adam's
  normalised first steps scale up, on a parameter whose gradient is near zero, to as much as
  a step (about the learning rate; 2.04e-3 seen on one machine, on 2 of 112,544 entries).
  So: no entry further apart than learning rate x STEPS, and the median entry within 5e-5
  (seen: 6e-6 at most; a run trained on another stream or key differs by about a step)."""
  configs = _three_runs()
  s, stacked, history = _sweep_steps(configs, unroll)
  assert s.size == 3 and sorted({r.config.backmix.enabled for r in s.runs}) == [False, True]
  for i in range(len(configs)):
    alone, alone_history = _alone(i)
    mine = sw.run_state(s, stacked, i)
    assert mine.bank.shape == alone.bank.shape and int(mine.step) == STEPS
    if unroll:
      np.testing.assert_array_equal(flat_params(mine), flat_params(alone))
      for a, b in zip(jax.tree.leaves(mine.batch_stats), jax.tree.leaves(alone.batch_stats)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
      for t in range(STEPS):
        for k in ("loss", "accuracy", "grad_norm"):
          assert history[t][k][i] == alone_history[t][k], (i, t, k)
    else:
      diff = np.abs(flat_params(mine) - flat_params(alone))
      assert diff.max() <= configs[i].optimizer.learning_rate * STEPS, (i, diff.max())
      assert np.median(diff) <= 5e-5, (i, np.median(diff))
      for t in range(STEPS):
        assert history[t]["loss"][i] == pytest.approx(alone_history[t]["loss"], abs=1e-4)
  # The runs really differ (not one run copied three times).
  assert not np.array_equal(flat_params(sw.run_state(s, stacked, 1)),
                            flat_params(sw.run_state(s, stacked, 2)))


@pytest.mark.parametrize("change, field", [({"batch_size": 16}, "batch_size"),
                                           ({"model": "classifier32"}, "model"),
                                           ({"num_epochs": 2}, "num_epochs"),
                                           ({"optimizer.learning_rate": 0.1},
                                            "optimizer.learning_rate")])
def test_a_sweep_of_runs_that_differ_elsewhere_is_refused_naming_the_field(change, field):
  """Only seed, trial/known classes and BackMix on/off may differ; anything else is refused
  up front, in one line naming the field."""
  with pytest.raises(ConfigError, match=f"must share {field}:") as e:
    sw.check_sweep([quick_config(), quick_config(seed=3, **change)])
  assert "\n" not in str(e.value)
  sw.check_sweep([quick_config(), quick_config(seed=3, trial=1, **{"backmix.enabled": False})])


def test_mix_and_clean_cannot_mix_on_and_off():
  """train_on='mix+clean' doubles only the BackMix runs' batch: refused with on/off mixed."""
  configs = [quick_config(**{"backmix.train_on": "mix+clean"}),
             quick_config(**{"backmix.train_on": "mix+clean", "backmix.enabled": False})]
  with pytest.raises(ConfigError, match="train_on"):
    sw.check_sweep(configs)


@pytest.mark.slow
def test_sweep_records_each_run_and_a_resumed_sweep_ends_as_the_uninterrupted_one(tmp_path):
  """train_sweep, one sweep trained three ways (the trainings are shared: each costs a
  compile):
  - each run's workdir holds config.json, identity.json, metrics.jsonl, metrics.json of the
    final step and a final checkpoint that restores into the single run;
  - the same call again finds every run finished (nothing trained), same metrics;
  - a sweep whose runs kept only their checkpoints up to step 10 (killed after it) resumes
    there and ends with the same parameters, bit for bit, and the same metrics as the sweep
    that was never interrupted (each run's params, optimiser, BN statistics, bank, RNG and
    data position come back from its own checkpoint)."""
  import shutil
  from backmix_jax.training.checkpointing import Checkpointer
  from backmix_jax.training.run import build_run
  configs = [quick_config(seed=0, checkpoint_every_steps=10, keep_checkpoints=100),
             quick_config(seed=1, checkpoint_every_steps=10, keep_checkpoints=100,
                          **{"backmix.enabled": False})]
  full = [tmp_path / "full_on", tmp_path / "full_off"]
  part = [tmp_path / "part_on", tmp_path / "part_off"]
  m_full = sw.train_sweep(configs, full)
  for config, d in zip(configs, full):
    for name in ("config.json", "identity.json", "metrics.jsonl", "metrics.json"):
      assert (d / name).exists(), (d, name)
    saved = json.loads((d / "metrics.json").read_text())
    assert saved["run"]["backmix"] is config.backmix.enabled
    assert saved["step"] == saved["run"]["total_steps"] == 754 // 32
  again = sw.train_sweep(configs, full)
  for a, b in zip(m_full, again):
    assert a["auroc"] == b["auroc"] and a["acc"] == b["acc"]
  for f, p in zip(full, part):
    (p / "checkpoints").mkdir(parents=True)
    shutil.copytree(f / "checkpoints" / "10", p / "checkpoints" / "10")
  m_part = sw.train_sweep(configs, part)
  for config, f, p, a, b in zip(configs, full, part, m_full, m_part):
    run = build_run(config)
    states = []
    for d in (f, p):
      ckpt = Checkpointer(str(d))
      try:
        state, step = ckpt.restore(run.state, run.signature)
        states.append(state)
      finally:
        ckpt.close()
      assert step == 754 // 32 and state.bank.shape == run.state.bank.shape
    np.testing.assert_array_equal(flat_params(states[0]), flat_params(states[1]))
    assert a["auroc"] == b["auroc"] and a["oscr"] == b["oscr"]
