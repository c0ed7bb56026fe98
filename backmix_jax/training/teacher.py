"""The CAM teacher (`backmix.cam_source='teacher'`): a finished run whose network, held
fixed, gives the CAMs BackMix masks with, in place of the network being trained.

Why it exists: BackMix trusts the CAM to find the object. A network's own CAMs are poor early
in training, and where a background prior is strong they sit on the background, so masking
with them keeps exactly the cells the prior lives in and the mixing confirms whatever the
CAM already believed (docs/results.md measures this). A teacher, typically the same config
trained beforehand with BackMix off, has had a whole schedule to localise the object, and
its CAMs do not move while the student trains. They are computed in the train step on the
step's own clean batch (the `model_cams` forward of live mode, with the teacher's variables),
so augmentation, partners and every mixing knob work as in live mode.

`load_teacher` checks that the teacher trained on the same data with the same network and
framework (`identity.run_identity`, BackMix aside), restores its newest checkpoint and
returns its variables, replicated over the mesh. The teacher's workdir must stay readable
while the student is trained or evaluated.
"""
from __future__ import annotations

import jax
import ml_collections

from backmix_jax import parallel
from backmix_jax.training import identity
from backmix_jax.training.checkpointing import Checkpointer, CheckpointError
from backmix_jax.training.optimizer import make_optimizer
from backmix_jax.training.records import log
from backmix_jax.training.state import create_train_state
from backmix_jax.training.workdir import checkpoint_steps, trained_config

# Run-identity fields a teacher may differ in: whether it mixed itself does not change what
# its weights mean.
_FREE = ("backmix.enabled",)


def teacher_config(config):
  """The config the teacher was trained with (a ConfigDict), checked against `config`.

  Raises CheckpointError when backmix.teacher has no checkpoint, no recorded config, or a
  run identity (data, classes, input preparation, network, framework) other than `config`'s.
  """
  path = config.backmix.teacher
  if not checkpoint_steps(path):
    raise CheckpointError(f"backmix.teacher={path!r} holds no checkpoints; train the teacher "
                          f"first: python -m experiments.train --config ... --workdir {path}")
  saved, where = trained_config(path)
  if saved is None:
    raise CheckpointError(f"backmix.teacher={path!r} records no config (config.json); "
                          "cannot check it was trained on this run's data and network")
  changed = identity.run_differences(saved, config, ignore=_FREE)
  if changed:
    diffs = "; ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in changed.items())
    raise CheckpointError(f"backmix.teacher={path!r} is another run ({diffs}, from {where}); "
                          "a teacher must share the student's data, classes, input and network")
  return ml_collections.ConfigDict(saved)


def load_teacher(config, *, model, framework, mesh, sample, signature: dict,
                 train_size: int) -> dict:
  """{'params', 'batch_stats'} of the teacher's final checkpoint, replicated over `mesh`.

  Only a finished teacher is accepted: its newest checkpoint must be the last step of its
  own schedule, so the CAMs a student is trained and evaluated with cannot change under it
  (a workdir refuses to be retrained as another run; training/workdir.py).

  Args:
    config: the student's config; config.backmix.teacher is the teacher's workdir.
    model, framework: the student's evaluation network and framework (the teacher's are the
      same, `teacher_config` checks it).
    sample: float [b,H,W,C] normalised images, to build the state the checkpoint restores into.
    signature: the student's checkpoint signature (`checkpointing.model_signature`); the
      teacher's differs at most in its bank size.
    train_size: training images (the teacher's too: same data), for its schedule's length.
  """
  saved = teacher_config(config)
  path = config.backmix.teacher
  steps_per_epoch = train_size // saved.batch_size
  final = steps_per_epoch * saved.num_epochs
  newest = max(checkpoint_steps(path))
  if newest != final:
    raise CheckpointError(f"backmix.teacher={path!r} is not finished: its newest checkpoint is "
                          f"step {newest} of {final}; finish training it first")
  ckpt = Checkpointer(path, read_only=True)  # another run's workdir: read, never written
  try:
    bank_size = int(ckpt.read_meta(final).get("bank_size", 0))
    # The teacher's own optimiser state structure, so that its whole state restores.
    tx = make_optimizer(saved.optimizer, steps_per_epoch, saved.num_epochs)
    init = jax.jit(lambda rng, x: create_train_state(model, tx, rng, x, bank_size, framework),
                   out_shardings=parallel.replicated(mesh))
    template = init(jax.random.key(0), sample)
    # Named step: an unreadable checkpoint is reported, never moved aside in another workdir.
    state, step = ckpt.restore(template, dict(signature, bank_size=bank_size), final)
  finally:
    ckpt.close()
  log(f"cams   teacher {path}: final checkpoint, step {step}, {saved.model} + {saved.framework}, "
      f"BackMix {'on' if saved.backmix.enabled else 'off'}")
  return {"params": state.params, "batch_stats": state.batch_stats}
