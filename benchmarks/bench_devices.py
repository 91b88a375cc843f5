"""Policy-step time against the number of τ lanes and the number of devices.

    python benchmarks/bench_devices.py                       # 8 forced CPU devices
    python benchmarks/bench_devices.py --devices 4 --lanes 4,16 --runs 8 --n 5000

Lanes: one device, S runs, K lanes each. Devices: the same S runs on meshes of 1, 2, 4, ... devices,
once along "runs" (runs split over devices, no communication) and once along "batch" (each step's
minibatch split, gradients all-reduced). On a CPU the devices are forced host devices
(`--xla_force_host_platform_device_count`) that share the machine's cores, so the device rows show
the partitioning overhead, not a speed-up beyond the physical core count; on an accelerator host
the same script measures real devices. Ratios are relative to the first row of each table.
"""

from __future__ import annotations

import argparse
import os
import sys


def _args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=8, help="forced CPU devices (max mesh)")
    parser.add_argument("--runs", type=int, default=8, help="S runs per program")
    parser.add_argument("--lanes", default="4,16,64", help="lane counts for the lanes table")
    parser.add_argument("--mesh_lanes", type=int, default=16, help="lanes in the devices table")
    parser.add_argument("--n", type=int, default=20_000, help="synthetic queries (all splits)")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunk calls per row")
    parser.add_argument("--variant", default="", help="config variant, e.g. smoke")
    return parser.parse_args()


ARGS = _args()
# Forced host devices must be requested before JAX starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={ARGS.devices}")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sweep import compile_timed, make_program, time_chunks  # noqa: E402

from proteus.training import sharding, train  # noqa: E402


def step_ms(setup, state, data, n_chunks: int, placement=None) -> tuple[float, float]:
    """(ms per policy step of all S runs, compile seconds) with an optional placement."""
    keys, hp = setup.run_keys, setup.hparams
    constrain = None
    if placement is not None:
        state, keys, hp = placement.runs(state), placement.runs(keys), placement.runs(hp)
        data = placement.replicate(data)
        constrain = placement.constrain_batch
    compiled, seconds = compile_timed(setup.static, train.policy_step, setup.loop.chunk_size,
                                      state, keys, data, hp, constrain)
    per_chunk = time_chunks(compiled, state, keys, data, hp, n_chunks)
    return per_chunk / setup.loop.chunk_size * 1e3, seconds


def lanes_table(lanes: list[int]) -> None:
    print(f"\npolicy step vs lanes (1 device, S={ARGS.runs} runs)")
    print(f"{'lanes':>6} {'ms/step':>9} {'us/lane-run-step':>17} {'x first':>8} {'compile s':>10}")
    first = None
    for k in lanes:
        _, setup, state, data = make_program(ARGS.n, k, ARGS.runs, ARGS.variant)
        ms, comp = step_ms(setup, state, data["policy"], ARGS.chunks)
        first = first or ms
        print(f"{k:6d} {ms:9.2f} {ms * 1e3 / (k * ARGS.runs):17.2f} {ms / first:8.2f} "
              f"{comp:10.1f}")


def devices_table() -> None:
    _, setup, state, data = make_program(ARGS.n, ARGS.mesh_lanes, ARGS.runs, ARGS.variant)
    batch = setup.static.batch_size
    print(f"\npolicy step vs devices (S={ARGS.runs} runs, {ARGS.mesh_lanes} lanes, batch {batch};"
          f" {jax.device_count()} {jax.default_backend()} devices on {os.cpu_count()} cores)")
    print(f"{'axis':>6} {'devices':>8} {'ms/step':>9} {'speed-up':>11} {'compile s':>10}")
    base, _ = step_ms(setup, state, data["policy"], ARGS.chunks)
    print(f"{'-':>6} {1:8d} {base:9.2f} {1.0:11.2f} {'':>10}")
    sizes = [d for d in (2, 4, 8, 16, 32) if d <= jax.device_count()]
    for axis in (sharding.RUNS, sharding.BATCH):
        for d in sizes:
            if (axis == sharding.RUNS and ARGS.runs % d) or (axis == sharding.BATCH and batch % d):
                continue
            shape = (d, 1) if axis == sharding.RUNS else (1, d)
            placement = sharding.Placement(sharding.make_mesh(*shape))
            ms, comp = step_ms(setup, state, data["policy"], ARGS.chunks, placement)
            print(f"{axis:>6} {d:8d} {ms:9.2f} {base / ms:11.2f} {comp:10.1f}")


def main() -> None:
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPU core(s); n={ARGS.n}, variant {ARGS.variant or 'full'}")
    lanes_table([int(k) for k in ARGS.lanes.split(",")])
    devices_table()


if __name__ == "__main__":
    main()
