"""Accelerator benchmark: train 8 seeds x 64 τ lanes on a RouterBench-sized set, then route.

    python benchmarks/bench_gpu.py --out=bench_gpu.json     # on a GPU/TPU host (all devices)
    python benchmarks/bench_gpu.py --tiny                    # a CPU check of the script itself
    python benchmarks/bench_gpu.py --dry-run                 # compile the full-size programs only

The data are the synthetic RouterBench preset at the size of the full benchmark (36,497 queries x
11 models; `synthetic:routerbench?n=36497`), the model is the quickstart one (trunk 256, policy
128, batch 256, 3,000 predictor steps at most with early stopping, 2,000 policy steps), and the
8 seeds are vmapped into one program per phase (on several devices: split along "runs", see
`proteus.training.sharding`). Reported: wall time to train (with and without compilation),
steady-state time per step, XLA's memory for the policy program against the sweep planner's
estimate, the test-split quality of the runs, and decisions per second, both for evaluation
(`route_grid`: every test query at every τ of the grid) and for serving-style batches
(`networks.route`).
--tiny shrinks everything (2,000 queries, 2 seeds, 4 lanes, the :smoke model). --dry-run (any
backend, CPU included) builds the full-size setup and compiles, without running, the programs the
real run executes: both training chunks and the serving `route`; it prints their compile times and
XLA's memory analysis, so a broken program shows up before an accelerator is booked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from experiments import sweep, sweep_plan
from experiments.configs import quickstart
from proteus.evaluation import results
from proteus.pipeline import routing
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import initial_state, load_splits, make_setup
from proteus.training import loop, networks, predictor_phase, sharding, train


def build(args):
    # The engine on the preset's 64-d features, as earlier runs of this benchmark timed it (the
    # quickstart itself now reads text with the 1,024-d hashing encoder).
    config = quickstart.get_config("smoke,precomputed" if args.tiny else "precomputed")
    config.data.source = f"synthetic:routerbench?n={args.n}&seed=0&signal=1.0"
    config.lanes.n = args.lanes
    # The training engine's speed on the two-split scheme: its chunks and data layout are what
    # this times (cross-fitting runs the predictor phase's step F times and is not timed here).
    config.train.folds, config.model.groups = 1, 0
    start = time.perf_counter()
    splits = load_splits(config)
    grid = sweep.default_grid()
    grid.update(dict(seeds=args.seeds, policy_lr=(), dual_lr=()))
    specs = sweep.expand_grid(config, grid)
    setup = make_setup(config, splits, hparams=sweep.grid_hparams(specs))
    init_keys, run_keys = sweep.seed_keys(config.seed, [r.seed for r in specs])
    setup = dataclasses.replace(setup, init_keys=init_keys, run_keys=run_keys)
    return config, splits, specs, setup, time.perf_counter() - start


def train_timed(config, splits, setup, placement):
    """Train through both phases; returns (state, timings) from per-chunk host timestamps."""
    data = {n: train.Batch.from_dataset(splits[n]) for n in ("pred", "policy", "val")}
    start = time.perf_counter()
    state = jax.jit(lambda: initial_state(setup))()
    keys, hp, constrain = setup.run_keys, setup.hparams, None
    if placement is not None:
        state, data = placement.runs(state), placement.replicate(data)
        keys, hp = placement.runs(keys), placement.runs(hp)
        constrain = placement.constrain_batch
    jax.block_until_ready(state)
    stamps = {"predictor": [], "policy": []}
    last = [time.perf_counter()]

    def on_metrics(phase, step, metrics):
        now = time.perf_counter()
        stamps[phase].append(now - last[0])
        last[0] = now

    state = loop.fit(setup.static, setup.loop, state, keys, hp, data, progress=False,
                     callbacks=loop.Callbacks(on_metrics=on_metrics), constrain=constrain)
    jax.block_until_ready(state)
    total = time.perf_counter() - start
    chunk = setup.loop.chunk_size
    timing = {"train_wall_s": total, "init_s": total - sum(map(sum, stamps.values()))}
    for phase, ts in stamps.items():
        steady = float(np.median(ts[1:])) if len(ts) > 1 else ts[0]
        timing[f"{phase}_steps"] = len(ts) * chunk
        timing[f"{phase}_ms_per_step"] = steady / chunk * 1e3
        timing[f"{phase}_first_chunk_s"] = ts[0]  # includes compiling the phase's program
        timing[f"{phase}_compile_s_est"] = max(ts[0] - steady, 0.0)
    timing["train_wall_without_compile_s"] = total - timing["init_s"] - sum(
        timing[f"{p}_compile_s_est"] for p in stamps)
    return state, timing


def abstract_chunk_args(config, setup, n_rows: int, placement):
    """Shapes (no values) of a training chunk's (state, keys, data, hp), laid out as in a run."""
    spec, f32 = setup.static.spec, jnp.float32
    data = train.Batch(jax.ShapeDtypeStruct((n_rows, spec.feature_dim), f32),
                          jax.ShapeDtypeStruct((n_rows, spec.n_models), f32),
                          jax.ShapeDtypeStruct((n_rows, spec.n_models), f32))
    state = jax.eval_shape(lambda: initial_state(setup))
    keys, hp = setup.run_keys, setup.hparams
    if placement is not None:
        mesh = placement.mesh

        def runs(x):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(
                mesh, sharding.runs_spec(len(x.shape))))

        state, keys, hp = jax.tree.map(runs, state), placement.runs(keys), placement.runs(hp)
        data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=NamedSharding(mesh, PartitionSpec())), data)
    return state, keys, data, hp


def compile_chunk(config, setup, step_fn, n_rows: int, placement):
    """The compiled (never run) chunk of `step_fn` at the run's shapes."""
    fn = loop.compile_chunk(setup.static, step_fn, setup.loop.chunk_size,
                            constrain=placement.constrain_batch if placement else None)
    return fn.lower(*abstract_chunk_args(config, setup, n_rows, placement)).compile()


def memory_of(compiled) -> dict[str, float]:
    mem = compiled.memory_analysis()
    return {k: float(getattr(mem, k)) for k in (
        "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
        if hasattr(mem, k)}


def policy_memory(config, setup, n_rows: int, placement) -> dict[str, float]:
    """XLA's memory analysis of the compiled policy chunk vs the sweep planner's estimate."""
    s = int(setup.hparams.pred_lr.shape[0])
    shards = placement.mesh.shape[sharding.BATCH] if placement is not None else 1
    runs_axis = placement.mesh.shape[sharding.RUNS] if placement is not None else 1
    est = sweep_plan.estimate_run_bytes(config, setup, shards) * s / runs_axis
    out = {"estimate_bytes_per_device": float(est)}
    try:
        out.update(memory_of(compile_chunk(config, setup, train.policy_step, n_rows, placement)))
    except Exception as e:  # memory analysis is backend-dependent; the benchmark goes on
        out["error"] = repr(e)
    return out


def dry_run(config, splits, setup, placement, serving_batch: int) -> dict:
    """Compile both training chunks and `networks.route` at full size; nothing is executed."""
    report = {}
    for phase, step_fn, split in (("predictor", predictor_phase.predictor_step, "pred"),
                                  ("policy", train.policy_step, "policy")):
        start = time.perf_counter()
        compiled = compile_chunk(config, setup, step_fn, splits[split].n_queries, placement)
        report[f"{phase}_chunk_compile_s"] = time.perf_counter() - start
        report[f"{phase}_chunk_memory"] = memory_of(compiled)
    spec = setup.static.spec
    state = jax.eval_shape(lambda: initial_state(setup))
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state.params)
    vec = jax.ShapeDtypeStruct((serving_batch,), jnp.float32)
    feats = jax.ShapeDtypeStruct((serving_batch, spec.feature_dim), jnp.float32)
    start = time.perf_counter()
    jax.jit(networks.route, static_argnums=0).lower(spec, one, feats, vec, vec).compile()
    report["route_compile_s"] = time.perf_counter() - start
    return report


def decisions_per_second(setup, state, test, taus, batch: int, seconds: float) -> dict:
    """Evaluation (`route_grid`, all runs) and serving-style (`networks.route`) decision rates."""
    host = sharding.fetch(state)
    feats = jnp.asarray(test.features, jnp.float32)
    s = int(host.step.shape[0])

    def grid_all():
        return [routing.route_split(setup, host, r, test, taus).model for r in range(s)]

    jax.block_until_ready(grid_all())
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        jax.block_until_ready(grid_all())
        count += s * len(taus) * test.n_queries
    eval_rate = count / (time.perf_counter() - start)
    one = run_slice(host, 0)
    route = jax.jit(networks.route, static_argnums=0)
    x = jnp.resize(feats, (batch, feats.shape[1]))
    tau = jnp.full((batch,), 0.9, jnp.float32)
    lam = networks.lambda_of_tau(one.lane_taus, one.duals.lam_avg, tau)
    jax.block_until_ready(route(setup.static.spec, one.params, x, tau, lam))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        jax.block_until_ready(route(setup.static.spec, one.params, x, tau, lam).model)
        count += batch
    serve_rate = count / (time.perf_counter() - start)
    return {"eval_route_grid_decisions_per_s": eval_rate, "serving_batch": batch,
            "serving_decisions_per_s": serve_rate}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized check of the script")
    parser.add_argument("--dry-run", action="store_true",
                        help="compile the programs (at full size unless --tiny), run nothing")
    parser.add_argument("--out", default="", help="write the report as JSON here")
    parser.add_argument("--seconds", type=float, default=3.0, help="per decision-rate timing")
    args = parser.parse_args(argv)
    backend = jax.default_backend()
    if backend == "cpu" and not (args.tiny or args.dry_run):
        print("no accelerator found (JAX backend: cpu); run on a GPU/TPU host, or pass --tiny "
              "to check the script on CPU")
        return
    args.n, args.seeds, args.lanes = (2000, 2, 4) if args.tiny else (36_497, 8, 64)
    config, splits, specs, setup, load_s = build(args)
    placement = None
    if jax.device_count() > 1:
        placement = sharding.Placement(sharding.mesh_for(len(specs), setup.static.batch_size))
    devices = jax.devices()
    print(f"{len(devices)} x {devices[0].device_kind} ({backend}); {args.seeds} seeds x "
          f"{args.lanes} lanes on {splits['pred'].n_models} models, {args.n} queries"
          + (f"; mesh {dict(placement.mesh.shape)}" if placement else ""))
    serving_batch = 512 if args.tiny else 8192
    if args.dry_run:
        report = dry_run(config, splits, setup, placement, serving_batch)
        print("dry run (compiled, nothing executed): " + json.dumps(
            results.to_jsonable(report), sort_keys=True))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results.to_jsonable(report), f, indent=1)
        return report
    state, timing = train_timed(config, splits, setup, placement)
    timing["load_and_setup_s"] = load_s
    taus = routing.eval_taus(config, sharding.fetch(state.lane_taus)[0])  # run 0's lanes
    rates = decisions_per_second(setup, state, splits["test"], taus, serving_batch, args.seconds)
    host = sharding.fetch(state)
    rows = [sweep.evaluate_run(config, setup, host, i, spec, 0, splits, taus, 0.9)
            for i, spec in enumerate(specs)]
    report = {"device": devices[0].device_kind, "n_devices": len(devices), "backend": backend,
              "tiny": args.tiny, "n_queries": args.n, "seeds": args.seeds, "lanes": args.lanes,
              **timing, **rates, "memory": policy_memory(config, setup, splits["policy"].n_queries,
                                        placement),
              "runs": rows}
    print(f"train: {timing['train_wall_s']:.1f} s wall ({timing['predictor_steps']} predictor + "
          f"{timing['policy_steps']} policy steps; {timing['train_wall_without_compile_s']:.1f} s "
          f"without compilation); {timing['predictor_ms_per_step']:.2f} ms/predictor step, "
          f"{timing['policy_ms_per_step']:.2f} ms/policy step (all {args.seeds} runs)")
    print(f"decisions/s: evaluation route_grid {rates['eval_route_grid_decisions_per_s']:,.0f}; "
          f"serving batches of {rates['serving_batch']}: "
          f"{rates['serving_decisions_per_s']:,.0f}")
    print(f"policy program memory per device: {report['memory']}")
    print(sweep.markdown_table(rows, sweep.best_run(rows)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results.to_jsonable(report), f, indent=1)
    return report


if __name__ == "__main__":
    main()
