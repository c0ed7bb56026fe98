"""`checkpoint_steps`: one listing of a workdir's committed checkpoints, used by the workdir
record, evaluation, trials and the teacher (it once existed twice, one listing folders, one
opening Orbax)."""
from backmix_jax.commands import evaluate, trials
from backmix_jax.training import teacher, workdir


def test_lists_committed_steps_only_and_creates_nothing(tmp_path):
  """Bare step folders, sorted numerically; unfinished (Orbax's tmp suffix) and quarantined
  (.corrupt) ones and stray files are left out; a workdir without checkpoints/ gives [] and
  is not created."""
  root = tmp_path / "checkpoints"
  for name in ("10", "2", "5.corrupt", "7.orbax-checkpoint-tmp-123"):
    (root / name).mkdir(parents=True)
  (root / "notes.txt").write_text("x")
  assert workdir.checkpoint_steps(str(tmp_path)) == [2, 10]
  missing = tmp_path / "missing"
  assert workdir.checkpoint_steps(str(missing)) == []
  assert not missing.exists()


def test_every_caller_uses_the_one_function():
  for module in (evaluate, trials, teacher):
    assert module.checkpoint_steps is workdir.checkpoint_steps, module.__name__
