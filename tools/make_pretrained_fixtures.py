"""Writes tests/fixtures/pretrained/: small, randomly initialised torchvision and timm models
of the block structure of resnet50 and vit_b16, their weights, an input and PyTorch's outputs,
for tests/test_pretrained.py to check the Flax backbones and the weight loader against real
PyTorch without PyTorch installed.

Needs torch, torchvision, timm and safetensors (not dependencies of the project); run once:

  pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
  pip install timm safetensors
  python tools/make_pretrained_fixtures.py

Written (0.43 MB):
  resnet_tiny.pth         torchvision ResNet (Bottleneck, [1,1,1,1]), stem 8, planes 4/8/8/16
                          (outputs 16..64), via torch.save(state_dict)
  resnet_tiny.npz         the same state dict as NumPy arrays under the PyTorch names
  vit_tiny.safetensors    timm VisionTransformer, 32 px, patch 8, width 32, 2 blocks, 4 heads
                          (safetensors.torch.save_file)
  outputs.npz             per model: its input (NHWC) and its last feature map (NHWC):
                          ResNet's layer4 output, the ViT's final-normed patch tokens
  models.json             the Flax fields that build the same networks
Every parameter and BatchNorm statistic is drawn at random (not left at its init's zeros and
ones), so a mislaid bias, gain or running statistic shows in the outputs. Models run in eval
mode, float32.
"""
from __future__ import annotations

import json
import pathlib
import sys
import types

import numpy as np
import torch
from safetensors.torch import save_file

# torchvision's compiled ops are not needed (only its ResNet code) and fail to register when
# the torchvision wheel was built for another torch build: skip their registration.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("stub"))
from torchvision.models.resnet import Bottleneck, ResNet  # noqa: E402
import timm  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pretrained"

RESNET = dict(stage_sizes=[1, 1, 1, 1], planes=[4, 8, 8, 16], stem_width=8, expansion=4)
RESNET_SIZE = 64  # -> a 2x2 map: the spatial layout is compared, not only one vector
VIT = dict(patch_size=8, width=32, depth=2, num_heads=4, mlp_ratio=4.0, image_size=32)


def tiny_resnet() -> torch.nn.Module:
  """torchvision's ResNet with its own _make_layer and Bottleneck, at small widths (its
  constructor fixes the stem at 64 and the planes at 64..512, so they are rebuilt)."""
  model = ResNet(Bottleneck, RESNET["stage_sizes"], num_classes=10)
  model.inplanes = RESNET["stem_width"]
  model.conv1 = torch.nn.Conv2d(3, model.inplanes, 7, 2, 3, bias=False)
  model.bn1 = torch.nn.BatchNorm2d(model.inplanes)
  for i, (blocks, planes) in enumerate(zip(RESNET["stage_sizes"], RESNET["planes"])):
    setattr(model, f"layer{i + 1}", model._make_layer(Bottleneck, planes, blocks,
                                                      stride=1 if i == 0 else 2))
  model.fc = torch.nn.Linear(RESNET["planes"][-1] * Bottleneck.expansion, 10)
  return model


def tiny_vit() -> torch.nn.Module:
  return VisionTransformer(img_size=VIT["image_size"], patch_size=VIT["patch_size"],
                           embed_dim=VIT["width"], depth=VIT["depth"],
                           num_heads=VIT["num_heads"], mlp_ratio=VIT["mlp_ratio"],
                           num_classes=10, global_pool="token")


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
  """Every float tensor of the state dict moved off its init: gains near 1, biases and
  means near 0, variances in [0.5, 1.5], weights perturbed."""
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if not t.is_floating_point():
        continue
      noise = torch.randn(t.shape, generator=gen)
      if name.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=gen))
      elif name.endswith(("running_mean", "bias")):
        t.copy_(0.1 * noise)
      elif t.ndim == 1:  # BatchNorm / LayerNorm gains
        t.copy_(1.0 + 0.1 * noise)
      else:
        t.add_(0.05 * noise)


def main() -> None:
  torch.manual_seed(0)
  gen = torch.Generator().manual_seed(0)
  OUT.mkdir(parents=True, exist_ok=True)
  resnet, vit = tiny_resnet(), tiny_vit()
  for model in (resnet, vit):
    randomise(model, gen)
    model.eval()
  x_resnet = torch.randn(2, 3, RESNET_SIZE, RESNET_SIZE, generator=gen)
  x_vit = torch.randn(2, 3, VIT["image_size"], VIT["image_size"], generator=gen)
  with torch.no_grad():
    f = resnet.conv1(x_resnet)
    f = resnet.maxpool(resnet.relu(resnet.bn1(f)))
    for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
      f = layer(f)
    tokens = vit.forward_features(x_vit)  # [B, 1+N, D] after the final norm
  g = VIT["image_size"] // VIT["patch_size"]
  resnet_sd = {k: v.contiguous() for k, v in resnet.state_dict().items()}
  torch.save(resnet_sd, OUT / "resnet_tiny.pth")
  np.savez(OUT / "resnet_tiny.npz", **{k: v.numpy() for k, v in resnet_sd.items()})
  save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, OUT / "vit_tiny.safetensors")
  np.savez(OUT / "outputs.npz",
           resnet_input=x_resnet.permute(0, 2, 3, 1).numpy(),
           resnet_features=f.permute(0, 2, 3, 1).numpy(),
           vit_input=x_vit.permute(0, 2, 3, 1).numpy(),
           vit_features=tokens[:, 1:].reshape(2, g, g, -1).numpy())
  (OUT / "models.json").write_text(json.dumps(dict(
      resnet=dict(fields=RESNET, image_size=RESNET_SIZE), vit=dict(fields=VIT),
      written_with=dict(torch=torch.__version__, timm=timm.__version__)),
      indent=1) + "\n")
  sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir())}
  print(json.dumps(sizes), sum(sizes.values()), "bytes")


if __name__ == "__main__":
  main()
