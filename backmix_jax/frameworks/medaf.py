"""MEDAF: multi-expert diverse attention fusion (Wang et al., AAAI 2024).

Facts from Vanixxz/MEDAF (`core/net.py`, `core/train.py`, `core/test.py`, `misc/osr.yml`):
three experts, each ending in a bias-free 1x1 classifier whose output is the expert's class
map (its CAMs); expert logits are the spatial means of the maps. A gate (two biased linear
layers, D -> D/4 -> 3, no activation between them) gives weights softmax(gate / 100); the
fused logits are the gate-weighted sum of the expert logits, which are detached there (the
fused loss trains only the gate). Loss = 0.7 * sum of the three expert CEs + 1.0 * CE of the
fused logits + 0.01 * attention diversity. Attention diversity: the label channel of each
expert's map, L2-normalised over locations, minus its spatial mean, ReLU; the cosine
similarities of the three pairs, averaged over the batch and summed (MEDAF divides by
(E-1)(E-2)/2, which is 1 for E = 3 experts). Score: max softmax of fused logits / 100
(score weights [1,0,0], branch -1, lgs_temp 100).

Network. With a ResNet backbone (MEDAF's own ResNet-18 is CSSR's, the default here) it is
MEDAF's MultiBranchNet: the stem is shared; each of the three experts has its own copy of
all four stages and a bias-free 1x1 classifier whose output is its class map; the gate has
its own stem and stages (it reads the image), global average pooling, and the two linear
layers. With other backbones (classifier32, WRN, the small CNN), whose stages this module
cannot copy, the experts are heads over the backbone's one shared map: one residual block
(two 3x3 conv-BN, LeakyReLU 0.01 between, identity shortcut, ReLU) each, then the 1x1
classifier, and the gate reads the pooled shared map. Initialisers are PyTorch's defaults
(U(+-1/sqrt(fan_in)); BN scale 1, bias 0, momentum 0.1 -> Flax 0.9).

CAM source: the gate-weighted sum of the expert class maps, [B,g,g,K] (its spatial mean is
the fused logit vector).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from backmix_jax.frameworks.base import Framework
from backmix_jax.frameworks.losses import cross_entropy
from backmix_jax.frameworks.scores import get_score, msp
from backmix_jax.models import layers
from backmix_jax.models.resnet import ResNet

NUM_EXPERTS = 3


def attention_diversity(cams: jax.Array, eps: float = 1e-6) -> jax.Array:
  """MEDAF's attnDiv. cams [B,E,g,g] (each expert's label-channel map) -> scalar.

  Sum over expert pairs of the batch-mean cosine similarity of relu(n - mean(n)), where n is
  the map L2-normalised over its g*g locations.
  """
  b, e = cams.shape[:2]
  x = cams.astype(jnp.float32).reshape(b, e, -1)
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # F.normalize
  x = jax.nn.relu(x - x.mean(axis=-1, keepdims=True))
  unit = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)
  total = 0.0
  for i in range(e):
    for j in range(i + 1, e):
      total = total + jnp.mean(jnp.sum(unit[:, i] * unit[:, j], axis=-1))
  # MEDAF divides by i*(i-1)/2 with i = E-1 after its loops: 1 for three experts.
  return total / max((e - 1) * (e - 2) / 2, 1.0)


class _Expert(nn.Module):
  """A residual block of width D then a bias-free 1x1 classifier: [B,g,g,D] -> [B,g,g,K]."""
  num_classes: int
  dtype: Any
  bn_axis_name: str | None

  @nn.compact
  def __call__(self, x, train: bool):
    d = x.shape[-1]
    conv = lambda name: layers.conv(d, 3, 1, init=layers.TORCH_DEFAULT, dtype=self.dtype,
                                    name=name)
    norm = lambda name: layers.batch_norm(train, momentum=0.9, axis_name=self.bn_axis_name,
                                          dtype=self.dtype, name=name)
    y = jax.nn.leaky_relu(norm("bn1")(conv("conv1")(x)), 0.01)
    y = norm("bn2")(conv("conv2")(y))
    y = jax.nn.relu(y + x)
    return nn.Dense(self.num_classes, use_bias=False, kernel_init=layers.TORCH_DEFAULT,
                    dtype=self.dtype, param_dtype=jnp.float32, name="cls")(y)


class MEDAFHead(nn.Module):
  """feature map [B,g,g,D] -> dict (float32):
    logits [B,K] fused, class_maps [B,g,g,K] gate-weighted expert maps, features [B,D],
    expert_logits [B,E,K], expert_maps [B,E,g,g,K], gate [B,E].
  """
  num_classes: int
  dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  gate_temperature: float = 100.0

  @nn.compact
  def __call__(self, fmap, train: bool):
    maps = jnp.stack([_Expert(self.num_classes, self.dtype, self.bn_axis_name,
                              name=f"expert{e + 1}")(fmap, train).astype(jnp.float32)
                      for e in range(NUM_EXPERTS)], axis=1)  # [B,E,g,g,K]
    features = fmap.astype(jnp.float32).mean(axis=(1, 2))
    return _fuse(maps, _gate_mlp(features), features, self.gate_temperature)


def _fuse(expert_maps, gate_logits, features, temperature: float) -> dict:
  """expert maps [B,E,g,g,K] (float32), gate logits [B,E], features [B,D] -> outputs dict."""
  expert_logits = expert_maps.mean(axis=(2, 3))
  gate = jax.nn.softmax(gate_logits.astype(jnp.float32) / temperature, axis=-1)
  # The fused logits train only the gate (MEDAF detaches the expert logits there).
  fused = jnp.einsum("be,bek->bk", gate, jax.lax.stop_gradient(expert_logits))
  class_maps = jnp.einsum("be,behwk->bhwk", gate, expert_maps)
  return dict(logits=fused, class_maps=class_maps, features=features.astype(jnp.float32),
              expert_logits=expert_logits, expert_maps=expert_maps, gate=gate)


def _gate_mlp(pooled):
  """MEDAF's gate classifier: two biased linear layers D -> D/4 -> E, nothing between."""
  d = pooled.shape[-1]
  hidden = nn.Dense(d // 4, kernel_init=layers.TORCH_DEFAULT, bias_init=layers.torch_default_bias(d),
                    name="gate_fc1")(pooled)
  return nn.Dense(NUM_EXPERTS, kernel_init=layers.TORCH_DEFAULT,
                  bias_init=layers.torch_default_bias(d // 4), name="gate_fc2")(hidden)


def _resnet_copy(trunk: ResNet, name: str, **updates) -> ResNet:
  """A new ResNet with `trunk`'s settings (its own parameters), some fields replaced."""
  fields = {f.name: getattr(trunk, f.name) for f in dataclasses.fields(trunk)
            if f.name not in ("parent", "name")}
  return ResNet(**{**fields, **updates}, name=name)


class MEDAFNet(nn.Module):
  """MEDAF's MultiBranchNet on a ResNet `trunk`: x [B,H,W,C] -> the outputs of MEDAFHead,
  with features [B,D] = the mean of the experts' pooled last stages."""
  trunk: ResNet
  num_classes: int
  gate_temperature: float = 100.0

  @nn.compact
  def __call__(self, x, train: bool):
    shared = _resnet_copy(self.trunk, "shared_stem", stage_sizes=())(x, train)
    maps, pooled = [], []
    for e in range(NUM_EXPERTS):
      fmap = _resnet_copy(self.trunk, f"expert{e + 1}_stages", stem=False)(shared, train)
      maps.append(nn.Conv(self.num_classes, (1, 1), use_bias=False,
                          kernel_init=layers.TORCH_DEFAULT, dtype=self.trunk.dtype,
                          param_dtype=jnp.float32, name=f"expert{e + 1}_cls")(fmap))
      pooled.append(fmap.astype(jnp.float32).mean(axis=(1, 2)))
    gate_map = _resnet_copy(self.trunk, "gate_trunk")(x, train)
    gate_logits = _gate_mlp(gate_map.astype(jnp.float32).mean(axis=(1, 2)))
    expert_maps = jnp.stack(maps, axis=1).astype(jnp.float32)  # [B,E,g,g,K]
    return _fuse(expert_maps, gate_logits, jnp.mean(jnp.stack(pooled), axis=0),
                 self.gate_temperature)


def medaf_loss(outputs: dict, labels: jax.Array, *, weights=(0.7, 1.0, 0.01),
               label_smoothing: float = 0.0) -> tuple:
  """w0 * sum of expert CEs + w1 * fused CE + w2 * attention diversity; extras per term.
  Every CE (the experts' and the fused one) is smoothed by `label_smoothing`."""
  expert_labels = jnp.broadcast_to(labels[:, None], outputs["expert_logits"].shape[:2])
  expert_ce = cross_entropy(outputs["expert_logits"], expert_labels,
                            label_smoothing).mean(axis=0)  # [E]
  fused_ce = cross_entropy(outputs["logits"], labels, label_smoothing).mean()
  maps = outputs["expert_maps"]  # [B,E,g,g,K]
  cams = jnp.take_along_axis(maps, labels[:, None, None, None, None], axis=-1)[..., 0]
  div = attention_diversity(cams)
  loss = weights[0] * expert_ce.sum() + weights[1] * fused_ce + weights[2] * div
  return loss, dict(expert_ce=expert_ce.mean(), fused_ce=fused_ce, attention_diversity=div)


class MEDAF(Framework):
  name = "medaf"
  default_score = "medaf"
  own_scores = ("medaf",)
  logit_temperature = 100.0  # lgs_temp
  gate_temperature = 100.0   # gate_temp

  def make_head(self, num_classes: int, dtype: Any) -> nn.Module:
    return MEDAFHead(num_classes, dtype=dtype)

  def build_network(self, backbone, num_classes, dtype, bn_axis_name):
    if isinstance(backbone, ResNet):  # MEDAF's own layout: branches copy the stages
      return MEDAFNet(backbone, num_classes, gate_temperature=self.gate_temperature)
    return super().build_network(backbone, num_classes, dtype, bn_axis_name)

  def loss(self, outputs, labels, label_smoothing=0.0):
    return medaf_loss(outputs, labels, label_smoothing=label_smoothing)

  def score(self, outputs, name="", state=None):
    name = self.check_score(name)
    if name == "medaf":
      return msp(outputs["logits"].astype(jnp.float32) / self.logit_temperature)
    return get_score(name)(outputs["logits"])
