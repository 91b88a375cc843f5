"""Does PROTEUS win a data set? The checks of issue 9 on one or more results.json files.

    python benchmarks/win_report.py runs/rb/results.json runs/mmlu_pro/results.json

For each file (test split): the best single model; the highest accuracy of `proteus` and
`proteus_certified` against it (goal: >= best − 0.005); the AIQ of `proteus` against every other
router (goal: >= each − 0.002); the uncertified router's floors among the τ it declares feasible
(goal: met at >= 90%, mean(accuracy − τ) >= 0); the certified router's silent misses (goal: 0)
and its cost relative to the uncertified router at the τ it certifies; the shared predictor's
per-model AUC and calibration error when recorded.
"""

import argparse
import json

import numpy as np

NOT_ROUTERS = ("oracle", "best_fixed")


def arr(block: dict, key: str) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in block[key]], float)


def report(path: str) -> list[str]:
    """Printable lines for one results.json; the last line says which goals are met."""
    with open(path) as f:
        res = json.load(f)
    taus, routers, summary = np.asarray(res["taus"]), res["routers"], res["summary"]
    best = res["best_fixed"]
    lines = [f"== {path}: {res['dataset']} ({res['n_queries']} test queries x "
             f"{len(res['models'])} models)",
             f"best single model {best['model']} {best['accuracy']:.4f}; "
             f"oracle {res['oracle']['accuracy']:.4f}"]
    goals = {}
    for name in ("proteus", "proteus_certified"):
        top = np.nanmax(arr(routers[name], "accuracy"))
        goals[f"{name} top"] = top >= best["accuracy"] - 0.005
        lines.append(f"{name}: highest accuracy {top:.4f} (best single − 0.005 = "
                     f"{best['accuracy'] - 0.005:.4f})")
    mine = summary["proteus"]["aiq"]
    others = {n: s["aiq"] for n, s in summary.items()
              if n != "proteus" and n not in NOT_ROUTERS and not n.startswith("fixed:")}
    worst = max(others, key=lambda n: others[n])
    goals["AIQ"] = all(mine >= v - 0.002 for v in others.values())
    lines.append(f"AIQ: proteus {mine:.4f}; best other {worst} {others[worst]:.4f}; all: " +
                 ", ".join(f"{n} {v:.4f}" for n, v in sorted(others.items(), key=lambda x: -x[1])))
    paired = res.get("paired_aiq", {}).get("routers", {})
    below = {n: d for n, d in paired.items() if d["diff"] < -0.002}
    if below:  # is a shortfall more than the test split's noise? (paired bootstrap, 95%)
        lines.append("  paired AIQ(proteus) − AIQ(r), 95% interval: " + ", ".join(
            f"{n} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for n, d in below.items()))
    unc = routers["proteus"]
    acc, feas = arr(unc, "accuracy"), np.asarray(unc["feasible"], bool)
    met = acc[feas] >= taus[feas] - 1e-9
    excess = acc[feas] - taus[feas]
    gap, worst_gap = (float(excess.mean()), float(excess.min())) if feas.any() else (np.nan,) * 2
    goals["uncertified floors"] = feas.any() and met.mean() >= 0.9 and gap >= 0
    lines.append(f"proteus (uncertified): met {int(met.sum())}/{int(feas.sum())} declared-"
                 f"feasible τ; mean(accuracy − τ) {gap:+.4f}; worst {worst_gap:+.4f}")
    cert = routers["proteus_certified"]
    c_acc, c_feas = arr(cert, "accuracy"), np.asarray(cert["feasible"], bool)
    silent = int(np.sum(c_feas & (c_acc < taus - 1e-9)))
    ratio = arr(cert, "cost")[c_feas] / arr(unc, "cost")[c_feas]
    goals["certified silent misses"] = silent == 0
    lines.append(f"proteus_certified: {int(c_feas.sum())} τ certified, {silent} silent misses; "
                 f"cost / uncertified at those τ: max {np.max(ratio) if ratio.size else np.nan:.2f}"
                 f", mean {np.mean(ratio) if ratio.size else np.nan:.2f}")
    pred = res.get("predictor")
    if pred:
        lines.append(f"predictor on test: mean AUC {pred['mean_auc']:.4f}, mean calibration "
                     f"error {pred['mean_ece']:.4f}")
    lines.append("goals: " + ", ".join(f"{k} {'MET' if v else 'NOT MET'}"
                                       for k, v in goals.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    for path in parser.parse_args().results:
        print("\n".join(report(path)))


if __name__ == "__main__":
    main()
