"""All Orbax use in the project: training checkpoints and parameter pytrees for export.

Training checkpoints hold the whole `TrainState` (with its [S] run axis) plus a small JSON of host
state (phase, config); they are periodic, keep the last N, and resume from the latest step.
Exported artifacts use `save_pytree` / `load_pytree`, which need no trainer code to read.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` for one training workdir.

    Args:
      directory: checkpoints go to `<directory>` (created if missing).
      max_to_keep: keep the last N steps.
      save_every: save only when `step % save_every == 0` (the host loop may call `save` every
        chunk); `force=True` saves regardless.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, save_every: int = 1):
        self.directory = os.path.abspath(directory)
        self._save_every = max(1, int(save_every))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> bool:
        """Save `state` (a pytree of arrays) and `meta` (JSON-able) at `step`; True if written."""
        if not force and step % self._save_every:
            return False
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restore (state, meta) at `step` (default latest) into the structure of `template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  meta=ocp.args.JsonRestore())
        restored = self._manager.restore(step, args=args)
        return restored["state"], dict(restored["meta"])

    def close(self) -> None:
        self._manager.close()


def save_pytree(path: str, tree: Any) -> None:
    """Write a pytree of arrays (nested dicts/lists) to `path` (a new directory)."""
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(path), jax.device_get(tree))
    checkpointer.wait_until_finished()


def load_pytree(path: str) -> Any:
    """Read a pytree written by `save_pytree` as nested dicts of numpy arrays."""
    checkpointer = ocp.StandardCheckpointer()
    restored = checkpointer.restore(os.path.abspath(path))
    return jax.tree.map(np.asarray, restored)
