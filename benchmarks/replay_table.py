"""The online section's tables from replay.json files (`python -m launch.replay` outputs).

    python benchmarks/replay_table.py runs/replay/rb_*/seed*/replay.json runs/replay/mmlu_*/...
    python benchmarks/replay_table.py --summary runs/replay/*/seed*/replay.json

One row per replay: per router "long-run accuracy / share of windows below τ − 0.02 / recovery /
cost vs the static certified router", the online router's checks and whether the static router
falls short; for --via=both files the HTTP router's cell and the share of requests where both
online routers chose the same model. --summary: one row per (artifact, τ, scenario) over its
seeds: the online router's worst numbers, its cost range, and how many replays pass every check
(in-process, and through HTTP where it ran; a seed replayed both ways counts once).
"""

from __future__ import annotations

import argparse
import collections
import json
import os


def cell(s: dict) -> str:
    rec = s["recovery"]
    rec = "–" if not rec else ("never" if rec[0] is None else str(rec[0]))
    return (f"{s['long_run_accuracy']:.3f} / {s['share_windows_below']:.1%} / {rec} / "
            f"{s['cost_vs_static_certified']:.4f}")


def failed_checks(checks: dict, cost: float, scenario: str) -> list[str]:
    """The online router's failed checks (the issue's: windows, long run, recovery, stationary
    cost <= 1.0x, regression cost <= 2x)."""
    failed = [k for k, v in checks.items() if v is False and k != "static_falls_short"]
    if scenario == "model_regression" and cost > 2.0:
        failed.append("regression cost > 2x")
    return failed


def verdict(checks: dict, cost: float, scenario: str) -> str:
    failed = failed_checks(checks, cost, scenario)
    return "pass" if not failed else "**fails " + ", ".join(failed) + "**"


def row(path: str) -> str:
    p = json.load(open(path))
    r, name = p["routers"], "online" if "online" in p["routers"] else "online_http"
    falls = p["checks"]["static_falls_short"]
    out = [f"{p['tau']:g}", p["scenario"], str(p["config"]["seed"]), cell(r["static"]),
           cell(r["static_certified"]), cell(r[name]),
           verdict(p["checks"], r[name]["cost_vs_static_certified"], p["scenario"]),
           "–" if falls is None else ("yes" if falls else "**no**")]
    out.append(f"{cell(r['online_http'])} ({p['agreement']['same_model']:.2%} same model)"
               if "online_http" in r and name == "online" else "–")
    return "| " + " | ".join(out) + " |"


def main(paths: list[str]) -> None:
    print("| τ | scenario | seed | static | static certified | online | online checks "
          "| static falls short | online through HTTP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path))


def summary(paths: list[str]) -> None:
    groups: dict[tuple, dict[int, dict]] = collections.defaultdict(dict)
    for path in paths:  # one replay per seed: a --via=both one over an in-process one
        p = json.load(open(path))
        seeds = groups[(os.path.basename(p["artifact"]), p["tau"], p["scenario"])]
        if "online_http" in p["routers"] or p["config"]["seed"] not in seeds:
            seeds[p["config"]["seed"]] = p
    print("| set | τ | scenario | seeds | windows ≥ τ − 0.02 (worst) | long-run acc (min) "
          "| recovery (max) | cost vs certified | replays passing (in-process) "
          "| through HTTP: seeds, passing, same model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, tau, scenario), by_seed in sorted(groups.items()):
        runs = [by_seed[seed] for seed in sorted(by_seed)]
        on = [p["routers"]["online"] for p in runs if "online" in p["routers"]]
        costs = [s["cost_vs_static_certified"] for s in on]
        recs = [s["recovery"][0] for s in on if s["recovery"]]
        rec = "–" if not recs else ("never" if None in recs else str(max(recs)))
        ok = sum(not failed_checks(p["checks"], s["cost_vs_static_certified"], scenario)
                 for p, s in zip(runs, on, strict=True))
        http = [p for p in runs if "online_http" in p["routers"]]
        http_ok = sum(not failed_checks(p["checks_http"],
                                        p["routers"]["online_http"]["cost_vs_static_certified"],
                                        scenario) for p in http)
        same = min((p["agreement"]["same_model"] for p in http), default=None)
        http_cell = "–" if not http else (
            f"{','.join(str(p['config']['seed']) for p in http)}: {http_ok} / {len(http)}, "
            f"{same:.2%}")
        print(f"| {name} | {tau:g} | {scenario} | "
              f"{','.join(str(p['config']['seed']) for p in runs)} | "
              f"{1 - max(s['share_windows_below'] for s in on):.1%} | "
              f"{min(s['long_run_accuracy'] for s in on):.3f} | {rec} | "
              f"{min(costs):.4f}-{max(costs):.4f}x | {ok} / {len(on)} | {http_cell} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true",
                        help="one row per (artifact, τ, scenario) over its seeds")
    parser.add_argument("paths", nargs="+", help="replay.json files")
    args = parser.parse_args()
    (summary if args.summary else main)(args.paths)
