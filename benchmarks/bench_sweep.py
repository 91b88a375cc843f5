"""A vmapped sweep against a Python loop over the same runs: time per training step of S runs.

    python benchmarks/bench_sweep.py                      # 16 runs, quickstart model, 16 lanes
    python benchmarks/bench_sweep.py --runs 8 --lanes 4 --n 5000 --chunks 2

Both sides run the project's compiled chunk (`loop.compile_chunk`: a `lax.scan` of `chunk_size`
steps): the sweep calls one program holding S runs; the loop calls the one-run program S times per
chunk (the compiled program is reused, the best a loop can do). Step times exclude compilation.
Compilation is measured on its own, twice per program: with an empty persistent compilation cache
(cold) and again from that cache (warm, what `JAX_COMPILATION_CACHE_DIR` gives a restarted job or
a loop of jobs). Every printed figure is measured; nothing is extrapolated. One process, one
device; the ratio printed is loop time / sweep time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import jax
import jax.numpy as jnp

from experiments import sweep
from experiments.configs import quickstart
from proteus.pipeline.setup import initial_state, load_splits, make_setup, training_data
from proteus.training import loop, predictor_phase, train


def make_program(n: int, lanes: int, runs: int, variant: str = ""):
    """(config, setup, state, data): seeds 0..runs-1 of the quickstart model on n synthetic rows."""
    config = quickstart.get_config(variant or None)
    config.data.source = f"synthetic:routerbench?n={n}&seed=0&signal=1.0"
    config.lanes.n = lanes
    splits = load_splits(config)
    grid = sweep.default_grid()
    grid.update(dict(seeds=runs, policy_lr=(), dual_lr=()))
    specs = sweep.expand_grid(config, grid)
    setup = make_setup(config, splits, hparams=sweep.grid_hparams(specs))
    init_keys, run_keys = sweep.seed_keys(config.seed, [r.seed for r in specs])
    setup = dataclasses.replace(setup, init_keys=init_keys, run_keys=run_keys)
    state = jax.jit(lambda: initial_state(setup))()
    data = training_data(config, splits)  # with fold ids when cross-fitting
    return config, setup, state, data


def _slice(tree, lo: int, hi: int):
    return jax.tree.map(lambda x: x[lo:hi], tree)


def compile_timed(static, step_fn, chunk_size, state, keys, data, hp, data_axes=None
                  ) -> tuple[object, float, float]:
    """(compiled chunk, seconds to lower and compile cold, the same from the warm cache).

    Cold: the persistent cache (`enable_compilation_cache`) holds no entry for this program yet;
    warm: in-memory caches cleared, the same program compiled again, read from the cache.
    """
    fn = loop.compile_chunk(static, step_fn, chunk_size, data_axes=data_axes)
    times = []
    for _ in range(2):
        jax.clear_caches()
        start = time.perf_counter()
        compiled = fn.lower(state, keys, data, hp).compile()
        times.append(time.perf_counter() - start)
    return compiled, times[0], times[1]


def enable_compilation_cache(path: str) -> None:
    """A persistent compilation cache at `path` that stores every program (no size/time floor)."""
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def time_chunks(compiled, state, keys, data, hp, n_chunks: int) -> float:
    """Seconds per chunk call (state donated and carried; one warm-up call not timed)."""
    state = jax.tree.map(jnp.copy, state)
    state, _ = compiled(state, keys, data, hp)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(n_chunks):
        state, metrics = compiled(state, keys, data, hp)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / n_chunks


def bench_phase(name, step_fn, setup, state, data, n_chunks: int) -> dict[str, float]:
    """Time the phase's chunk for S runs at once and for each run alone; print and return it."""
    static, chunk = setup.static, setup.loop.chunk_size
    s = int(setup.hparams.pred_lr.shape[0])
    axes = data.run_axes()  # the policy phase's per-run predictor outputs lead with S
    vm, vm_cold, vm_warm = compile_timed(static, step_fn, chunk, state, setup.run_keys, data,
                                         setup.hparams, axes)
    t_vmap = time_chunks(vm, state, setup.run_keys, data, setup.hparams, n_chunks)
    per_run = lambda r: data._replace(**{k: getattr(data, k)[r:r + 1]
                                         for k, a in axes._asdict().items() if a == 0})
    one = [(_slice(state, r, r + 1), setup.run_keys[r:r + 1], _slice(setup.hparams, r, r + 1),
            per_run(r)) for r in range(s)]
    single, one_cold, one_warm = compile_timed(static, step_fn, chunk, one[0][0], one[0][1],
                                               one[0][3], one[0][2], axes)
    t_loop = sum(time_chunks(single, st, k, d, hp, n_chunks) for st, k, hp, d in one)
    steps = chunk * s
    print(f"{name:9s} S={s:3d}  vmapped {t_vmap / chunk * 1e3:8.2f} ms/step "
          f"({steps / t_vmap:9,.0f} run-steps/s)   loop {t_loop / chunk * 1e3:8.2f} ms/step "
          f"({steps / t_loop:9,.0f} run-steps/s)   loop/vmapped {t_loop / t_vmap:6.2f}x")
    print(f"{'':9s} compile, cold cache / warm cache: vmapped program {vm_cold:.1f} / "
          f"{vm_warm:.1f} s, one-run program {one_cold:.1f} / {one_warm:.1f} s")
    return {"vmapped_s_per_chunk": t_vmap, "loop_s_per_chunk": t_loop,
            "ratio": t_loop / t_vmap, "compile_vmapped_cold_s": vm_cold,
            "compile_vmapped_warm_s": vm_warm, "compile_one_run_cold_s": one_cold,
            "compile_one_run_warm_s": one_warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16, help="S runs in the sweep")
    parser.add_argument("--lanes", type=int, default=16, help="τ lanes per run")
    parser.add_argument("--n", type=int, default=20_000, help="synthetic queries (all splits)")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunk calls per side")
    parser.add_argument("--variant", default="", help="config variant, e.g. smoke")
    args = parser.parse_args()
    cache = tempfile.TemporaryDirectory(prefix="bench_sweep_cache_")  # empty: the cold compiles
    enable_compilation_cache(cache.name)  # before the first compile, so JAX reads the setting
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPU core(s); quickstart model, {args.lanes} lanes, n={args.n}")
    config, setup, state, data = make_program(args.n, args.lanes, args.runs, args.variant)
    print(f"batch {setup.static.batch_size}, chunk {setup.loop.chunk_size} steps, "
          f"trunk {config.model.hidden}, policy {config.model.policy_hidden}")
    bench_phase("predictor", predictor_phase.predictor_step, setup, state, data["pred"],
                args.chunks)
    # The policy phase trains on the frozen predictor's outputs, computed once (as `loop.fit`).
    state, policy_data = loop.policy_phase_data(setup.static, state, data["policy"])
    bench_phase("policy", train.policy_step, setup, state, policy_data, args.chunks)
    cache.cleanup()


if __name__ == "__main__":
    main()
