"""The big backbones under the frameworks their code bases train them with (configs/default.py
RECIPES): CSSR's WRN-40-4 and ResNet-18, MEDAF's ResNet-18, the OOD table's ResNet-34, with
BackMix mixing every step, through the real data-parallel step on 2 devices.

Batches of 4 digits at 16 px keep each pair to a few seconds of compute; compiling the
step dominates, so every pair compiles once and its tests share that step; the pairs run one
after another, each freed before the next is built.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backmix_jax import parallel
from backmix_jax.models import get_backbone
from configs import digits
from tests.helpers import build_with_step, checkpoint_round_trip, release_memory

# Every test here trains or compiles a run: the slow tier (python -m pytest -m slow).
pytestmark = pytest.mark.slow

# (framework, backbone) as the recipes pair them: softmax with the CSSR recipe's WRN-40-4 and
# the OOD benchmark's ResNet-34; CSSR linear and PCSSR with WRN-40-4 (CIFAR/SVHN), RCSSR with
# ResNet-18 (TinyImageNet); MEDAF with ResNet-18; ARPL+CS with classifier32 (its GAN works
# at 32 px: here it resizes). ARPL on classifier32 and every framework on cnn_small are in
# test_frameworks.py.
PAIRS = [("softmax", "wrn40_4"), ("softmax", "resnet34"), ("cssr", "wrn40_4"),
         ("pcssr", "wrn40_4"), ("rcssr", "resnet18"), ("medaf", "resnet18"),
         ("arpl_cs", "classifier32")]
NUM_STEPS = 8


def _config(framework, model):
  c = digits.get_config()
  c.framework, c.model, c.score = framework, model, ""
  c.batch_size, c.eval_batch_size, c.num_epochs = 4, 16, 1  # 2 images per device
  c.data.image_size = 16
  c.data.backend = "numpy"
  c.data.crop_padding = 0
  c.data.normalize = "cssr"  # the recipes of these backbones
  # The recipes' optimiser (SGD with momentum; the digits config's Adam holds twice the state).
  c.optimizer.update(name="sgd", momentum=0.9, nesterov=False, weight_decay=0.0,
                     schedule="constant", learning_rate=1e-2)
  c.backmix.warmup_epochs = 0  # every step mixes
  # Two devices: the data-parallel path (pmean, synchronised batch norm) with half the memory
  # of four, since every device holds a replica of the state (MEDAF's ResNet-18: 1 GB each).
  c.num_devices = 2
  return c


@dataclasses.dataclass
class Trained:
  run: object     # run.state is abstract (shapes, dtypes, shardings): the step consumed it
  state: object   # after NUM_STEPS steps from run.state
  losses: list
  init_head: list  # the head's initial parameters, on the host


def _head(params):
  return jax.tree.leaves(params.get("head", params))


def _abstract(tree):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
      if isinstance(x, jax.Array) else x, tree)


@pytest.fixture(scope="module", params=PAIRS, ids="-".join)
def pair(request):
  """One pair built, compiled and trained NUM_STEPS steps on one repeated batch. Module scope
  with params makes pytest run every test of one pair before building the next, and the
  pair's run and programs are released before the next compiles: one big backbone in memory
  at a time.

  The pair trains from run.state itself, which the step donates: a donatable copy would hold
  a second replicated state through the first step's compile (MEDAF's ResNet-18: about 1 GiB
  more at the module's peak). The tests need of the initial state only its head and its
  structure, kept before the first step."""
  run, step = build_with_step(_config(*request.param))
  init_head = [np.asarray(x) for x in _head(run.state.params)]
  state, run.state = run.state, _abstract(run.state)
  batch = parallel.to_global(next(iter(run.stream.batches(0, 1))), run.mesh)
  losses = []
  for _ in range(NUM_STEPS):
    state, metrics = step(state, batch)
    metrics = jax.device_get(metrics)
    assert bool(metrics["finite"]) and np.isfinite(metrics["loss"]), metrics
    losses.append(float(metrics["loss"]))
  trained = Trained(run, state, losses, init_head)
  step = batch = None
  release_memory()  # the compiled step (MEDAF's ResNet-18: about 1 GB) is not needed again
  yield trained
  trained.run = trained.state = run = state = None
  release_memory()


def test_mixed_steps_stay_finite_and_lower_the_loss(pair):
  """With BackMix on from the first step (fresh partners and patches every step), 8 steps on
  one batch keep loss and gradients finite and the loss goes down, on 2 devices."""
  assert pair.run.mesh.size == 2 and pair.run.config.backmix.enabled
  losses = pair.losses
  assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses


def test_checkpoint_round_trip_is_exact(pair, tmp_path):
  """Orbax save/restore of the trained state gives back every array (backbone, head, batch
  statistics, optimiser state, ARPL+CS's GAN) exactly, and the head did train."""
  run, state = pair.run, pair.state
  restored, step = checkpoint_round_trip(run, state, tmp_path, NUM_STEPS)
  assert step == NUM_STEPS
  want, got = jax.tree.leaves(state), jax.tree.leaves(restored)
  assert len(want) == len(got)
  for a, b in zip(want, got):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
  assert any(not np.array_equal(a, b) for a, b in zip(_head(state.params), pair.init_head))


def test_cam_source_has_one_map_per_known_class_at_the_backbone_grid(pair):
  """The framework's CAM source for this backbone: [B, g, g, K] with the backbone's output
  grid (the mask BackMix draws its foreground from; MEDAF's branches keep it), finite."""
  run = pair.run
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  out = run.eval_model.apply(run.variables(pair.state), x, train=False)
  backbone = get_backbone(run.config.model)
  fmap = jax.eval_shape(lambda: backbone.init_with_output(jax.random.key(0), x, train=False)[0])
  cams = run.framework.cam_maps(out)
  g = fmap.shape[1]
  assert g > 1 and cams.shape == (2, g, g, run.data.num_classes)
  assert bool(jnp.isfinite(cams).all())
