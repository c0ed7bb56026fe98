"""The commands as a new user meets them: --help lists each command's own flags and the
shared ones (--config, --workdir, --show_config), and --show_config prints the resolved
config, overrides applied, and exits 0 without a workdir. No JAX work runs."""
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = ("--config", "--workdir", "--show_config", "--distributed")


# Every command in experiments/: each goes through commands/cli.py's one parser.
COMMANDS = sorted(f"experiments.{p.stem}" for p in (REPO / "experiments").glob("*.py")
                  if p.stem != "__init__")


def _help(command):
  """stdout of `command --help`, which exits 0: the help was asked for and printed (absl
  exits 1, which the docs reserve for a failure after training started)."""
  r = _run(command, "--help")
  assert "Traceback" not in r.stderr and r.stdout, r.stderr[-2000:]
  assert r.returncode == 0, (command, r.returncode)
  return r.stdout


def _run(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120)


def test_train_help_lists_its_flags_and_show_config_prints_the_resolved_config():
  """train --help names the shared flags (not only under --helpfull) and says how to list
  and override config fields; --show_config prints every field after the overrides (here
  num_epochs and a nested BackMix field) with the override syntax on top, and exits 0."""
  text = _help("experiments.train")
  for flag in SHARED:
    assert flag in text, flag
  assert "--config.<field>=<value>" in text and "--show_config lists" in text

  r = _run("experiments.train", "--config", "configs/digits.py", "--config.num_epochs=3",
           "--config.backmix.fg_ratio=0.5", "--show_config")
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.splitlines()
  assert lines[0] == "# resolved config of --config=configs/digits.py"
  assert "--config.<field>=<value>" in lines[1]
  assert "num_epochs: 3" in lines and "  fg_ratio: 0.5" in lines
  assert "dataset: digits" in lines
  assert r.stderr.strip() == ""


@pytest.mark.parametrize("command, own", [
    ("experiments.evaluate", ("--step", "--arpl_compat", "--unknown", "--out")),
    ("experiments.trials", ("--trials", "--train", "--baseline")),
    ("experiments.visualize", ("--num", "--out")),
    ("experiments.benchmark", ("--steps", "--repeats", "--synthetic", "--json")),
])
def test_every_command_help_lists_its_own_and_the_shared_flags(command, own):
  text = _help(command)
  for flag in own + SHARED:
    assert flag in text, (command, flag)


@pytest.mark.slow
def test_fgbg_examples_draws_the_diagnostic_from_a_config(tmp_path):
  """experiments.fgbg_examples --help lists its flags; with a small fgbg_digits config it
  composes the benchmark and writes the PNG it names (no JAX work)."""
  text = _help("experiments.fgbg_examples")
  for flag in ("--config", "--config2", "--out", "--num"):
    assert flag in text
  out = tmp_path / "examples.png"
  r = _run("experiments.fgbg_examples", "--config", "configs/fgbg_digits.py",
           "--config.data.composite.max_train_per_class=4",
           "--config.data.composite.max_test_per_condition=8", "--num", "3", "--out", str(out))
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip() == f"wrote {out}" and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_exits_0(command):
  """--help and --helpfull of every command print the help and exit 0 (absl: 1)."""
  assert "--config" in _help(command)
  r = _run(command, "--helpfull")
  assert r.returncode == 0 and "--config" in r.stdout, (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_positional_arguments_in_one_line(command, tmp_path):
  """absl leaves a positional argument to main, which dropped it: `--config.backmix.enabled
  False` (a space, not '=') trained with BackMix on, and `train ... extra_arg` ran in full.
  Every command refuses both in one line, exit 2, before any work; the first says how to
  write the flag."""
  r = _run(command, "--config=configs/digits.py", f"--workdir={tmp_path}/run",
           "--config.backmix.enabled", "False")
  assert (r.returncode, r.stderr.strip()) == (
      2, "error: unexpected argument 'False' after --config.backmix.enabled: write "
      "--config.backmix.enabled=False (a flag's value follows '='; a boolean flag alone "
      "means True)"), r.stderr[-2000:]
  r = _run(command, "--config=configs/digits.py", f"--workdir={tmp_path}/run",
           "extra_arg")
  assert r.returncode == 2 and r.stderr.strip().splitlines() == [
      "error: unexpected argument 'extra_arg': the commands take flags only "
      "(--<name>=<value>; --help lists them)"], r.stderr[-2000:]
  assert r.stdout == "" and not (tmp_path / "run").exists()


def test_sigterm_outside_training_and_warnings_end_in_one_line_each(tmp_path):
  """A command stopped by SIGTERM while it works (evaluating, drawing; training saves and
  stops on its own) ends through the commands' one exit path: one 'error:' line, exit 143
  (128 + SIGTERM, as a shell reports it), no traceback; a warning before it is one line too.
  The real run_main with a main that warns and is then terminated mid-work."""
  script = tmp_path / "terminated.py"
  script.write_text(
      "import os, signal, time, warnings\n"
      "from backmix_jax.commands import cli\n"
      "def main(argv):\n"
      "  warnings.warn('checkpoint at step 7 is unreadable')\n"
      "  os.kill(os.getpid(), signal.SIGTERM)\n"
      "  time.sleep(60)\n"
      "cli.run_main(main, require_workdir=False)\n")
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, str(script), "--config=configs/digits.py"], cwd=REPO,
                     env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 143 and r.stderr.strip().splitlines() == [
      "warning: checkpoint at step 7 is unreadable",
      "error: stopped by SIGTERM before the command finished; what it writes at the end was "
      "not written: run the same command again"], (r.returncode, r.stderr[-2000:])
