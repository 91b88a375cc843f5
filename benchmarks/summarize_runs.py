"""One table over several results.json files (ablations, datasets): a row per (run, router).

    python benchmarks/summarize_runs.py runs/qs_*/results.json --routers=proteus,proteus_certified

Columns (DESIGN.md section 6; grid = τ in [0.85, 0.95]): floor compliance over all τ, τ met on
the grid, target-response r (all τ), max savings vs the best fixed model, oracle gap, AIQ,
declared-infeasible count, and mean cost over the grid.
"""

import argparse
import json
import os

import numpy as np


def row(path: str, res: dict, name: str) -> str:
    s = res["summary"][name]
    block = res["routers"][name]
    taus = np.asarray(res["taus"])
    acc = np.asarray([np.nan if a is None else a for a in block["accuracy"]], float)
    cost = np.asarray([np.nan if c is None else c for c in block["cost"]], float)
    grid = (taus >= 0.85 - 1e-9) & (taus <= 0.95 + 1e-9)
    met = int(np.sum(acc[grid] >= taus[grid] - 1e-9))
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    run = os.path.basename(os.path.dirname(path))
    return (f"| {run} | {name} | {fmt(s['floor_compliance'])} | {met}/{int(grid.sum())} | "
            f"{fmt(s['target_response_corr'])} | {fmt(s['max_savings_vs_best_fixed'])} | "
            f"{fmt(s['oracle_gap'])} | {fmt(s['aiq'])} | {s['n_infeasible']} | "
            f"{np.nanmean(cost[grid]):.3g} |")


def dominance(res: dict, router: str = "proteus_certified") -> list[str]:
    """Per τ that `router` meets: its cost vs the cheapest baseline also meeting τ."""
    taus = res["taus"]
    lines = []
    others = [n for n in res["routers"] if n not in (router, "proteus", "oracle")]
    for t, tau in enumerate(taus):
        acc, cost = res["routers"][router]["accuracy"][t], res["routers"][router]["cost"][t]
        if acc is None or acc < tau - 1e-9:
            continue
        rivals = [(res["routers"][n]["cost"][t], n) for n in others
                  if res["routers"][n]["accuracy"][t] is not None
                  and res["routers"][n]["accuracy"][t] >= tau - 1e-9]
        if not rivals:
            lines.append(f"τ={tau:.3f}: {router} {cost:.3g}; no baseline meets τ")
            continue
        best_cost, best = min(rivals)
        verdict = "<=" if cost <= best_cost + 1e-15 else "> "
        lines.append(f"τ={tau:.3f}: {router} {cost:.3g} {verdict} {best} {best_cost:.3g}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--routers", default="proteus,proteus_certified")
    parser.add_argument("--dominance", action="store_true",
                        help="per τ met by proteus_certified: its cost vs the cheapest baseline "
                             "that also meets τ")
    args = parser.parse_args()
    if args.dominance:
        for path in args.results:
            with open(path) as f:
                print(path, *dominance(json.load(f)), sep="\n  ")
        return
    print("| run | router | compliance | grid met | r | max savings | oracle gap | AIQ | "
          "infeasible | grid cost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.results:
        with open(path) as f:
            res = json.load(f)
        for name in args.routers.split(","):
            if name in res["routers"]:
                print(row(path, res, name))


if __name__ == "__main__":
    main()
