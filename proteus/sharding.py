"""Runs and batches across devices and hosts with JAX's own SPMD machinery.

One 2-D `jax.sharding.Mesh` with axes ("runs", "batch"):

- "runs" splits the vmapped run axis [S] of every `TrainState` leaf, run key and `HParams` leaf.
  Runs are independent, so this axis needs no communication; it is how a sweep uses more devices.
- "batch" splits each step's minibatch [B] (data parallelism): the chunk draws the minibatch
  indices on device from `fold_in(run_key, step)` out of a replicated dataset, and
  `Placement.constrain_batch` tells XLA's SPMD partitioner to lay the gathered rows out along
  "batch"; the partitioner then all-reduces gradients and batch means. Random draws use the
  partitionable threefry, so a sharded run samples what one device samples and only the order of
  reductions changes.

The inputs carry `NamedSharding`s; `jax.jit` does the rest (no shard_map, no pmap). Over several
hosts the batch axis spans the hosts and the runs axis stays inside each host (`make_mesh`), so
every process holds the whole [S] state and the host loop's reads (`np.asarray(state.step)`) and
Orbax checkpoints work unchanged; more hosts add data parallelism (a bigger batch axis), more
devices per host add runs per program.

Multi-host start: `join` calls `jax.distributed.initialize` with the arguments the launcher read
from the environment (`experiments.distributed`), before anything touches a device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

RUNS = "runs"
BATCH = "batch"
AXES = (RUNS, BATCH)


# ----------------------------------------------------------------------------- mesh


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def resolve_mesh_shape(n_devices: int, local_devices: int, n_runs: int, batch_size: int,
                       runs: int = -1, batch: int = -1, pad_runs: bool = False) -> tuple[int, int]:
    """The (runs, batch) sizes of the mesh; -1 means "auto".

    Auto gives devices to the runs axis first (independent runs need no communication): the
    largest divisor of the per-host device count that divides `n_runs` (with `pad_runs`, that is
    at most `n_runs`: the caller pads the runs to a multiple). The batch axis takes the largest
    share of the remaining devices that divides `batch_size`.

    Args:
      n_devices: global device count; local_devices: devices per process.
      n_runs: S, runs per compiled program.
      batch_size: B per step (a multiple of the batch axis is required).
      runs, batch: requested sizes, or -1.
      pad_runs: S need not be a multiple of the runs axis.

    Returns:
      (runs, batch) with runs * batch <= n_devices.

    Raises:
      ValueError: sizes that do not divide S, B or the devices, with what would.
    """
    n_procs = n_devices // local_devices
    if runs <= 0 and batch > 0:
        runs = max(1, n_devices // batch)
    elif runs <= 0:
        runs = max(d for d in _divisors(local_devices)
                   if (d <= n_runs if pad_runs else n_runs % d == 0))
    if batch <= 0:
        batch = max(b for b in _divisors(max(1, n_devices // runs)) if batch_size % b == 0)
    problems = []
    if runs * batch > n_devices:
        problems.append(f"runs*batch = {runs * batch} > {n_devices} devices")
    if n_runs % runs and not pad_runs:
        problems.append(f"{n_runs} runs are not a multiple of the runs axis {runs}")
    if batch_size % batch:
        problems.append(f"batch_size {batch_size} is not a multiple of the batch axis {batch}")
    if n_procs > 1 and (runs * batch != n_devices or local_devices % runs):
        problems.append(f"over {n_procs} processes the mesh must use all {n_devices} devices "
                        f"and the runs axis must divide the {local_devices} devices per host")
    if problems:
        raise ValueError(f"mesh (runs={runs}, batch={batch}): " + "; ".join(problems))
    return runs, batch


def make_mesh(runs: int, batch: int, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("runs", "batch") mesh of runs * batch devices, both axes `AxisType.Auto`.

    Over several processes the batch axis is laid across them (one block of `batch / P` per
    process) and each process holds all `runs` positions, so it has every run's full state.
    """
    devices = list(jax.devices() if devices is None else devices)
    n_procs = len({d.process_index for d in devices})
    types = (AxisType.Auto, AxisType.Auto)
    if n_procs == 1:
        return jax.make_mesh((runs, batch), AXES, axis_types=types,
                             devices=devices[: runs * batch])
    if batch % n_procs:
        raise ValueError(f"batch axis {batch} must be a multiple of the {n_procs} processes")
    grid = mesh_utils.create_hybrid_device_mesh((runs, batch // n_procs), (1, n_procs), devices,
                                                process_is_granule=True)
    return Mesh(grid, AXES, axis_types=types)


def mesh_for(n_runs: int, batch_size: int, runs: int = -1, batch: int = -1,
             pad_runs: bool = False) -> Mesh:
    """`make_mesh` over this job's devices with sizes from `resolve_mesh_shape`."""
    shape = resolve_mesh_shape(jax.device_count(), jax.local_device_count(), n_runs, batch_size,
                               runs, batch, pad_runs)
    mesh = make_mesh(*shape)
    logging.info("mesh %s over %d process(es)", dict(mesh.shape), jax.process_count())
    return mesh


# ----------------------------------------------------------------------------- placement


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def put(x: Any, sharding: NamedSharding) -> jax.Array:
    """A global array with `sharding` from a value every process holds in full.

    Each process materialises only the shards of its own devices (`make_array_from_callback`), so
    this is the multi-host way to place data that every host loaded; typed PRNG keys keep their
    type.
    """
    if _is_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(put(jax.random.key_data(x), sharding), impl=impl)
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def runs_spec(ndim: int) -> PartitionSpec:
    """Leading run axis on "runs", everything else replicated (scalars per run: [S])."""
    return PartitionSpec(RUNS, *([None] * (ndim - 1))) if ndim else PartitionSpec()


class Placement(NamedTuple):
    """Where a vmapped training program's inputs live on `mesh`.

    runs(tree): every leaf's leading [S] axis along "runs" (TrainState, run keys, HParams).
    replicate(tree): whole on every device (the datasets, a few MB).
    constrain_batch(batch): inside the jitted step, the minibatch rows along "batch".
    """

    mesh: Mesh

    def runs(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: put(x, NamedSharding(self.mesh, runs_spec(np.ndim(x)))),
                            tree)

    def replicate(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: put(x, NamedSharding(self.mesh, PartitionSpec())), tree)

    def constrain_batch(self, batch: Any) -> Any:
        """Batch leaves [B, ...] of ONE run laid out along "batch" (the run axis vmap adds is
        left to the partitioner, which follows the state's "runs" sharding)."""
        if self.mesh.shape[BATCH] == 1:
            return batch
        spec = NamedSharding(self.mesh, PartitionSpec(BATCH))
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, spec), batch)


def fetch(tree: Any) -> Any:
    """Every leaf as a host numpy array on every process (all-gathered where it must be).

    Typed PRNG keys come back as their key data. In a multi-process job every process must call
    it (the gather is a collective).
    """
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if _is_key(x):
                x = jax.random.key_data(x)
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.random.key_data(x) if _is_key(x) else x)

    return jax.tree.map(one, tree)


# ----------------------------------------------------------------------------- per-host data


def host_row_range(n_rows: int, process_index: int | None = None,
                   process_count: int | None = None) -> slice:
    """The contiguous block of `n_rows` that one process loads (sizes differ by at most one)."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    base, extra = divmod(n_rows, count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


def put_rows(local_rows: np.ndarray, mesh: Mesh, n_rows: int) -> jax.Array:
    """A global [N, ...] array sharded by rows along "batch" from each process's own block.

    `local_rows` is this process's `host_row_range(n_rows)` slice (a process never reads the
    others' rows). XLA's gather from a row-sharded operand returns exactly what a replicated one
    does, so this trades memory for a collective per gather. N must be a multiple of the batch
    axis and blocks must follow the device order, hence equal blocks (N a multiple of P).
    """
    n_batch = mesh.shape[BATCH]
    if n_rows % n_batch or n_rows % jax.process_count():
        raise ValueError(f"{n_rows} rows cannot be split evenly over the batch axis ({n_batch}) "
                         f"and {jax.process_count()} processes; keep the data replicated")
    spec = PartitionSpec(BATCH, *([None] * (np.ndim(local_rows) - 1)))
    global_shape = (n_rows, *np.shape(local_rows)[1:])
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec),
                                                  np.asarray(local_rows), global_shape)


# ----------------------------------------------------------------------------- multi-host start


class DistributedInfo(NamedTuple):
    """How this process joined: method "single" (no initialize), "env", "slurm", "auto",
    "already"."""

    method: str
    process_index: int
    process_count: int
    local_devices: int
    devices: int


def join(method: str = "single", **kwargs: Any) -> DistributedInfo:
    """Join a multi-process JAX job: `jax.distributed.initialize(**kwargs)` unless `method` is
    "single" or this process has joined already; call before any device use. Idempotent.

    The launcher decides `method` and `kwargs` (see `experiments.distributed`, which reads them
    from the environment); the library reads no environment variables.
    """
    if jax.distributed.is_initialized():
        method = "already"
    elif method != "single":
        jax.distributed.initialize(**kwargs)
    info = DistributedInfo(method, jax.process_index(), jax.process_count(),
                           jax.local_device_count(), jax.device_count())
    if method != "single":
        logging.info("distributed: %s", info)
    return info


def is_primary() -> bool:
    """True on the process that writes shared files (tables, JSON, logs)."""
    return jax.process_index() == 0


def fits_evenly(n: int, k: int) -> int:
    """The smallest multiple of k that is >= n (a group of runs padded to the runs axis)."""
    return int(math.ceil(n / k) * k)
