"""Joining a multi-host job from the environment (launcher side; the library reads no variables).

`launch.sweep` calls `join_from_env()` first, before anything touches a device; it reads the
environment and passes explicit arguments to `proteus.sharding.join`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from proteus import sharding


def distributed_method(env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """Which `jax.distributed.initialize` call the environment asks for (method, kwargs).

    Recognised, in order:
      PROTEUS_DISTRIBUTED=0/off: stay single-process.
      JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=P, JAX_PROCESS_ID=i: explicit.
      srun inside a SLURM allocation with SLURM_NTASKS > 1: JAX's SLURM detection; with one
        task per node the process takes all SLURM_GPUS_ON_NODE GPUs (JAX_LOCAL_DEVICE_IDS, if
        set, wins), otherwise one GPU per task as JAX does.
      PROTEUS_DISTRIBUTED=1/on: `jax.distributed.initialize()` with auto-detection (Cloud TPU).
    Otherwise (a plain single process) "single", nothing to initialise.
    """
    mode = env.get("PROTEUS_DISTRIBUTED", "auto").lower()
    if mode in ("0", "off", "false", "no"):
        return "single", {}
    if "JAX_COORDINATOR_ADDRESS" in env and "JAX_NUM_PROCESSES" in env:
        return "env", {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"],
                       "num_processes": int(env["JAX_NUM_PROCESSES"]),
                       "process_id": int(env.get("JAX_PROCESS_ID", "0"))}
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if all(k in env for k in slurm) and int(env["SLURM_NTASKS"]) > 1:
        # JAX's SLURM default gives each task one GPU (its local id); with one task per node
        # the process should own every GPU of its node, so that the runs axis fits in it.
        per_node = env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_STEP_TASKS_PER_NODE", "")
        gpus = env.get("SLURM_GPUS_ON_NODE", "")
        if "JAX_LOCAL_DEVICE_IDS" not in env and gpus.isdigit() and per_node.split("(")[0] == "1":
            return "slurm", {"local_device_ids": list(range(int(gpus)))}
        return "slurm", {}
    if mode in ("1", "on", "true", "yes"):  # e.g. Cloud TPU VM pods: JAX detects the slice
        return "auto", {}
    return "single", {}


def join_from_env(env: Mapping[str, str] | None = None) -> sharding.DistributedInfo:
    """`sharding.join` as the environment (default `os.environ`) describes; idempotent."""
    method, kwargs = distributed_method(os.environ if env is None else env)
    return sharding.join(method, **kwargs)
