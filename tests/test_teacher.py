"""The CAM teacher (training/teacher.py, backmix.cam_source='teacher'): a finished run's
network, fixed, gives the CAMs the student's train step masks with. One 1-epoch BackMix-off
run of the digits config is the teacher of every test here."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax.training.checkpointing import CheckpointError
from tests.helpers import fresh_state, quick_config

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

SIZE = {"data.image_size": 16, "batch_size": 128}  # few steps: the teacher trains in seconds


def _student(teacher_dir, **overrides):
  return quick_config(**SIZE, seed=1, **{"backmix.cam_source": "teacher",
                                         "backmix.teacher": teacher_dir, **overrides})


def _with_masks(config):
  """The digits open set with a true foreground for every training image (bright pixels)."""
  from backmix_jax.data.openset import load_open_set
  from backmix_jax.data.core import ArraySplit
  data = load_open_set(config)
  t = data.train
  return dataclasses.replace(data, train=ArraySplit(t.images, t.labels, t.images[..., 0] > 64))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """(workdir, its final variables) of a finished BackMix-off run."""
  from backmix_jax.training.checkpointing import Checkpointer
  from backmix_jax.training.run import build_run
  from backmix_jax.training.train import train_and_evaluate
  workdir = str(tmp_path_factory.mktemp("teacher"))
  config = quick_config(**SIZE, **{"backmix.enabled": False})
  train_and_evaluate(config, workdir)
  run = build_run(config)
  ckpt = Checkpointer(workdir)
  try:
    state, _ = ckpt.restore(run.state, run.signature)
  finally:
    ckpt.close()
  return workdir, jax.device_get(run.variables(state))


@pytest.fixture(scope="module")
def student_run(teacher):
  from backmix_jax.training.run import build_run
  config = _student(teacher[0])
  return build_run(config, _with_masks(config))


def _assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_student_holds_the_teachers_final_weights_beside_its_own(teacher, student_run):
  """build_run puts the teacher's newest checkpoint in state.teacher; the student's own
  parameters are a fresh initialisation (another seed), not the teacher's."""
  _assert_trees_equal(student_run.state.teacher, teacher[1])
  own = jax.tree.leaves(student_run.state.params)
  assert any(not np.array_equal(x, y) for x, y in zip(own, jax.tree.leaves(teacher[1]["params"])))


def test_teacher_mode_mixes_as_live_mode_would_under_the_teachers_weights(teacher, student_run):
  """The mixed batch equals live mode's with the teacher's variables in place of the
  network's, and differs from live mode's under the student's own weights."""
  from backmix_jax.data import augment
  from backmix_jax.training.step import backmix_images
  run = student_run
  cfg = run.config
  images = augment.normalize(jnp.asarray(run.data.train.images[:32]), cfg.data.normalize)
  labels = jnp.asarray(run.data.train.labels[:32], jnp.int32)
  live = cfg.backmix.copy_and_resolve_references()
  live.cam_source, live.teacher = "live", ""

  def mix(state, bcfg):
    return np.asarray(backmix_images(jax.random.key(3), run.eval_model, run.framework, state,
                                     images, labels, {}, bcfg, cfg.data.normalize,
                                     run.stream.steps_per_epoch, run.fill)[0])

  with_teacher = mix(run.state, cfg.backmix)
  as_teacher = run.state.replace(teacher={}, **teacher[1])
  np.testing.assert_array_equal(with_teacher, mix(as_teacher, live))
  assert not np.array_equal(with_teacher, mix(run.state.replace(teacher={}), live))


def test_cam_grid_resamples_the_cams_the_step_masks_with(student_run):
  """backmix.cam_grid=8 gives the step 8x8 CAMs, the bilinear resampling of the network's
  own-grid CAMs of the same (teacher) forward."""
  from backmix_jax import backmix
  from backmix_jax.data import augment
  from backmix_jax.cams import batch_cams
  run = student_run
  x = augment.normalize(jnp.asarray(run.data.train.images[:8]), run.config.data.normalize)
  labels = jnp.asarray(run.data.train.labels[:8], jnp.int32)
  bcfg = run.config.backmix.copy_and_resolve_references()
  native = batch_cams(run.eval_model, run.framework, run.state, x, labels, bcfg)
  bcfg.cam_grid = 8
  fine = batch_cams(run.eval_model, run.framework, run.state, x, labels, bcfg)
  assert native.shape[1] < 8 and fine.shape == (8, 8, 8)
  np.testing.assert_allclose(fine, backmix.resample_cams(native, 8), rtol=1e-6)


def test_train_steps_leave_the_teacher_fixed_and_checkpoints_leave_it_out(student_run, tmp_path):
  """Two data-parallel steps change the student's parameters, not the teacher's; a saved
  checkpoint has no teacher entry, and restoring it keeps the template's teacher."""
  import flax
  from backmix_jax import parallel
  from backmix_jax.training.checkpointing import Checkpointer
  from tests.helpers import train_step_for
  run = student_run
  step_fn = train_step_for(run)
  state = fresh_state(run)
  for batch in run.stream.batches(0, 2):
    state, metrics = step_fn(state, parallel.to_global(batch, run.mesh))
  assert int(state.step) == 2 and bool(metrics["finite"])
  _assert_trees_equal(state.teacher, run.state.teacher)
  assert "teacher" not in flax.serialization.to_state_dict(state)
  ckpt = Checkpointer(str(tmp_path))
  try:
    ckpt.save(2, state, run.signature, force=True)
    ckpt.wait()
    restored, step = ckpt.restore(run.state, run.signature)
  finally:
    ckpt.close()
  assert step == 2
  _assert_trees_equal(restored.params, state.params)
  _assert_trees_equal(restored.teacher, run.state.teacher)


def test_cam_localization_reports_the_teachers_cams_beside_the_networks_own(student_run):
  """In teacher mode the evaluator adds teacher_* rows (what the step masked with) to the
  live_* rows (the student's own CAMs); they differ, since the networks do."""
  from backmix_jax.evaluation.evaluators import build_evaluators
  run = student_run
  run.config.evals.cam_localization = dict(every_epochs=0, probe_size=64)
  try:
    (evaluator, _), = [v for k, v in build_evaluators(run, None).items() if k == "cam_localization"]
  finally:
    del run.config.evals["cam_localization"]
  metrics = evaluator.evaluate(run.state)
  for src in ("live", "teacher"):
    assert 0.0 <= metrics[f"train/{src}_cell_precision"] <= 1.0
  assert metrics["train/teacher_cell_precision"] != metrics["train/live_cell_precision"]
  assert "| train | teacher |" in evaluator.markdown(metrics)


@pytest.mark.parametrize("overrides, words", [
    ({"known_classes": (0, 1, 2, 3, 4, 5)}, "known_classes="),
    ({"model": "classifier32"}, "model='cnn_small' there, 'classifier32' here"),
    ({"data.normalize": "unit"}, "data.normalize="),
])
def test_a_teacher_of_another_run_is_refused_naming_the_field(teacher, overrides, words):
  """Data, classes, input preparation and network must match; the one line names the field."""
  from backmix_jax.training.teacher import teacher_config
  with pytest.raises(CheckpointError, match=words):
    teacher_config(_student(teacher[0], **overrides))


def test_an_unfinished_teacher_is_refused(teacher, tmp_path):
  """A teacher whose newest checkpoint is not its schedule's last step is refused by name
  (its CAMs could still change under the student)."""
  import shutil
  from backmix_jax.training.run import build_run
  copy = tmp_path / "unfinished"
  shutil.copytree(teacher[0], copy)
  (final,) = [p for p in (copy / "checkpoints").iterdir() if p.name.isdigit()]
  final.rename(final.with_name(str(int(final.name) - 1)))
  with pytest.raises(CheckpointError, match=f"is not finished: its newest checkpoint is step "
                                            f"{int(final.name) - 1} of {final.name}"):
    build_run(_student(str(copy)))


def test_teacher_settings_are_checked_before_any_data(teacher, tmp_path):
  """cam_source='teacher' without a teacher, a teacher under another cam_source, and a
  teacher workdir without checkpoints are each refused in one sentence; a BackMix-off
  teacher of a BackMix-on student is accepted (whether it mixed is not what its weights mean)."""
  from backmix_jax.training import validate
  from backmix_jax.training.teacher import teacher_config
  assert any("needs backmix.teacher" in p
             for p in validate.problems(_student("")))
  assert any("has no effect unless cam_source='teacher'" in p for p in validate.problems(
      quick_config(**{"backmix.teacher": teacher[0]})))
  assert validate.problems(_student(teacher[0])) == []
  with pytest.raises(CheckpointError, match="holds no checkpoints"):
    teacher_config(_student(str(tmp_path)))
  assert teacher_config(_student(teacher[0])).backmix.enabled is False
