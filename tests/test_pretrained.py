"""Pretrained weights (models/weight_files.py, models/pretrained.py, config.pretrained): the
Flax resnet50 / vit_b16 with imported weights compute what torchvision / timm compute, each
file format reads, mismatches are one line, and a run starts from the file's weights but
resumes from its checkpoint.

The fixtures in tests/fixtures/pretrained/ were written by tools/make_pretrained_fixtures.py
with real PyTorch (torchvision's Bottleneck ResNet, timm's VisionTransformer at small widths,
randomised weights and BatchNorm statistics, eval mode); no test here imports torch.
"""
import functools
import io
import json
import pathlib
import pickle
import struct
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from backmix_jax.commands.exit_codes import exit_status
from backmix_jax.data.core import DataError
from backmix_jax.frameworks import get_framework
from backmix_jax.models import get_backbone
from backmix_jax.models.pretrained import load_into, load_pretrained, torch_name
from backmix_jax.models.weight_files import WeightsError, read_weights
from backmix_jax.training import checkpointing, validate
from backmix_jax.training.state import create_train_state, with_pretrained_backbone
from tests.helpers import quick_config

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "pretrained"
SPEC = json.loads((FIXTURES / "models.json").read_text())
OUTPUTS = np.load(FIXTURES / "outputs.npz")
TINY = {"resnet": ("resnet50", SPEC["resnet"]["fields"]), "vit": ("vit_b16", SPEC["vit"]["fields"])}


def _tiny(kind):
  name, fields = TINY[kind]
  return get_backbone(name, **fields)


def _zero_variables(model, x):
  """Variables of the right structure and shapes, every value 0 (only traced, not run)."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("kind,file", [("resnet", "resnet_tiny.pth"),
                                       ("vit", "vit_tiny.safetensors")])
def test_flax_backbone_with_imported_weights_matches_pytorch(kind, file):
  """torchvision's ResNet (.pth, read without torch) and timm's ViT (safetensors): the
  Flax feature map equals PyTorch's (ResNet layer4 output; ViT's final-normed patch tokens)."""
  model, x = _tiny(kind), OUTPUTS[f"{kind}_input"]
  variables, report = load_pretrained(_zero_variables(model, x), str(FIXTURES / file))
  assert report[0].startswith("loaded") and "classifier head" in report[1]
  out = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  np.testing.assert_allclose(out, OUTPUTS[f"{kind}_features"], atol=1e-4, rtol=0)


def test_npz_and_pth_readers_give_the_same_tensors():
  """The .npz of the state dict (PyTorch names) reads as the .pth does, tensor for tensor."""
  pth = read_weights(str(FIXTURES / "resnet_tiny.pth"))
  npz = read_weights(str(FIXTURES / "resnet_tiny.npz"))
  assert sorted(pth) == sorted(npz) and "layer1.0.downsample.0.weight" in pth
  for name in pth:
    np.testing.assert_array_equal(pth[name], npz[name])
    assert pth[name].dtype == (np.int64 if name.endswith("num_batches_tracked") else np.float32)


def test_torch_names_of_flax_paths():
  """Flax paths name their PyTorch tensors: `_<digit>` -> `.<digit>`, kernel/scale ->
  weight, BN statistics -> running_mean/var, bare parameters as they are."""
  assert torch_name("params", ("layer1_0", "downsample_0", "kernel")) == \
      "layer1.0.downsample.0.weight"
  assert torch_name("batch_stats", ("layer4_2", "bn3", "var")) == "layer4.2.bn3.running_var"
  assert torch_name("params", ("blocks_11", "attn", "qkv", "bias")) == "blocks.11.attn.qkv.bias"
  assert torch_name("params", ("patch_embed", "proj", "kernel")) == "patch_embed.proj.weight"
  assert torch_name("params", ("norm", "scale")) == "norm.weight"
  assert torch_name("params", ("pos_embed",)) == "pos_embed"


def test_weights_of_another_architecture_are_one_line_naming_the_keys():
  """ResNet weights into the ViT: missing and unexpected tensors counted and named in one
  line; a DataError, which the commands turn into exit code 2."""
  model, x = _tiny("vit"), OUTPUTS["vit_input"]
  with pytest.raises(WeightsError) as err:
    load_pretrained(_zero_variables(model, x), str(FIXTURES / "resnet_tiny.pth"))
  message = str(err.value)
  assert isinstance(err.value, DataError) and "\n" not in message
  assert exit_status(err.value) == (2, f"error: {message}")
  assert "30 missing (blocks.0.attn.proj.bias, " in message and "+26)" in message
  assert "85 unexpected (conv1.weight, bn1.weight" in message


def test_wrongly_shaped_tensors_are_named_with_both_shapes():
  """Same names, another width (stem 8 -> 12): each wrongly shaped tensor is named with its
  file and network shapes, both in PyTorch's layout; nothing loads."""
  fields = dict(SPEC["resnet"]["fields"], stem_width=12)
  model = get_backbone("resnet50", **fields)
  x = OUTPUTS["resnet_input"]
  with pytest.raises(WeightsError, match=r"^[^;]*: 7 wrongly shaped \(bn1.bias \(file \[8\], "
                                         r"network \[12\]\), .*conv1.weight \(file \[8, 3, 7, 7\], "
                                         r"network \[12, 3, 7, 7\]\)"):
    load_pretrained(_zero_variables(model, x), str(FIXTURES / "resnet_tiny.pth"))


def test_pos_embed_of_another_grid_is_resampled_and_reported():
  """A pos_embed for 8x8 patches loads into a 4x4-patch ViT: class token's entry kept, the
  grid resampled (a constant grid stays constant), the report says so."""
  model, x = _tiny("vit"), OUTPUTS["vit_input"]
  tensors = read_weights(str(FIXTURES / "vit_tiny.safetensors"))
  d = tensors["pos_embed"].shape[-1]
  tensors["pos_embed"] = np.concatenate([np.full((1, 1, d), 2.0, np.float32),
                                         np.full((1, 64, d), 0.5, np.float32)], axis=1)
  variables, report = load_into(_zero_variables(model, x), tensors)
  pos = variables["params"]["pos_embed"]
  assert pos.shape == (1, 17, d)
  np.testing.assert_allclose(pos[0, 0], 2.0)
  np.testing.assert_allclose(pos[0, 1:], 0.5, atol=1e-6)
  assert f"resampled pos_embed [1, 65, {d}] -> [1, 17, {d}]" in report


def _safetensors_bytes(arrays: dict) -> bytes:
  header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
  for name, (dtype, a) in arrays.items():
    blob = a.tobytes()
    header[name] = {"dtype": dtype, "shape": list(a.shape),
                    "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  text = json.dumps(header).encode()
  return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def test_safetensors_half_and_bfloat16_read_as_float32(tmp_path):
  """A hand-written safetensors file (header parsed here, no library) with F16 and BF16
  tensors reads back as float32 with the exact values."""
  values = np.array([[1.5, -2.25], [0.125, 3.0]], np.float32)
  path = tmp_path / "w.safetensors"
  path.write_bytes(_safetensors_bytes({"a": ("F16", values.astype(np.float16)),
                                       "b": ("BF16", values.astype(jnp.bfloat16))}))
  got = read_weights(str(path))
  for name in "ab":
    assert got[name].dtype == np.float32
    np.testing.assert_array_equal(got[name], values)


def test_a_pickle_naming_other_globals_is_refused_without_running_it(tmp_path):
  """The restricted unpickler knows a state dict's globals only: a file that would call
  anything else (here os.getcwd) is refused in one line, and nothing runs."""
  path = tmp_path / "evil.pth"
  import os  # noqa: F401 (the global the pickle names)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("evil/data.pkl", pickle.dumps({"x": os.getcwd}))
  with pytest.raises(WeightsError, match=r"pickles \w+\.getcwd, which a state dict does not hold"):
    read_weights(str(path))


def test_missing_and_unrecognised_files_are_one_line(tmp_path):
  """No download for a missing path, one line for a file of no known format, and the
  `module.` prefix of a DistributedDataParallel state dict dropped."""
  with pytest.raises(WeightsError, match="does not exist .*never downloaded"):
    read_weights(str(tmp_path / "absent.pth"))
  (tmp_path / "junk.bin").write_bytes(b"not a weights file")
  with pytest.raises(WeightsError, match="is not safetensors, a PyTorch state dict or .npz"):
    read_weights(str(tmp_path / "junk.bin"))
  buf = io.BytesIO()
  np.savez(buf, **{"module.fc.weight": np.ones((2, 2), np.float32)})
  (tmp_path / "ddp.npz").write_bytes(buf.getvalue())
  assert list(read_weights(str(tmp_path / "ddp.npz"))) == ["fc.weight"]  # module. dropped


def _fresh_state(framework="softmax"):
  """A train state of the tiny ResNet + a framework head, as create_train_state builds it
  (traced, every value 0: nothing compiles), and its optimiser."""
  backbone = get_backbone(TINY["resnet"][0], **TINY["resnet"][1])
  fw = get_framework(framework)
  model = fw.build_network(backbone, 4, jnp.float32, None)
  tx = optax.sgd(0.1, momentum=0.9)
  shapes = jax.eval_shape(lambda x: create_train_state(model, tx, jax.random.key(0), x, 0, fw),
                          jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes), tx


def test_initial_state_takes_the_backbone_from_the_file_and_a_checkpoint_wins(tmp_path):
  """config.pretrained (build_run -> with_pretrained_backbone): the backbone's parameters and
  BN statistics come from the file, the head stays as initialised, the optimiser state is
  initialised for the new parameters; a checkpoint restored over that state (what a resumed
  run does) gives the checkpoint's weights, not the file's."""
  state, tx = _fresh_state()
  path = str(FIXTURES / "resnet_tiny.pth")
  loaded, report = with_pretrained_backbone(state, path, tx)
  weights = read_weights(path)
  np.testing.assert_array_equal(loaded.params["backbone"]["conv1"]["kernel"],
                                weights["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(loaded.batch_stats["backbone"]["layer2_0"]["bn1"]["var"],
                                weights["layer2.0.bn1.running_var"])
  np.testing.assert_array_equal(loaded.params["head"]["fc"]["kernel"], 0.0)
  assert jax.tree.structure(loaded.opt_state) == jax.tree.structure(state.opt_state)
  assert "skipped the classifier head: fc.weight, fc.bias" in report
  trained = loaded.replace(params=jax.tree.map(lambda a: a + 1.0, loaded.params))
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(1, trained, {"model": "tiny"}, force=True)
  ckpt.wait()
  restored, step = ckpt.restore(loaded, {"model": "tiny"})
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, restored.params, trained.params)


def test_a_network_without_one_backbone_and_a_missing_file_are_refused():
  """MEDAF on a CIFAR ResNet copies the backbone's stages into branches: no single backbone
  to load into, one line; a pretrained path that does not exist is a config problem."""
  state, tx = _fresh_state()
  state = state.replace(params={"branches": state.params["backbone"]})
  with pytest.raises(WeightsError, match="one backbone plus a head"):
    with_pretrained_backbone(state, str(FIXTURES / "resnet_tiny.pth"), tx)
  found = validate.problems(quick_config(pretrained="/nonexistent/resnet50.pth"))
  assert found == ["pretrained weights file '/nonexistent/resnet50.pth' does not exist (weights "
                   "are never downloaded: give the path of a local file)"]


def test_readers_of_a_trained_run_never_need_the_initial_weights_file(tmp_path):
  """evaluate, visualize and trials collecting restore a checkpoint, which replaces the
  initial weights: a weights file that has moved is no reason to refuse them (they get as
  far as the missing checkpoint here). The reader's config drops only that field, on a
  copy."""
  from backmix_jax.commands.evaluate import evaluate_checkpoint
  from backmix_jax.commands.trials import run_trials
  from backmix_jax.commands.visualize import visualize
  from backmix_jax.training.checkpointing import CheckpointError
  from backmix_jax.training.run import reader_config
  config = quick_config(pretrained="/moved/resnet50.pth")
  reader = reader_config(config)
  assert reader.pretrained == "" and config.pretrained == "/moved/resnet50.pth"
  assert reader.to_dict() == dict(config.to_dict(), pretrained="")
  with pytest.raises(CheckpointError, match="no checkpoint"):
    evaluate_checkpoint(config, str(tmp_path))
  with pytest.raises(CheckpointError, match="no checkpoint"):
    visualize(config, str(tmp_path / "run"))
  with pytest.raises(CheckpointError, match="no finished trial"):
    run_trials(config, str(tmp_path / "trials"), [0])
