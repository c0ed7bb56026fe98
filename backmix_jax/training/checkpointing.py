"""Orbax checkpoints of the train state, with a small JSON record of what model they hold.

Layout: <workdir>/checkpoints/<step>/{state,meta}. `meta` names the model, framework,
classes and input shape, so restoring into an incompatible model fails with one clear
sentence instead of a shape error deep inside Orbax.
"""
from __future__ import annotations

import os
import shutil
import warnings

import flax.serialization
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that belongs to a different model."""


class DamagedCheckpoint(Exception):
  """A checkpoint whose files read but whose values cannot be a trained state (NaN or inf:
  training never saves one, so its bytes changed on disk). Restoring treats it as it treats
  an unreadable one; its message is the predicate of the report ("holds non-finite ...")."""


@jax.jit
def _finite_leaves(leaves):
  """bool [len(leaves)]: whether each array holds only finite values (one program, one sync
  for the whole state instead of one per leaf)."""
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def check_finite(state_dict) -> None:
  """Raise DamagedCheckpoint naming the first floating-point array of `state_dict` (a
  restored state's nested dict) that holds NaN or inf."""
  named = [(jax.tree_util.keystr(path, simple=True, separator="/"), x)
           for path, x in jax.tree_util.tree_flatten_with_path(state_dict)[0]
           if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  if not named:
    return
  finite = jax.device_get(_finite_leaves([x for _, x in named]))
  bad = [name for (name, _), ok in zip(named, finite) if not ok]
  if bad:
    more = f" and {len(bad) - 1} more arrays" if len(bad) > 1 else ""
    raise DamagedCheckpoint(f"holds non-finite weights (NaN or inf in {bad[0]}{more})")


def model_signature(config, known_classes, image_shape, bank_size: int) -> dict:
  """What must match between a checkpoint and the model it is restored into: the network,
  the classes its outputs mean (known class ids in order), and the input it expects."""
  return dict(model=config.model, framework=config.framework,
              num_classes=len(known_classes), known_classes=[int(c) for c in known_classes],
              image_shape=[int(s) for s in image_shape], normalize=config.data.normalize,
              bank_size=int(bank_size))


def _what(error: Exception) -> str:
  """What is wrong with a checkpoint that failed to restore, as a predicate: 'is unreadable
  (<error>: <its first line>)', or a DamagedCheckpoint's own words."""
  if isinstance(error, DamagedCheckpoint):
    return str(error)
  reason = (str(error).strip().splitlines() or [""])[0][:200]
  return f"is unreadable ({type(error).__name__}: {reason})"


class Checkpointer:
  """Saves when asked, keeps the newest `keep` (at least one).

  When to save is the training loop's decision (config.checkpoint_every_steps, the final
  step, a preemption): Orbax's own interval is left at every step, so the two never
  disagree. The newest checkpoint is never deleted, so the final step of a run always
  survives: Orbax's max_to_keep=0 would delete every checkpoint, the final one included.

  A reader's Checkpointer (`read_only=True`: evaluation, the mixing grid, a teacher) creates
  and moves nothing: a damaged newest checkpoint is reported, not moved aside, because
  quarantine belongs to training's resume, the workdir's one writer.
  """

  def __init__(self, workdir: str, *, keep: int = 3, read_only: bool = False):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.read_only = read_only
    # Not Orbax's own read_only option, which logs three warnings on every use; a reader
    # never saves, so Orbax writes nothing, and create=False keeps it from making the folder.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(int(keep), 1), save_interval_steps=1, create=not read_only)
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
    truncated) or holds non-finite values is moved aside to `<step>.corrupt` with a warning
    and the next older one is tried, so a bad write costs only the steps since the previous
    checkpoint. A read-only Checkpointer moves nothing: it reports the damaged newest one.
    Raises CheckpointError when there is none, the model signature differs, or the `step`
    asked for (or, read-only, the newest) is damaged.
    """
    if step is not None:  # asked for by name: reported, never moved aside
      try:
        return self._restore_step(template, signature, step)
      except CheckpointError:
        raise
      except Exception as e:
        raise CheckpointError(self._damaged(step, e) + "; choose another of the steps "
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
        if self.read_only:
          older = [s for s in steps if s != candidate]
          raise CheckpointError(
              self._damaged(candidate, e) + "; it is the newest: "
              + (f"choose an older one of the steps {older} (evaluate --step N), or " if older
                 else "")
              + "run the training command again, which moves it aside and retrains the "
              "steps it held") from None
        self._quarantine(candidate, e)
    raise CheckpointError(f"no readable checkpoint in {self.directory}")

  def remove_unfinished(self) -> list[str]:
    """Remove the temporary folders of saves that never finished (a run stopped by a full
    disk or a kill mid-write); the writer calls this before its first save, so Orbax does
    not meet them (it would remove them itself, with a warning per folder). Returns their
    names. Finished checkpoints are never touched."""
    if self.read_only or jax.process_index() != 0 or not os.path.isdir(self.directory):
      return []
    names = sorted(n for n in os.listdir(self.directory) if ".orbax-checkpoint-tmp" in n)
    for name in names:
      shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    return names

  def _damaged(self, step: int, error: Exception) -> str:
    """'checkpoint at step N in <dir> is unreadable (...)' or '... holds non-finite ...'."""
    return f"checkpoint at step {step} in {self.directory} {_what(error)}"

  def _quarantine(self, step: int, error: Exception):
    path = os.path.join(self.directory, str(step))
    warnings.warn(f"checkpoint at step {step} {_what(error)}; moved to {path}.corrupt, trying an "
                  "older one")
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
    # The first place the checkpoint's values are seen: bit flips on disk end here, not as
    # NaN scores or a NaN loss further on.
    check_finite(restored)
    return flax.serialization.from_state_dict(template, restored), step

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    try:
      self.manager.wait_until_finished()
    finally:  # a failed save (disk full) must not leave Orbax's threads running at exit
      self.manager.close()
