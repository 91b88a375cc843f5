"""Check a results.json against the quality bar on the DESIGN.md default grid (τ in [lo, hi]).

    python benchmarks/quality_report.py runs/quickstart/results.json [--router=proteus]

Prints, per τ of the grid: accuracy, met?, cost, the perfect-knowledge frontier cost and their
ratio; then the target-response correlation over the grid and over all τ.
"""

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--router", default="proteus")
    parser.add_argument("--lo", type=float, default=0.85)
    parser.add_argument("--hi", type=float, default=0.95)
    args = parser.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    taus = np.asarray(res["taus"])
    block = res["routers"][args.router]
    acc = np.asarray(block["accuracy"], float)
    cost = np.asarray(block["cost"], float)
    frontier = np.asarray([np.nan if c is None else c for c in res["perfect_frontier_cost"]])
    grid = (taus >= args.lo - 1e-9) & (taus <= args.hi + 1e-9)
    oracle = res["oracle"]["accuracy"]
    print(f"{res['dataset']} router={args.router} oracle={oracle:.4f}")
    print(f"{'tau':>6} {'acc':>7} {'met':>4} {'cost':>10} {'frontier':>10} {'ratio':>6}")
    for t, a, c, fr in zip(taus[grid], acc[grid], cost[grid], frontier[grid], strict=True):
        print(f"{t:6.3f} {a:7.4f} {'yes' if a >= t - 1e-9 else 'NO':>4} {c:10.3e} {fr:10.3e} "
              f"{c / fr:6.2f}")
    below_oracle = grid & (taus < oracle)
    met = acc[below_oracle] >= taus[below_oracle] - 1e-9
    ratios = cost[below_oracle] / frontier[below_oracle]
    print(f"met at {met.sum()}/{below_oracle.sum()} grid τ below the oracle; "
          f"max cost/frontier {np.nanmax(ratios):.2f}")
    print(f"target-response r: grid {np.corrcoef(taus[grid], acc[grid])[0, 1]:.4f}, "
          f"all τ {np.corrcoef(taus, acc)[0, 1]:.4f}")


if __name__ == "__main__":
    main()
