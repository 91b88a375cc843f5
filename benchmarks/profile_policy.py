"""Where a policy step's time goes: per-HLO-op times from jax.profiler, grouped by what they do.

    python benchmarks/profile_policy.py                 # K = 1 and K = 32, bench_core's sizes
    python benchmarks/profile_policy.py --lanes 1,8,32 --top 15

The compiled `train.policy_step` is traced with `jax.profiler.trace` (--repeats calls after a
warm-up), every executed HLO op's duration is read back with `jax.profiler.ProfileData` and mapped
to its `op_name` metadata in the compiled HLO, and summed into groups: the frozen predictor, the
policy's shared z-projection, the per-lane policy head (matrix products, and the rest), the Beta
sampler, the Beta log-density/entropy (special functions), and everything else. Printed per K:
op time per step in each group and per lane, then the --top single ops. Op times are summed over
threads, so on a loaded machine they exceed wall time; compare groups, not totals with bench_core.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import re
import tempfile

import bench_core  # benchmarks/ is on sys.path when run as a script
import jax

from proteus.training import train

# (group, pattern on the op_name metadata); the first group whose pattern matches wins.
GROUPS = (
    ("Beta sampler", r"beta_sample|_gamma|_beta\b"),
    ("Beta log-prob/entropy", r"digamma|lgamma|betaln|trigamma"),
    ("policy z-projection (shared)", r"PolicyHead\.project|z_proj"),
    ("policy head: matmuls (per lane)",
     r"PolicyHead.*/(hidden|beta_params|cond_0|cond_proj)/(dot_general|transpose)$"),
    ("policy head: elementwise (per lane)", r"PolicyHead"),
    ("predictor (frozen, shared)", r"Predictor"),
)


def op_times(fn, repeats: int) -> collections.Counter:
    """Mean duration (ns) per call of each executed HLO op, summed over threads."""
    jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir):
            for _ in range(repeats):
                jax.block_until_ready(fn())
        path = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]
        data = jax.profiler.ProfileData.from_file(path)
    totals = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if "python" in line.name:
                continue
            for event in line.events:
                if "ThunkExecutor" in event.name or "Await" in event.name:
                    continue  # executor bookkeeping spans, not ops
                totals[event.name] += event.duration_ns / repeats
    return totals


def op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> its op_name metadata (the JAX source path of the op)."""
    pattern = r"%([\w.\-]+) = .*?metadata=\{op_name=\"([^\"]+)\""
    return {m.group(1): m.group(2) for m in re.finditer(pattern, hlo_text)}


def group_of(op_name: str) -> str:
    for group, pattern in GROUPS:
        if re.search(pattern, op_name):
            return group
    return "other (routing rule, rewards, optimiser, copies)"


def profile(args: argparse.Namespace, n_lanes: int) -> None:
    static, stats, data = bench_core.make_problem(args, n=args.batch)
    batch = train.Batch(data.features, data.scores, data.costs)
    state = bench_core.one_state(static, stats, jax.random.key(0), n_lanes)
    step = jax.jit(functools.partial(train.policy_step, static))
    call = (state, jax.random.key(1), batch, bench_core.hparams())
    names = op_names(step.lower(*call).compile().as_text())
    times = op_times(lambda: step(*call), args.repeats)
    groups = collections.Counter()
    for op, ns in times.items():
        groups[group_of(names.get(op, op))] += ns / 1e6
    total = sum(groups.values())
    print(f"K={n_lanes}: {total:.2f} ms of op time per step ({total / n_lanes:.3f} ms per lane)")
    for group, ms in groups.most_common():
        print(f"    {ms:8.3f} ms  {100 * ms / total:5.1f}%  {group}")
    if args.top:
        print(f"    top {args.top} ops:")
        for op, ns in times.most_common(args.top):
            print(f"      {ns / 1e6:8.3f} ms  {op:24s} {names.get(op, '')[:90]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lanes", default="1,32", help="comma-separated K to profile")
    p.add_argument("--repeats", type=int, default=10, help="traced calls per K")
    p.add_argument("--top", type=int, default=0, help="also list the N costliest single ops")
    args, rest = p.parse_known_args(argv)
    sizes = bench_core.parse_args(rest)  # --batch, --hidden, ... as in bench_core
    for key in ("repeats", "top"):
        setattr(sizes, key, getattr(args, key))
    for k in (int(k) for k in args.lanes.split(",")):
        profile(sizes, k)


if __name__ == "__main__":
    main()
