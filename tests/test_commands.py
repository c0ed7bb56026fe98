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


def _help(command):
  """stdout of `command --help` (absl ends --help with exit code 1, by its own convention)."""
  r = _run(command, "--help")
  assert "Traceback" not in r.stderr and r.stdout, r.stderr[-2000:]
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
