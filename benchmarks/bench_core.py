"""Speed of the core training program: τ lanes under vmap, and independent runs under vmap.

    python benchmarks/bench_core.py            # full sizes (B=256, D=64, M=11, hidden 256/128)
    python benchmarks/bench_core.py --quick    # smaller and fewer repeats, for a smoke check

(a) τ lanes. One policy step with K lanes, each lane on the whole batch, against the same K lanes
    computed one after another (K calls of a jitted K=1 step on the same batch). The vmapped step
    shares the trunk, p̂, ĉ and the policy's z-projection across lanes; the loop recomputes them
    per lane. Printed: the step time at each K and the ratio loop / vmapped at --lanes.
(b) Independent runs. S runs (seeds / swept hyperparameters) in one compiled chunk against the
    S runs one after another (one compiled S=1 chunk called S times): the same total work. The
    one program is timed twice: every run vmapped (`run_batch` all: an accelerator's default) and
    as the training loop runs it on this backend (`loop.runs_at_once`: on a lone CPU device, runs
    whose widest activation is >= 512 KiB go in sequence inside the program). Printed: the
    ratios loop / one program (>= 1 means packing runs into one program costs nothing).

Every function is compiled (warmed up) before it is timed; times are medians over --repeats.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import common
from proteus.pipeline import config as config_lib
from proteus.training import loop, networks, predictor_phase, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="queries per step (B)")
    p.add_argument("--features", type=int, default=64, help="feature dimension (D)")
    p.add_argument("--models", type=int, default=11, help="number of models (M)")
    p.add_argument("--hidden", type=int, default=256, help="trunk width")
    p.add_argument("--policy-hidden", type=int, default=128, help="policy head width")
    p.add_argument("--lanes", type=int, default=32, help="K for the lanes ratio in (a)")
    p.add_argument("--lane-sweep", type=str, default="1,8,16,32,64",
                   help="comma-separated K whose step times (a) reports")
    p.add_argument("--runs", type=int, default=16, help="S independent runs in (b)")
    p.add_argument("--run-lanes", type=int, default=16, help="K lanes of each run in (b)")
    p.add_argument("--chunk", type=int, default=10, help="steps per compiled chunk in (b)")
    p.add_argument("--queries", type=int, default=5000, help="rows of the data in (b)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    p.add_argument("--run-batch", type=int, default=0,
                   help="runs vmapped together in (b)'s second program (0: the loop's own "
                        "choice on this backend, `loop.runs_at_once`; 1: one after another)")
    p.add_argument("--only", choices=("lanes", "runs"), default=None,
                   help="run only part (a) or part (b)")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes and fewer repeats (a smoke check, not a measurement)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.hidden, args.policy_hidden = 64, 64, 32
        args.lanes, args.lane_sweep, args.runs, args.run_lanes = 8, "1,8", 4, 4
        args.chunk, args.queries, args.repeats = 5, 1000, 3
    return args


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` (which must block on its results) after one warm-up call."""
    return median_times([fn], repeats)[0]


def median_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall times of several blocking functions, timed in alternation.

    Alternating (a, b, a, b, ...) rather than (a, a, ..., b, b, ...) exposes both to the same
    background load, so their ratio is fair on a shared machine. Each is warmed up first.
    """
    for fn in fns:
        fn()  # compile and warm caches
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def make_problem(args: argparse.Namespace, n: int, seed: int = 0):
    """Random features, scores and costs of n queries, and the static config and data stats."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, args.features)).astype(np.float32)
    scores = (rng.uniform(size=(n, args.models)) < 0.7).astype(np.float32)
    costs = rng.lognormal(-8.0, 1.0, size=(n, args.models)).astype(np.float32)
    base = common.base_config()  # every other setting as the config has it, one predictor
    spec = config_lib.router_spec(base, args.models, args.features, 0)._replace(
        hidden=args.hidden, policy_hidden=args.policy_hidden, folds=1, groups=0)
    static = config_lib.static_config(base, spec)._replace(batch_size=args.batch)
    stats = networks.data_stats(features, costs)
    data = train.Batch(jnp.asarray(features), jnp.asarray(scores), jnp.asarray(costs))
    return static, stats, data


def hparams(n_runs: int | None = None) -> train.HParams:
    values = dict(pred_lr=1e-3, policy_lr=3e-4, ent_coef=1e-3, dual_lr=0.5, margin=0.015)
    shape = () if n_runs is None else (n_runs,)
    return train.HParams(**{k: jnp.full(shape, v, jnp.float32) for k, v in values.items()})


def one_state(static: train.StaticConfig, stats, key: jax.Array, n_lanes: int):
    params = networks.init_params(static.spec, key, stats)
    return train.init_state(static, params, jnp.linspace(0.6, 0.95, n_lanes), jnp.asarray(1.0))


# ----------------------------------------------------------------------------- (a) lanes


def bench_lanes(args: argparse.Namespace) -> None:
    static, stats, data = make_problem(args, n=args.batch)
    batch = train.Batch(data.features, data.scores, data.costs)  # the whole batch, every lane
    step = jax.jit(functools.partial(train.policy_step, static))
    key, hp = jax.random.key(1), hparams()
    init = jax.jit(functools.partial(one_state, static, stats), static_argnums=1)

    def run_step(state):
        return lambda: jax.block_until_ready(step(state, key, batch, hp))

    sweep = sorted({int(k) for k in args.lane_sweep.split(",")} | {1, args.lanes})
    times = {}
    for k in sweep:
        times[k] = median_time(run_step(init(jax.random.key(0), k)), args.repeats)
    print(f"(a) policy step, B={args.batch} D={args.features} M={args.models} "
          f"hidden={args.hidden}/{args.policy_hidden}:")
    for k in sweep:
        print(f"    K={k:3d}: {times[k] * 1e3:8.2f} ms/step   {times[k] / k * 1e3:7.3f} ms/lane")

    # K lanes one after another: K calls of the compiled K=1 step, one lane state each.
    lane_states = [init(jax.random.key(0), 1) for _ in range(args.lanes)]
    lane_states = [s.replace(lane_taus=s.lane_taus * 0 + t)
                   for s, t in zip(lane_states, np.linspace(0.6, 0.95, args.lanes), strict=True)]

    def sequential():
        out = [step(s, key, batch, hp) for s in lane_states]
        return jax.block_until_ready(out)

    vectorised = run_step(init(jax.random.key(0), args.lanes))
    t_vec, t_seq = median_times([vectorised, sequential], args.repeats)
    print(f"    {args.lanes} lanes vmapped in one step: {t_vec * 1e3:.2f} ms; one after another "
          f"({args.lanes} calls of the K=1 step): {t_seq * 1e3:.2f} ms")
    print(f"    ratio sequential / vmapped = {t_seq / t_vec:.2f}x  (target >= 4x)")
    k_hi = max(sweep)
    marginal = (times[k_hi] - times[1]) / (k_hi - 1)
    print(f"    marginal cost of a lane ≈ {marginal * 1e3:.2f} ms (K=1 -> K={k_hi}) vs "
          f"{times[1] * 1e3:.2f} ms for a K=1 step: the lanes ratio is bounded by about "
          f"{times[1] / marginal:.1f}x")


# ----------------------------------------------------------------------------- (b) runs


def time_runs(static: train.StaticConfig, phase: str, step_fn, states: train.TrainState,
              run_keys: jax.Array, data: train.Batch, hp: train.HParams,
              args: argparse.Namespace) -> tuple[float, float, float, str]:
    """Median chunk times of the S runs of `phase` ("predictor" or "policy") vmapped, in one
    program as the loop runs them here (or with --run-batch), and one after another; then how
    that second program packed the runs."""
    s = run_keys.shape[0]
    chunk = loop.compile_chunk(static, step_fn, args.chunk)
    group = loop.runs_at_once(args.run_batch, False,
                              loop.widest_activation(static, phase, args.run_lanes))
    default = loop.compile_chunk(static, step_fn, args.chunk, run_batch=group)
    sliced = lambda tree, r: jax.tree.map(lambda x: x[r:r + 1], tree)
    # Everything a run needs is sliced before timing; states are threaded through the calls
    # (each chunk donates its input), so every timed call does the same work.
    together = {"state": jax.tree.map(jnp.copy, states)}
    packed = {"state": jax.tree.map(jnp.copy, states)}
    alone = [{"state": sliced(states, r), "key": run_keys[r:r + 1], "hp": sliced(hp, r)}
             for r in range(s)]

    def vmapped():
        together["state"], metrics = chunk(together["state"], run_keys, data, hp)
        return jax.block_until_ready((together["state"], metrics))

    def as_trained():
        packed["state"], metrics = default(packed["state"], run_keys, data, hp)
        return jax.block_until_ready((packed["state"], metrics))

    def one_by_one():
        out = []
        for run in alone:
            run["state"], metrics = chunk(run["state"], run["key"], data, run["hp"])
            out.append((run["state"], metrics))
        return jax.block_until_ready(out)

    t_vec, t_default, t_seq = median_times([vmapped, as_trained, one_by_one], args.repeats)
    how = "all vmapped" if group is None else f"groups of {group} in sequence"
    return t_vec, t_default, t_seq, how


def bench_runs(args: argparse.Namespace) -> None:
    static, stats, data = make_problem(args, n=args.queries)
    s = args.runs
    init = jax.jit(jax.vmap(lambda k: one_state(static, stats, k, args.run_lanes)))
    states = init(jax.random.split(jax.random.key(0), s))
    run_keys = jax.random.split(jax.random.key(1), s)
    hp = hparams(s)
    hp = hp._replace(policy_lr=hp.policy_lr * jnp.linspace(0.5, 2.0, s))  # a sweep: per-run HPs
    print(f"(b) {s} runs x {args.run_lanes} lanes, chunks of {args.chunk} steps, "
          f"B={args.batch} D={args.features} M={args.models} "
          f"hidden={args.hidden}/{args.policy_hidden}:")
    for name, step_fn in (("predictor", predictor_phase.predictor_step),
                          ("policy", train.policy_step)):
        t_vec, t_default, t_seq, how = time_runs(static, name, step_fn, states, run_keys, data, hp,
                                                 args)
        which = f"--run-batch {args.run_batch}" if args.run_batch else "as the loop runs it here"
        print(f"    {name:9s}: one by one {t_seq * 1e3:8.2f} ms/chunk; one program, all vmapped "
              f"{t_vec * 1e3:8.2f} ms ({t_seq / t_vec:.2f}x); {which} ({how}) "
              f"{t_default * 1e3:8.2f} ms ({t_seq / t_default:.2f}x)  (ratio target >= 0.9)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = jax.devices()[0]
    print(f"jax {jax.__version__}; device {device.platform}:{device.device_kind} "
          f"({jax.device_count()} device(s)); {os.cpu_count()} CPU cores visible"
          + ("; --quick" if args.quick else ""))
    if args.only in (None, "lanes"):
        bench_lanes(args)
    if args.only in (None, "runs"):
        bench_runs(args)


if __name__ == "__main__":
    main()
