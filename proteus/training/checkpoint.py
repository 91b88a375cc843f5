"""Training checkpoints (Orbax), checksummed.

Training checkpoints hold the whole `TrainState` (with its [S] run axis) plus a small JSON of host
state (phase, config); they are periodic, keep the last N, and resume from the latest step.
Exported artifacts' parameters are written and read by `proteus.serving.artifact` (`save_params`
/ `load_params`), which needs no trainer code.

Integrity: after Orbax finalises a step, `CHECKSUM_FILE` in the step directory records the SHA-256
of every file Orbax wrote. `restore` verifies a step (Orbax's metadata present and readable, every
recorded file present with its recorded hash) before Orbax reads it, so a truncated, deleted or
bit-flipped file is found by name instead of surfacing as a TensorStore traceback or, worse, as a
silently different state. Restoring the latest step falls back to the newest intact one with a
warning and moves the damaged newer steps aside (to `<directory>.damaged/`), so that training can
write those steps again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from proteus.training import loop

CHECKSUM_FILE = "proteus_checksums.json"
ORBAX_METADATA = "_CHECKPOINT_METADATA"  # Orbax's own per-step metadata (JSON)
ITEMS = ("state", "meta")  # the Composite items of a training checkpoint


class CheckpointError(RuntimeError):
    """No intact checkpoint to restore; the message names each step and what is wrong with it."""


def file_digests(step_dir: str) -> dict[str, str]:
    """{relative path: sha256 hex} of every file under `step_dir` but the checksum file."""
    out = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel == CHECKSUM_FILE:
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return dict(sorted(out.items()))


def write_checksums(step_dir: str) -> None:
    """Record the digests of a finalised step (atomically: a partial file never verifies)."""
    payload = {"version": 1, "files": file_digests(step_dir)}
    tmp = os.path.join(step_dir, f".{CHECKSUM_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=0)
    os.replace(tmp, os.path.join(step_dir, CHECKSUM_FILE))


def verify_step(step_dir: str, require_checksums: bool = True) -> str | None:
    """What is wrong with a saved step, or None when it is intact.

    Checks Orbax's step metadata (present, valid JSON), that every item directory exists, and,
    when a checksum file is required or present, every recorded file's presence and hash.
    """
    if not os.path.isdir(step_dir):
        return "the step directory is missing"
    problem = _orbax_metadata_problem(step_dir)
    if problem:
        return problem
    sums_path = os.path.join(step_dir, CHECKSUM_FILE)
    if not os.path.exists(sums_path):
        return f"{CHECKSUM_FILE} is missing (cannot verify)" if require_checksums else None
    try:
        with open(sums_path) as f:
            recorded = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{CHECKSUM_FILE} is unreadable ({type(e).__name__})"
    actual = file_digests(step_dir)
    for rel, digest in recorded.items():
        if rel not in actual:
            return f"file {rel} is missing"
        if actual[rel] != digest:
            return f"file {rel} does not match its checksum (truncated or modified)"
    return None


def _orbax_metadata_problem(step_dir: str) -> str | None:
    meta_path = os.path.join(step_dir, ORBAX_METADATA)
    if not os.path.exists(meta_path):
        return f"Orbax metadata {ORBAX_METADATA} is missing"
    try:
        with open(meta_path) as f:
            json.load(f)
    except (OSError, ValueError) as e:
        return f"Orbax metadata {ORBAX_METADATA} is unreadable ({type(e).__name__})"
    missing = [item for item in ITEMS if not os.path.isdir(os.path.join(step_dir, item))]
    return f"item director{'ies' if len(missing) > 1 else 'y'} {missing} missing" if missing \
        else None


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` for one training workdir.

    Args:
      directory: checkpoints go to `<directory>` (created if missing).
      max_to_keep: keep the last N steps (the config's `checkpoint.max_to_keep`); None keeps every
        step (a reader that restores and never saves).
      save_interval_steps: Orbax's save interval: `save` writes when `step % interval == 0`
        (the host loop may call it every chunk); `force=True` saves regardless.
    """

    def __init__(self, directory: str, max_to_keep: int | None = None,
                 save_interval_steps: int = 1):
        self.directory = os.path.abspath(directory)
        # Orbax's default policy also saves the first step of a run; the interval alone is what a
        # `checkpoint.every_chunks` setting means.
        policy = ocp.checkpoint_managers.FixedIntervalPolicy(max(1, int(save_interval_steps)))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False,
                                               save_decision_policy=policy)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> bool:
        """Save `state` (a pytree of arrays) and `meta` (JSON-able) at `step` when the interval
        (or `force`) says so and the step is not saved yet; True if written."""
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(meta))
        if not self._manager.save(step, args=args, force=force):
            return False
        self._manager.wait_until_finished()
        if jax.process_index() == 0:  # one writer; the step is final once Orbax returns
            write_checksums(self.step_dir(step))
        return True

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restore (state, meta) into the structure of `template`, verified first.

        With `step`, that step or a `CheckpointError`. Without, the newest intact step: damaged
        newer steps are reported in a warning and moved to `<directory>.damaged/`, after which
        `latest_step()` is the restored step.

        Raises:
          FileNotFoundError: no checkpoint at all.
          CheckpointError: the step asked for (or every step) is damaged; names each problem.
        """
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        # Checkpoints written before checksums existed are still verified against Orbax's own
        # metadata; once any step has checksums, a step without them counts as damaged.
        legacy = not any(os.path.exists(os.path.join(self.step_dir(s), CHECKSUM_FILE))
                         for s in steps)
        if legacy:
            logging.warning("%s: checkpoints predate checksums; restoring unverified",
                            self.directory)
        damaged: dict[int, str] = {}
        for candidate in ([step] if step is not None else steps):
            problem = verify_step(self.step_dir(candidate), require_checksums=not legacy)
            if problem is None:
                try:
                    restored = self._orbax_restore(template, candidate)
                except Exception as e:  # noqa: BLE001 (Orbax/TensorStore raise many types)
                    problem = f"Orbax could not read it ({type(e).__name__}: {_first_line(e)})"
            if problem is None:
                self._set_aside(damaged, restored_step=candidate)
                return restored
            damaged[candidate] = problem
        listing = "; ".join(f"step {s}: {p}" for s, p in damaged.items())
        raise CheckpointError(
            f"{self.directory}: no intact checkpoint to restore ({listing}). Remove the "
            "directory to train from scratch, or restore a backup of it.")

    def _orbax_restore(self, template: Any, step: int) -> tuple[Any, dict[str, Any]]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  meta=ocp.args.JsonRestore())
        restored = self._manager.restore(step, args=args)
        return restored["state"], dict(restored["meta"])

    def _set_aside(self, damaged: dict[int, str], restored_step: int) -> None:
        """Warn about damaged steps newer than the restored one and move them out of the way."""
        if not damaged:
            return
        for bad, problem in damaged.items():
            logging.warning("checkpoint step %d in %s is damaged (%s); falling back to step %d",
                            bad, self.directory, problem, restored_step)
        if jax.process_index() == 0:
            aside = f"{self.directory}.damaged"
            os.makedirs(aside, exist_ok=True)
            for bad in damaged:
                target = os.path.join(aside, str(bad))
                n = 1
                while os.path.exists(target):
                    target, n = os.path.join(aside, f"{bad}.{n}"), n + 1
                shutil.move(self.step_dir(bad), target)
            logging.warning("moved damaged step(s) %s to %s", sorted(damaged), aside)
        self._manager.reload()  # forget the moved steps: training writes them again

    def close(self) -> None:
        self._manager.close()


class CheckpointCallback(loop.Callback):
    """Training checkpoints as a `proteus.pipeline.train` callback.

    Resumes from the newest intact step in `directory` (nothing there: a fresh start), saves
    every `every_steps` steps and at both phase ends (`loop.Callbacks`), and records `meta`
    (JSON-able: the config's name, say) with each step's phase.
    """

    def __init__(self, directory: str, every_steps: int, max_to_keep: int | None,
                 meta: dict[str, Any] | None = None):
        self.checkpointer = Checkpointer(directory, max_to_keep=max_to_keep,
                                         save_interval_steps=every_steps)
        self.meta = dict(meta or {})

    def restore(self, state: Any, phase: str) -> tuple[Any, str]:
        if self.checkpointer.latest_step() is None:
            return state, phase
        state, meta = self.checkpointer.restore(state)
        logging.info("resumed from step %d (%s phase)", self.checkpointer.latest_step(),
                     meta["phase"])
        return state, meta["phase"]

    def save(self, phase: str, state: Any, phase_end: bool) -> None:
        # every `every_steps` steps (Orbax's interval) and, forced, at phase ends
        self.checkpointer.save(int(np.asarray(state.step)[0]), state,
                               {"phase": phase, **self.meta}, force=phase_end)

    def close(self) -> None:
        self.checkpointer.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""
