"""Orbax checkpoints of the train state, with a small JSON record of what model they hold.

Layout: <workdir>/checkpoints/<step>/{state,meta}. `meta` names the model, framework,
classes and input shape, so restoring into an incompatible model fails with one clear
sentence instead of a shape error deep inside Orbax.
"""
from __future__ import annotations

import os
import warnings

import flax.serialization
import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that belongs to a different model."""


def model_signature(config, known_classes, image_shape, bank_size: int) -> dict:
  """What must match between a checkpoint and the model it is restored into: the network,
  the classes its outputs mean (known class ids in order), and the input it expects."""
  return dict(model=config.model, framework=config.framework,
              num_classes=len(known_classes), known_classes=[int(c) for c in known_classes],
              image_shape=[int(s) for s in image_shape], normalize=config.data.normalize,
              bank_size=int(bank_size))


class Checkpointer:
  """Saves when asked, keeps the newest `keep` (at least one).

  When to save is the training loop's decision (config.checkpoint_every_steps, the final
  step, a preemption): Orbax's own interval is left at every step, so the two never
  disagree. The newest checkpoint is never deleted, so the final step of a run always
  survives: Orbax's max_to_keep=0 would delete every checkpoint, the final one included.
  """

  def __init__(self, workdir: str, *, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(int(keep), 1), save_interval_steps=1, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, meta: dict, *, force: bool = False) -> bool:
    """Asynchronous save; returns whether a checkpoint was started at this step."""
    return self.manager.save(
        step, force=force,
        args=ocp.args.Composite(state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                                meta=ocp.args.JsonSave(dict(meta, step=int(step)))))

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, template, signature: dict, step: int | None = None):
    """Restore `step` into the structure and shardings of `template`.

    Without `step`, the newest readable checkpoint: one that fails to read (corrupted,
    truncated) is moved aside to `<step>.corrupt` with a warning and the next older one is
    tried, so a bad write costs only the steps since the previous checkpoint. Raises
    CheckpointError when there is none, the model signature differs, or the `step` asked
    for cannot be read.
    """
    if step is not None:  # asked for by name: reported, never moved aside
      try:
        return self._restore_step(template, signature, step)
      except CheckpointError:
        raise
      except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"checkpoint at step {step} in {self.directory} is unreadable "
                              f"({type(e).__name__}: {reason}); choose another of the steps "
                              f"{self.all_steps()}") from None
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    for candidate in sorted(steps, reverse=True):
      try:
        return self._restore_step(template, signature, candidate)
      except CheckpointError:
        raise
      except Exception as e:  # unreadable: keep it for inspection, out of Orbax's way
        self._quarantine(candidate, e)
    raise CheckpointError(f"no readable checkpoint in {self.directory}")

  def _quarantine(self, step: int, error: Exception):
    path = os.path.join(self.directory, str(step))
    warnings.warn(f"checkpoint at step {step} is unreadable ({type(error).__name__}: "
                  f"{str(error)[:200]}); moved to {path}.corrupt, trying an older one")
    if jax.process_index() == 0 and os.path.isdir(path):
      os.replace(path, path + ".corrupt")
    self.manager.reload()

  def _restore_step(self, template, signature: dict, step: int):
    if step not in self.all_steps():
      raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; "
                            f"available: {self.all_steps()}")
    meta = self.read_meta(step)
    saved = {k: meta.get(k) for k in signature}
    if saved != signature:
      diff = ", ".join(f"{k}: checkpoint {saved[k]!r} vs config {signature[k]!r}"
                       for k in signature if saved[k] != signature[k])
      raise CheckpointError(f"checkpoint at step {step} in {self.directory} holds a different "
                            f"model ({diff}); use another --workdir")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(template))
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    return flax.serialization.from_state_dict(template, restored), step

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    try:
      self.manager.wait_until_finished()
    finally:  # a failed save (disk full) must not leave Orbax's threads running at exit
      self.manager.close()
