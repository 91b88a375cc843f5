"""`train(config, splits)`: both training phases of S vmapped runs, with no workdir.

Checkpoints, resume and logging attach as callbacks (`proteus.training.loop.Callback`): a
`proteus.training.checkpoint.CheckpointCallback` resumes from and writes Orbax checkpoints,
`History` keeps the per-chunk metrics in memory, and any `fn(phase, step, metrics)` is called
after every chunk (brax's progress_fn). The workdir layer (`experiments/runs.py`) is this call
with a checkpoint directory, a `metrics.jsonl` writer and a lock around it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from proteus.pipeline.setup import Setup, Splits, initial_state, make_setup, training_data
from proteus.training import loop
from proteus.training import train as train_lib
from proteus.training.sharding import Placement

Hook = loop.Callback | Callable[[str, int, dict], None]


class History(loop.Callback):
    """Every chunk's metrics, in memory: `records` is a list of {"phase", "step", name: [S]
    values as lists} (what `metrics.jsonl` holds, one dict per line)."""

    def __init__(self):
        self.records: list[dict[str, Any]] = []

    def on_metrics(self, phase: str, step: int, metrics: dict) -> None:
        self.records.append(metrics_record(phase, step, metrics))


def metrics_record(phase: str, step: int, metrics: dict) -> dict[str, Any]:
    """One chunk's metrics as a JSON-able record: {"phase", "step", name: nested lists}."""
    return {"phase": phase, "step": step,
            **{k: np.asarray(v).tolist() for k, v in metrics.items()}}


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained program of S runs: what `evaluate` and `export` take.

    config: the training config; splits: the data it trained on (and is evaluated on);
    setup: `make_setup`'s derivation; state: the final `TrainState`, [S] leaves.
    """

    config: ml_collections.ConfigDict
    splits: Splits
    setup: Setup
    state: train_lib.TrainState

    def run(self, run: int) -> train_lib.TrainState:
        """Run `run`'s final state (leaves without the [S] axis)."""
        return run_slice(self.state, run)


def run_slice(tree: Any, run: int) -> Any:
    """Run `run` of an [S]-batched pytree: each leaf [S, ...] -> [...].

    A tree of device arrays is sliced by one compiled program per tree structure (`run` is
    traced): leaf by leaf, each leaf shape compiled its own slice (about 30 small programs for a
    training state). Host (numpy) leaves are sliced as numpy. (Like JAX indexing, a run out of
    range is clamped on device arrays.)
    """
    leaves = jax.tree.leaves(tree)
    if leaves and all(isinstance(x, jax.Array) for x in leaves):
        return _device_run_slice(tree, run)
    return jax.tree.map(lambda x: x[run], tree)


@jax.jit
def _device_run_slice(tree: Any, run: int) -> Any:
    return jax.tree.map(lambda x: x[run], tree)


def train(config: ml_collections.ConfigDict, splits: Splits, *, callbacks: Sequence[Hook] = (),
          setup: Setup | None = None, placement: Placement | None = None,
          progress: bool = True) -> Trained:
    """Train (or, with a checkpoint callback, resume) the configured runs.

    Args:
      config: a training config (`experiments/configs/*.py:get_config`); not modified.
      splits: `load_splits(config)`, or any {"pred", "policy", "val", "calib", "test"} datasets
        with features.
      callbacks: `loop.Callback`s and `fn(phase, step, metrics)` functions, run in order. Each
        callback's `restore` sees the state the previous one returned.
      setup: `make_setup(config, splits)` made by the caller (a sweep sets its own keys and
        hyperparameters); None derives it.
      placement: puts the runs and minibatches on a device mesh (`proteus.training.sharding`);
        None trains on the default device.
      progress: show a progress bar per phase.

    Returns:
      `Trained` with the final [S]-run state.
    """
    setup = setup or make_setup(config, splits)
    data = training_data(config, splits)
    hooks = loop.as_callbacks(callbacks)
    state, phase = initial_state(setup), "predictor"
    if placement is not None:  # sharding hook: runs on the mesh (a restore keeps it), data whole
        state, data = placement.runs(state), placement.replicate(data)
        setup = dataclasses.replace(setup, run_keys=placement.runs(setup.run_keys),
                                    hparams=placement.runs(setup.hparams))
    try:
        for hook in hooks:
            state, phase = hook.restore(state, phase)
        state = loop.fit(setup.static, setup.loop, state, setup.run_keys, setup.hparams, data,
                         phase=phase, callbacks=loop.combine(hooks), progress=progress,
                         constrain=placement.constrain_batch if placement is not None else None)
    finally:
        for hook in hooks:
            hook.close()
    return Trained(config, splits, setup, state)
