"""Packing a sweep's runs into compiled programs by device memory (used by `experiments.sweep`).

One run's bytes come from XLA's memory analysis of its policy chunk at the real shapes
(`run_bytes`), or a constant estimate where the backend reports none (`estimate_run_bytes`); runs
sharing a lanes value are packed into as few equal programs as fit the per-device budget
(`plan_groups`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from proteus.data.dataset import RoutingDataset
from proteus.pipeline.setup import Setup, initial_state, training_data
from proteus.training import loop, sharding, train

_CPU_BUDGET_GB = 4.0  # when the device reports no memory limit


class RunSpec(NamedTuple):
    """One run of the grid."""

    index: int
    seed: int
    lanes: int
    pred_lr: float
    policy_lr: float
    ent_coef: float
    dual_lr: float
    margin: float


class Group(NamedTuple):
    """Runs trained by one compiled program; `runs` padded to `size` by repeating the last."""

    index: int
    lanes: int
    runs: tuple[int, ...]
    size: int

    def padded(self) -> tuple[int, ...]:
        return self.runs + (self.runs[-1],) * (self.size - len(self.runs))



def nbytes(tree: Any) -> int:
    """Bytes of every array leaf of `tree` (shapes and dtypes only; works on ShapeDtypeStructs)."""
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def estimate_run_bytes(config: ml_collections.ConfigDict, setup: Setup,
                       batch_shards: int = 1) -> int:
    """Device bytes one run needs inside a compiled chunk (an estimate, on the high side).

    state: the exact [1]-run TrainState (params, both Adam states, best predictor, duals), twice
    (the step's new state is built before the old one is released). Activations of one step, with
    the backward pass ~3x the forward: the predictor on B rows (features, two trunk layers, heads)
    and, per τ lane, the policy head on the same rows; split over `batch_shards` devices.
    """
    one = dataclasses.replace(setup, init_keys=setup.init_keys[:1])
    state_bytes = nbytes(jax.eval_shape(lambda: initial_state(one)))
    spec, b, k = setup.static.spec, setup.static.batch_size, int(setup.init.lane_taus.shape[0])
    per_row = spec.feature_dim + 2 * spec.hidden + 6 * spec.n_models
    per_lane_row = 32 + 2 * spec.policy_hidden + 16  # cond layer, z/cond proj, hidden, samples
    act = 3 * 4 * b * (per_row + k * per_lane_row) // max(batch_shards, 1)
    metrics_bytes = 4 * config.train.chunk_size * k * 8
    return 2 * state_bytes + act + metrics_bytes


def run_bytes(config: ml_collections.ConfigDict, setup: Setup,
              splits: dict[str, RoutingDataset], batch_shards: int = 1) -> int:
    """Device bytes one run needs in the policy chunk, from XLA's memory analysis.

    The policy chunk (the larger phase: K lanes) is compiled, never run, for ONE run at the real
    shapes. Per run: its own inputs (state, hyperparameters, the frozen predictor's outputs; the
    data every run shares is budgeted once by `_plan`), the outputs XLA does not write over the
    donated state, and XLA's temporaries, split over `batch_shards` devices. Where the backend
    reports no memory analysis, `estimate_run_bytes` with a logged note.
    """
    try:
        mem = _policy_chunk_memory(config, setup, splits)
    except Exception as e:  # noqa: BLE001 (backend-dependent; planning must go on)
        mem, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "the backend reports no memory analysis"
    if mem is None:
        logging.info("sweep: %s; packing runs by the constant estimate", why)
        return estimate_run_bytes(config, setup, batch_shards)
    return int(mem.run_inputs + mem.output - mem.alias + mem.temp // max(batch_shards, 1))


class _ChunkMemory(NamedTuple):
    """Bytes of the one-run policy chunk: its per-run inputs, and XLA's output, alias, temp."""

    run_inputs: int
    output: int
    alias: int
    temp: int


def _policy_chunk_memory(config: ml_collections.ConfigDict, setup: Setup,
                         splits: dict[str, RoutingDataset]) -> _ChunkMemory | None:
    """Memory analysis of the one-run policy chunk at the real shapes (None: not reported)."""
    one = dataclasses.replace(setup, init_keys=setup.init_keys[:1], run_keys=setup.run_keys[:1],
                              hparams=jax.tree.map(lambda x: x[:1], setup.hparams))
    data = training_data(config, splits)["policy"]
    state, data = jax.eval_shape(
        lambda d: loop.policy_phase_data(setup.static, initial_state(one), d),
        data)
    chunk = loop.compile_chunk(setup.static, train.policy_step, config.train.chunk_size,
                               data_axes=data.run_axes())
    mem = chunk.lower(state, one.run_keys, data, one.hparams).compile().memory_analysis()
    if mem is None:
        return None
    # XLA's argument size leaves out inputs the program never reads (here the shared features),
    # so the per-run inputs are counted from their shapes.
    own = [x for x, axis in zip(data, data.run_axes(), strict=True) if axis is not None]
    return _ChunkMemory(nbytes((state, one.hparams, own)), int(mem.output_size_in_bytes),
                        int(mem.alias_size_in_bytes), int(mem.temp_size_in_bytes))


def memory_budget(grid: ml_collections.ConfigDict) -> int:
    """Per-device bytes for training state and activations."""
    if grid.memory_budget_gb > 0:
        return int(grid.memory_budget_gb * 2**30)
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit // 2) if limit else int(_CPU_BUDGET_GB * 2**30)


def plan_groups(runs: list[RunSpec], per_run_bytes: dict[int, int], budget: int,
                runs_axis: int = 1, max_runs: int = 0) -> list[Group]:
    """Pack runs into as few compiled programs as fit `budget` bytes per device.

    One program per lanes value at least; within it, equal groups of at most
    `floor(budget / per_run_bytes) * runs_axis` runs (each device holds its share of the runs
    axis), sizes a multiple of `runs_axis` (padding repeats a run and is not reported).
    """
    groups: list[Group] = []
    for k in sorted({r.lanes for r in runs}):
        members = [r.index for r in runs if r.lanes == k]
        per_device = max(1, budget // max(per_run_bytes[k], 1))
        cap = per_device * runs_axis
        if max_runs > 0:
            cap = min(cap, max(runs_axis, max_runs // runs_axis * runs_axis))
        n_groups = math.ceil(len(members) / cap)
        size = sharding.fits_evenly(math.ceil(len(members) / n_groups), runs_axis)
        for g in range(n_groups):
            chunk = tuple(members[g * size:(g + 1) * size])
            if chunk:
                groups.append(Group(len(groups), k, chunk, size))
    return groups
