"""`python -m experiments.evaluate`: restores a checkpoint and writes the same evaluation that
training writes at its end (metrics.json, metrics.md, plots); bad workdirs end in one line."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from backmix_jax.evaluation.metrics import METRIC_KEYS, open_set_metrics
from backmix_jax.training.checkpointing import CheckpointError
from configs import digits

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small enough to train in seconds: 16 px, 754 training images / 128 = 5 steps, a checkpoint
# every 2 steps (2, 4 and the final 5).
OVERRIDES = {"model": "cnn_small", "num_epochs": 1, "batch_size": 128, "eval_batch_size": 128,
             "data.image_size": 16, "data.backend": "numpy", "checkpoint_every_steps": 2,
             "keep_checkpoints": 5, "log_every_steps": 100}
FINAL_STEP = 5
PLOTS = ("roc.png", "score_histogram.png", "oscr.png")


def digits_config(**extra):
  """configs/digits.py with OVERRIDES and `extra` (dotted keys) applied."""
  c = digits.get_config()
  for key, value in {**OVERRIDES, **extra}.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def config_flags(**extra) -> list[str]:
  """The same config as `digits_config(**extra)`, as command-line flags."""
  return ["--config", os.path.join(REPO, "configs", "digits.py")] + [
      f"--config.{k}={v}" for k, v in {**OVERRIDES, **extra}.items()]


@pytest.fixture(scope="module")
def compile_cache():
  """The environment for subprocesses: it carries the session's persistent XLA compilation
  cache (set up in conftest.py), so the CLI runs load programs instead of compiling them."""
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compile_cache):
  """A workdir trained to the end; returns (workdir, the metrics.json training wrote, its
  per-sample eval_outputs.npz as a dict). Tests may overwrite the files in the workdir."""
  from backmix_jax.training.train import train_and_evaluate
  workdir = tmp_path_factory.mktemp("run")
  train_and_evaluate(digits_config(), str(workdir))
  with open(workdir / "metrics.json") as f, np.load(workdir / "eval_outputs.npz") as z:
    return workdir, json.load(f), dict(z)


def run_cli(module: str, workdir, *args, env, config=True, **extra) -> subprocess.CompletedProcess:
  """`module` on `workdir` with the training config as flags (config=False: no --config, so
  the command takes the workdir's recorded one)."""
  return subprocess.run(
      [sys.executable, "-m", module, "--workdir", str(workdir),
       *(config_flags(**extra) if config else []), *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _remove_outputs(workdir):
  for name in ("metrics.json", "metrics.md", "eval_outputs.npz") + PLOTS:
    if (workdir / name).exists():
      os.remove(workdir / name)


def test_training_writes_markdown_and_plots(trained):
  """The final evaluation inside training writes metrics.md and the three plots too, and its
  metrics.json names what was evaluated."""
  workdir, metrics, _ = trained
  for name in ("metrics.md", "eval_outputs.npz") + PLOTS:
    assert (workdir / name).stat().st_size > 0, name
  assert metrics["step"] == FINAL_STEP
  assert metrics["run"]["trial"] == 0 and metrics["run"]["total_steps"] == FINAL_STEP
  assert metrics["run"]["protocol"] == "arpl" and not metrics["run"]["arpl_compat"]


def test_evaluate_newest_checkpoint_equals_training_evaluation(trained, compile_cache):
  """Without --step the newest (final) checkpoint is restored; without --config the config
  training recorded is used; metrics.json equals the one training wrote for that step,
  metrics.md names protocol, trial, score and step, the three plots are PNGs, and stdout says
  what is evaluated and ends with the table."""
  workdir, train_metrics, _ = trained
  _remove_outputs(workdir)
  r = run_cli("experiments.evaluate", workdir, env=compile_cache, config=False)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(workdir / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics == train_metrics
  md = (workdir / "metrics.md").read_text()
  assert "arpl split protocol" in md and "trial 0" in md
  assert f"score {metrics['score']}, step {FINAL_STEP}" in md
  for name in PLOTS:
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
  out = r.stdout
  assert f"checkpoint step {FINAL_STEP} (final)" in out
  assert f"test known {metrics['num_known']} + unknown {metrics['num_unknown']}" in out
  last = out.strip().splitlines()[-1]
  assert last.startswith("| digits arpl trial 0") and f"{100 * metrics['auroc']:.2f}" in last
  assert r.stderr.strip() == ""


def test_step_flag_picks_an_older_checkpoint(trained, compile_cache):
  """--step 2 evaluates the checkpoint of step 2, whose scores differ from the final ones,
  into metrics_step2.* beside the final record, which stays as training wrote it."""
  workdir, train_metrics, final_outputs = trained
  r = run_cli("experiments.evaluate", workdir, "--step", "2", env=compile_cache)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(workdir / "metrics_step2.json") as f:
    metrics = json.load(f)
  assert metrics["step"] == 2 and metrics["run"]["total_steps"] == FINAL_STEP
  assert "checkpoint step 2 (of 5)" in r.stdout
  assert "step 2" in (workdir / "metrics_step2.md").read_text()
  with open(workdir / "metrics.json") as f:
    assert json.load(f) == train_metrics
  # Had the final weights been restored, the scores would be equal.
  with np.load(workdir / "eval_outputs_step2.npz") as z:
    assert z["known_scores"].shape == final_outputs["known_scores"].shape
    assert not np.array_equal(z["known_scores"], final_outputs["known_scores"])


def test_arpl_compat_metrics_follow_arpl_conventions(trained):
  """evaluate_checkpoint(arpl_compat=True) records the mode and computes the ARPL-mode metrics
  of the same per-sample outputs."""
  from backmix_jax.commands.evaluate import evaluate_checkpoint
  workdir, train_metrics, _ = trained
  metrics = evaluate_checkpoint(digits_config(), str(workdir), arpl_compat=True)
  assert metrics["run"]["arpl_compat"] and metrics["step"] == FINAL_STEP
  with np.load(workdir / "eval_outputs.npz") as z:
    expect = open_set_metrics(z["known_scores"], z["known_preds"], z["known_labels"],
                              z["unknown_scores"], arpl_compat=True,
                              unknown_preds=z["unknown_preds"],
                              num_classes=len(metrics["run"]["known_classes"]))
  for k in METRIC_KEYS:
    assert metrics[k] == pytest.approx(expect[k], abs=1e-12), k
  assert metrics["acc"] == train_metrics["acc"]
  assert "ARPL-compatible" in (workdir / "metrics_arpl.md").read_text()
  assert "ARPL-compatible" not in (workdir / "metrics.md").read_text()


def _unknown_npz(path, images):
  np.savez(path, test_images=images, test_labels=np.zeros(len(images), np.int64))
  return f"npz:{path}"


def test_unknown_sets_each_get_a_row_and_exact_auroc(trained, tmp_path, capsys):
  """--unknown scores the known test set against each extra set (here 20 px grey noise,
  resized and turned RGB, and flat colour images) in its own row plus their mean; each
  AUROC equals sklearn's roc_auc_score on the saved per-sample scores. The printout ends
  with the open-set table and then this one, as training's does."""
  from sklearn.metrics import roc_auc_score
  from backmix_jax.commands.evaluate import evaluate_checkpoint
  workdir, _, _ = trained
  rng = np.random.default_rng(0)
  noise = _unknown_npz(tmp_path / "noise.npz", rng.integers(0, 256, (40, 20, 20, 1), np.uint8))
  flat = _unknown_npz(tmp_path / "flat.npz", np.repeat(
      rng.integers(0, 256, (30, 1, 1, 3), np.uint8), 16, 1).repeat(16, 2))
  out = tmp_path / "out"
  metrics = evaluate_checkpoint(digits_config(), str(workdir), unknown=f"{noise},{flat}",
                                out=str(out))
  sets = metrics["unknown_sets"]
  with np.load(out / "eval_outputs_per_set_unknown.npz") as z:
    assert list(z["sources"]) == [noise, flat]
    for i, spec in enumerate((noise, flat)):
      known, unknown = z[f"{i}_known_scores"], z[f"{i}_unknown_scores"]
      assert len(unknown) == (40, 30)[i]
      expect = roc_auc_score(np.r_[np.ones(len(known)), np.zeros(len(unknown))],
                             np.r_[known, unknown])
      assert sets[f"{spec}/auroc"] == pytest.approx(expect, abs=1e-12), spec
  assert sets["mean/auroc"] == pytest.approx((sets[f"{noise}/auroc"] + sets[f"{flat}/auroc"]) / 2)
  md = (out / "metrics_unknown.md").read_text()
  assert f"| {noise} |" in md and f"| {flat} |" in md and "| mean |" in md
  printed = capsys.readouterr().out
  assert "| AUROC |" in printed.split("| mean |")[0]  # the open-set table comes first
  assert f"| {noise} |" in printed and "| mean |" in printed
  assert (out / "roc_per_set_unknown.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["missing_file", "not_an_image_array"])
def test_bad_unknown_set_exits_2_and_writes_nothing(case, trained, tmp_path, compile_cache):
  """An unknown set that cannot be read, or whose images cannot be brought to the run's
  shape, ends in one line and exit code 2 with the workdir unchanged."""
  workdir, _, _ = trained
  if case == "missing_file":
    spec = f"npz:{tmp_path / 'absent.npz'}"
  else:
    spec = f"npz:{tmp_path / 'bad.npz'}"
    np.savez(tmp_path / "bad.npz", test_images=np.zeros((4, 5), np.uint8),
             test_labels=np.zeros(4, np.int64))
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*")}
  r = run_cli("experiments.evaluate", workdir, f"--unknown={spec}", env=compile_cache)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: unknown set"), r.stderr
  assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*")} == before


@pytest.mark.parametrize("case", ["no_checkpoint", "other_model", "other_split", "missing_step",
                                  "no_config_anywhere"])
def test_bad_workdir_exits_2_with_one_line(case, trained, tmp_path, compile_cache):
  """No checkpoint, a checkpoint of another model (cnn_small evaluated as classifier32) or of
  another class split (trial 1), a step that is not there, or neither --config nor a
  recorded config: exit code 2, one line on stderr naming the problem, no traceback,
  nothing created."""
  workdir, _, _ = trained
  args, extra, message = {
      "no_checkpoint": ((), {}, "no checkpoint in"),
      "other_model": ((), {"model": "classifier32"},
                      "model='cnn_small' in training, 'classifier32' here"),
      "other_split": ((), {"trial": 1}, "trial=0 in training, 1 here"),
      "missing_step": (("--step", "3"), {}, "no checkpoint at step 3 "),
      "no_config_anywhere": ((), {}, "records no training config (config.json)"),
  }[case]
  target = tmp_path / "empty" if case in ("no_checkpoint", "no_config_anywhere") else workdir
  r = run_cli("experiments.evaluate", target, *args, env=compile_cache,
              config=case != "no_config_anywhere", **extra)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
  if case in ("no_checkpoint", "no_config_anywhere"):
    assert not target.exists()
  if case == "missing_step":
    assert lines[0].endswith("available: [2, 4, 5]")


def test_checkpoint_signature_is_checked_without_a_training_config(trained, tmp_path):
  """Without config.json to compare with, restoring still refuses a checkpoint whose model
  differs from the config's (here a 3-class head for the 6-class checkpoint)."""
  from backmix_jax.commands.evaluate import evaluate_checkpoint
  workdir, _, _ = trained
  shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
  with pytest.raises(CheckpointError, match="holds a different model .*num_classes"):
    evaluate_checkpoint(digits_config(known_classes=(0, 1, 2)), str(tmp_path))


def _listing(root):
  """Every path under `root` with its mtime and size: what a reader must leave as it was."""
  return {str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.lstat().st_size)
          for p in root.rglob("*")}


def test_evaluate_out_refuses_another_runs_workdir(trained, tmp_path, compile_cache):
  """--out naming another run's workdir (its record and metrics): one line, exit code 2,
  its files untouched; evaluate never overwrites another run's metrics.json."""
  workdir, _, _ = trained
  other = tmp_path / "other"
  shutil.copytree(workdir, other)
  before = _listing(other)
  r = run_cli("experiments.evaluate", workdir, f"--out={other}", env=compile_cache)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "holds another run's record (identity.json, config.json" in lines[0]
  assert _listing(other) == before


def test_damaged_newest_checkpoint_is_reported_and_the_workdir_left_as_it_was(
    trained, tmp_path, compile_cache):
  """Evaluation reads a workdir, never changes it: with the newest checkpoint damaged,
  evaluate --out (what README offers for a read-only workdir) ends in one line naming the
  step and the older steps, exit code 2, without Orbax's or Python's warnings, and nothing
  in the workdir is renamed or written; --step of an older one then evaluates into --out."""
  workdir, _, _ = trained
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  for path in (run / "checkpoints" / str(FINAL_STEP) / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"\0garbage")
  before = _listing(run)
  r = run_cli("experiments.evaluate", run, f"--out={tmp_path / 'out'}", env=compile_cache)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith(f"error: checkpoint at step {FINAL_STEP} in ") and \
      "is unreadable" in lines[0] and "steps [2, 4]" in lines[0], lines[0]
  assert _listing(run) == before
  r = run_cli("experiments.evaluate", run, "--step", "4", f"--out={tmp_path / 'out'}",
              env=compile_cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / "out" / "metrics_step4.json").exists() and _listing(run) == before


def test_refused_override_leaves_the_run_record_as_it_was(trained, tmp_path):
  """resume=override with a model the checkpoint refuses: refused (the checkpoint holds
  another model), and history.jsonl is not written, so the original config is still the
  run's for training and evaluate."""
  from backmix_jax.commands.evaluate import check_trained_config
  from backmix_jax.training.train import train_and_evaluate
  from backmix_jax.training.workdir import claim
  workdir, _, _ = trained
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  with pytest.raises(CheckpointError, match="holds a different model"):
    train_and_evaluate(digits_config(model="classifier32", resume="override"), str(run))
  assert not (run / "history.jsonl").exists()
  check_trained_config(digits_config(), str(run))
  with claim(digits_config(), str(run)) as held:
    held.accept()
