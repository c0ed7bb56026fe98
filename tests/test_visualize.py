"""experiments.visualize: a PNG grid from a trained checkpoint, whose panels show exactly
what BackMix did (one box changed per image, filled from the masked partner)."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from backmix_jax.training.checkpointing import CheckpointError
from backmix_jax.commands import visualize as vis
from tests.helpers import quick_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config():
  # 16 px and batch 128: 5 steps per epoch, cheap to train and restore.
  return quick_config(**{"data.image_size": 16, "batch_size": 128})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """digits, cnn_small, 1 epoch, trained once for the module."""
  from backmix_jax.training.train import train_and_evaluate
  path = tmp_path_factory.mktemp("vis") / "run"
  train_and_evaluate(_config(), str(path))
  return path


@pytest.fixture(scope="module")
def grid(workdir):
  out = workdir / "grid.png"
  return vis.visualize(_config(), str(workdir), num=5, out=str(out))


@pytest.mark.slow
def test_writes_a_png_with_one_row_per_sample(grid):
  """The file is a PNG, 5 columns wide and 5 rows high (square panels), at the given path."""
  import matplotlib.image
  path, panels = grid
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  img = matplotlib.image.imread(path)
  assert img.shape[0] == img.shape[1] == 5 * 170  # 1.7 in per panel at 100 dpi
  assert len(panels["images"]) == 5 and panels["step"] == 5  # 754 // 128 steps, 1 epoch


@pytest.mark.slow
def test_mixed_differs_from_target_only_inside_the_box(grid):
  """Outside each target box the mixed image is the target bit for bit; inside, it is the
  masked partner's source box; at least one box actually changed pixels."""
  _, p = grid
  size, patch = p["images"].shape[1], p["patch"]
  assert patch == round(0.25 * size)
  changed = 0
  for i in range(len(p["images"])):
    (tr, tc), (sr, sc) = p["target_box"][i], p["source_box"][i]
    inside = np.zeros((size, size), bool)
    inside[tr:tr + patch, tc:tc + patch] = True
    np.testing.assert_array_equal(p["mixed"][i][~inside], p["images"][i][~inside])
    np.testing.assert_array_equal(p["mixed"][i][tr:tr + patch, tc:tc + patch],
                                  p["masked"][i][sr:sr + patch, sc:sc + patch])
    np.testing.assert_array_equal(p["partner_images"][i], p["images"][p["partner"][i]])
    changed += not np.array_equal(p["mixed"][i], p["images"][i])
  assert changed > 0
  assert not np.any(p["partner"] == np.arange(len(p["partner"])))  # permutation: never itself


@pytest.mark.slow
def test_masked_partner_is_the_partner_with_its_top_cam_quarter_filled(grid):
  """The masked partner equals the partner except on its foreground mask, which is `fill`
  (0.0); the mask covers exactly fg_ratio = 1/4 of the pixels, and those carry the highest
  CAM values."""
  _, p = grid
  m = p["partner_masks"]
  np.testing.assert_array_equal(p["masked"], np.where(m[..., None], 0.0, p["partner_images"]))
  np.testing.assert_array_equal(m.mean(axis=(1, 2)), 0.25)
  for cam, mask in zip(p["partner_cams"], m):
    assert cam[mask].min() >= cam[~mask].max()


@pytest.mark.slow
def test_cli_prints_where_it_wrote(workdir, tmp_path):
  """The command line, given only the workdir (it takes the run's recorded config), writes
  the PNG at --out (inside it when it is a directory) and says where in one line."""
  (tmp_path / "grids").mkdir()
  out = tmp_path / "grids" / vis.GRID_NAME
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  cmd = [sys.executable, "-m", "experiments.visualize",
         "--workdir", str(workdir), "--num=2", f"--out={tmp_path / 'grids'}"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"wrote {out}" in proc.stdout and out.stat().st_size > 0


def test_grid_path_names_the_file_actually_written(tmp_path):
  """--out: a file path as given, a directory gets backmix_grid.png inside, a name without
  an extension gets the '.png' matplotlib would add; no --out: the workdir's grid."""
  assert vis.grid_path("w", None) == os.path.join("w", vis.GRID_NAME)
  assert vis.grid_path("w", str(tmp_path / "g.pdf")) == str(tmp_path / "g.pdf")
  assert vis.grid_path("w", str(tmp_path / "g")) == str(tmp_path / "g.png")
  assert vis.grid_path("w", str(tmp_path)) == str(tmp_path / vis.GRID_NAME)


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
  """A missing workdir, or one without checkpoints, raises CheckpointError (the CLI turns it
  into one line) and creates no directory."""
  with pytest.raises(CheckpointError, match="no checkpoint"):
    vis.visualize(_config(), str(tmp_path / "missing"), num=3)
  assert not (tmp_path / "missing").exists()
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="no checkpoint"):
    vis.visualize(_config(), str(tmp_path / "empty"), num=3)
