"""proteus.training.sharding: mesh sizes, per-host rows, the distributed start, a two-process job.

The tests that need several devices or processes run in their own processes (forced CPU devices
must be set before JAX starts, and `jax.distributed` can be initialised once per process); their
worker functions live here and are started with `python -c`. That a sharded sweep trains what one
device trains is checked in test_sweep.py, next to the one-device sweep it is compared with.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from experiments import distributed
from proteus.training import sharding
from tests.conftest import REPO_ROOT, xla_flags


def _run_worker(call: str, env: dict[str, str], timeout: int = 240) -> dict:
    """Run `tests.test_sharding.<call>` in a fresh interpreter; return its last stdout JSON line."""
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    proc = subprocess.run([sys.executable, "-c", f"import tests.test_sharding as t; t.{call}"],
                          cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- pure helpers


def test_resolve_mesh_shape_auto_gives_runs_first():
    # 8 devices, 4 runs: runs axis 4 (largest divisor of 8 dividing 4), batch takes the other 2.
    assert sharding.resolve_mesh_shape(8, 8, n_runs=4, batch_size=64) == (4, 2)
    # 8 runs: all devices on runs.
    assert sharding.resolve_mesh_shape(8, 8, n_runs=8, batch_size=64) == (8, 1)
    # 3 runs on 8 devices: only 1 divides both, so the batch axis takes all 8.
    assert sharding.resolve_mesh_shape(8, 8, n_runs=3, batch_size=64) == (1, 8)
    assert sharding.resolve_mesh_shape(8, 8, n_runs=4, batch_size=64, runs=2) == (2, 4)
    assert sharding.resolve_mesh_shape(8, 8, n_runs=4, batch_size=64, batch=8) == (1, 8)
    assert sharding.resolve_mesh_shape(1, 1, n_runs=5, batch_size=7) == (1, 1)
    # A sweep pads its runs: 3 runs may take a runs axis of 2 (padded to 4); 6 devices and a
    # batch of 64 leave 3 devices per run shard, of which the batch axis can use 1.
    assert sharding.resolve_mesh_shape(8, 8, n_runs=3, batch_size=64, pad_runs=True) == (2, 4)
    assert sharding.resolve_mesh_shape(6, 6, n_runs=2, batch_size=64, pad_runs=True) == (2, 1)


def test_resolve_mesh_shape_rejects_what_does_not_divide():
    with pytest.raises(ValueError, match="not a multiple of the runs axis"):
        sharding.resolve_mesh_shape(8, 8, n_runs=3, batch_size=64, runs=2)
    with pytest.raises(ValueError, match="batch_size 60 is not a multiple"):
        sharding.resolve_mesh_shape(8, 8, n_runs=1, batch_size=60, runs=1, batch=8)
    with pytest.raises(ValueError, match="> 8 devices"):
        sharding.resolve_mesh_shape(8, 8, n_runs=4, batch_size=64, runs=4, batch=4)
    # Two hosts of 4: the runs axis must stay inside a host and the mesh must use every device.
    with pytest.raises(ValueError, match="devices per host"):
        sharding.resolve_mesh_shape(8, 4, n_runs=8, batch_size=64, runs=8, batch=1)
    assert sharding.resolve_mesh_shape(8, 4, n_runs=8, batch_size=64) == (4, 2)


def test_host_row_range_covers_rows_once():
    assert [sharding.host_row_range(10, i, 3) for i in range(3)] == [
        slice(0, 4), slice(4, 7), slice(7, 10)]
    assert sharding.host_row_range(8, 1, 2) == slice(4, 8)
    assert sharding.host_row_range(5, 0, 1) == slice(0, 5)


def test_fits_evenly():
    assert [sharding.fits_evenly(n, 4) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]



def test_runs_spec_puts_the_leading_axis_on_runs_and_replicates_the_rest():
    assert sharding.runs_spec(0) == PartitionSpec()  # a scalar: replicated
    assert sharding.runs_spec(1) == PartitionSpec("runs")  # [S] per-run scalars
    assert sharding.runs_spec(3) == PartitionSpec("runs", None, None)
    assert sharding.runs_spec(3)[0] == sharding.RUNS


def test_is_primary_only_on_process_zero(monkeypatch):
    assert sharding.is_primary()  # this single-process test run is process 0
    monkeypatch.setattr(sharding.jax, "process_index", lambda: 1)
    assert not sharding.is_primary()


@pytest.mark.parametrize("env, method", [
    ({}, "single"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"}, "env"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
      "SLURM_PROCID": "1"}, "slurm"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
      "SLURM_PROCID": "0"}, "single"),
    ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
      "SLURM_PROCID": "0", "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_GPUS_ON_NODE": "4"},
     "slurm-node"),
    ({"PROTEUS_DISTRIBUTED": "1"}, "auto"),
    ({"PROTEUS_DISTRIBUTED": "off", "JAX_COORDINATOR_ADDRESS": "h:1",
      "JAX_NUM_PROCESSES": "2"}, "single"),
])
def test_distributed_method_from_env(env, method):
    got, kwargs = distributed.distributed_method(env)
    if method == "slurm-node":  # one task per node: it owns the node's 4 GPUs
        assert (got, kwargs) == ("slurm", {"local_device_ids": [0, 1, 2, 3]})
        return
    assert got == method
    if method == "env":
        assert kwargs == {"coordinator_address": "h:1", "num_processes": 4, "process_id": 2}
    if method == "slurm":
        assert kwargs == {}  # JAX's own detection, one GPU per task


def _one_device() -> None:
    if jax.device_count() != 1:  # the mesh sizes below are worked out for one device
        pytest.skip(f"needs exactly one device, this process has {jax.device_count()}")


def test_mesh_for_one_device_is_a_one_by_one_mesh_or_names_what_does_not_fit():
    _one_device()
    # 3 runs, batch 8 on one device: runs axis = the largest divisor of 1 dividing 3 = 1;
    # batch axis = the largest divisor of 1 // 1 = 1 dividing 8 = 1
    mesh = sharding.mesh_for(3, 8)
    assert dict(mesh.shape) == {"runs": 1, "batch": 1}
    assert mesh.axis_names == ("runs", "batch")
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
    assert mesh.devices.tolist() == [[jax.devices()[0]]]
    # runs=2 asked for: batch auto = 1 (1 // 2 = 0 devices left, floored at 1); 2 > 1 device
    with pytest.raises(ValueError,
                       match=r"^mesh \(runs=2, batch=1\): runs\*batch = 2 > 1 devices$"):
        sharding.mesh_for(2, 8, runs=2)
    with pytest.raises(ValueError, match=r"batch_size 7 is not a multiple of the batch axis 2"):
        sharding.mesh_for(1, 7, batch=2)


def test_put_places_host_values_and_keeps_key_types():
    _one_device()
    mesh = sharding.make_mesh(1, 1)
    on_runs = NamedSharding(mesh, sharding.runs_spec(2))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    placed = sharding.put(x, on_runs)
    assert isinstance(placed, jax.Array) and placed.sharding == on_runs
    assert placed.dtype == np.float32 and placed.shape == (2, 3)
    np.testing.assert_array_equal(placed, x)
    ints = sharding.put([[1, 2]], NamedSharding(mesh, PartitionSpec()))  # any array-like
    np.testing.assert_array_equal(ints, [[1, 2]])
    key = jax.random.key(7)
    placed_key = sharding.put(key, NamedSharding(mesh, PartitionSpec()))
    assert jax.dtypes.issubdtype(placed_key.dtype, jax.dtypes.prng_key)  # still a typed key
    assert jax.random.key_impl(placed_key) == jax.random.key_impl(key)
    np.testing.assert_array_equal(jax.random.key_data(placed_key), jax.random.key_data(key))
    assert placed_key.sharding == NamedSharding(mesh, PartitionSpec())


# ----------------------------------------------------------------------------- own processes


def worker_distributed(ckpt_dir: str) -> None:
    """One process of a job: join from env, place runs/rows/data, gather, checkpoint, restore."""
    info = distributed.join_from_env()
    import jax
    import jax.numpy as jnp

    from proteus.training import checkpoint

    n_local = jax.local_device_count()
    mesh = sharding.make_mesh(n_local, info.process_count)  # runs inside hosts, batch across
    place = sharding.Placement(mesh)
    n_runs, n_rows = n_local, 8
    state = {"w": np.arange(n_runs * 3, dtype=np.float32).reshape(n_runs, 3),
             "step": np.zeros(n_runs, np.int32)}
    data = np.arange(n_rows * 2, dtype=np.float32).reshape(n_rows, 2)
    rows = sharding.host_row_range(n_rows)
    by_rows = sharding.put_rows(data[rows], mesh, n_rows)  # this host loaded only its rows

    @jax.jit
    def step(st, d):
        batch = place.constrain_batch(d[jnp.array([7, 0, 3, 4])])
        return {"w": st["w"] + batch.sum(), "step": st["step"] + 1}

    out = step(place.runs(state), by_rows)
    replicated = sharding.fetch(step(place.runs(state), place.replicate(data)))
    ckpt = checkpoint.Checkpointer(ckpt_dir)
    ckpt.save(1, out, {"phase": "policy"}, force=True)
    restored, meta = ckpt.restore(place.runs(state))
    ckpt.close()
    print(json.dumps({
        "info": info._asdict(), "rows": [rows.start, rows.stop],
        "w": np.asarray(out["w"]).tolist(), "w_replicated": replicated["w"].tolist(),
        "restored": np.asarray(restored["w"]).tolist(), "meta": meta,
        "restored_spec": str(restored["w"].sharding.spec)}))


def test_distributed_init_from_env_single_process(tmp_path):
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "1",
           "JAX_PROCESS_ID": "0",
           "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2")}
    out = _run_worker(f"worker_distributed({str(tmp_path / 'ckpt')!r})", env)
    assert out["info"] == {"method": "env", "process_index": 0, "process_count": 1,
                           "local_devices": 2, "devices": 2}
    expected = (np.arange(6).reshape(2, 3) + 60.0).tolist()  # rows 7, 0, 3, 4 sum to 60
    assert out["w"] == out["w_replicated"] == out["restored"] == expected
    assert out["meta"] == {"phase": "policy"}


def test_two_local_processes(tmp_path):
    """Two CPU processes joined by jax.distributed: rows per host, gathers, Orbax multi-host."""
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2",
           "XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2"),
           "JAX_PLATFORMS": "cpu"}
    call = f"import tests.test_sharding as t; t.worker_distributed({str(tmp_path / 'ck')!r})"
    procs = [subprocess.Popen([sys.executable, "-c", call], cwd=REPO_ROOT, text=True,
                              env={**os.environ, **env, "JAX_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    expected = (np.arange(6).reshape(2, 3) + 60.0).tolist()
    for i, r in enumerate(results):
        assert r["info"]["process_index"] == i and r["info"]["devices"] == 4
        assert r["rows"] == [[0, 4], [4, 8]][i]
        assert r["w"] == r["w_replicated"] == r["restored"] == expected
        assert r["restored_spec"] == "P('runs', None)"
