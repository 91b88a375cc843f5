"""Does PROTEUS win a data set? The checks of issue 9 on one or more results.json files.

    python benchmarks/win_report.py runs/rb/results.json runs/mmlu_pro/results.json
    python benchmarks/win_report.py --across runs/mmlu_pro/results.json runs/mmlu_pro_seed*/...

For each file (test split): the best single model; the highest accuracy of `proteus` and
`proteus_certified` against it (goal: >= best − 0.005); the AIQ of `proteus` against every other
router (goal: >= each − 0.002); the uncertified router's floors among the τ it declares feasible
(goal: met at >= 90%, mean(accuracy − τ) >= 0); the certified router's silent misses (test
accuracy below its promise, τ − ε; goal: 0) and its cost relative to the uncertified router at
the τ both serve; with `launch.evaluate --redraws=N`, issue 25's redraw goals (every τ certified
and missed in at most δ + 2 Monte Carlo standard errors of the draws, certified cost <= 1.5x the
uncertified router's); the shared predictor's per-model AUC and calibration error when
recorded.

`--across` summarises files of one data set trained with different seeds (`--config.seed=N`,
same splits): per router, AIQ(proteus) − AIQ(router) as mean [min, max] over the files and the
number of files where the AIQ goal holds against it, then each goal's count of files met.

Where the results hold it, the cross-fitted AIQ (`proteus.evaluation.paired_aiq.crossfit_aiq`: each
router's hull chosen on one half of the test split and measured on the other) is printed beside
the AIQ; it is not one of issue 9's goals.
"""

import argparse
import collections
import json

import numpy as np

NOT_ROUTERS = ("oracle", "best_fixed")


def arr(block: dict, key: str) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in block[key]], float)


def measure(res: dict) -> dict:
    """The numbers behind the checks of one results.json (a dict; see the module docstring)."""
    taus, routers, summary = np.asarray(res["taus"]), res["routers"], res["summary"]
    out = {"tops": {n: float(np.nanmax(arr(routers[n], "accuracy")))
                    for n in ("proteus", "proteus_certified")},
           "aiq": summary["proteus"]["aiq"],
           "others": {n: s["aiq"] for n, s in summary.items()
                      if n != "proteus" and n not in NOT_ROUTERS and not n.startswith("fixed:")}}
    unc = routers["proteus"]
    acc, feas = arr(unc, "accuracy"), np.asarray(unc["feasible"], bool)
    excess = acc[feas] - taus[feas]
    out.update(met=int(np.sum(excess >= -1e-9)), n_feasible=int(feas.sum()),
               gap=float(excess.mean()) if feas.any() else np.nan,
               worst_gap=float(excess.min()) if feas.any() else np.nan)
    cert = routers["proteus_certified"]
    c_acc, c_feas = arr(cert, "accuracy"), np.asarray(cert["feasible"], bool)
    both = c_feas & feas  # the τ both routers serve
    ratio = arr(cert, "cost")[both] / arr(unc, "cost")[both]
    tolerance = res.get("certificate", {}).get("tolerance", 0.0)  # the promise: τ − ε
    out.update(n_certified=int(c_feas.sum()), tolerance=tolerance,
               silent=int(np.sum(c_feas & (c_acc < taus - tolerance - 1e-9))),
               below_tau=int(np.sum(c_feas & (c_acc < taus - 1e-9))),
               ratio_max=float(np.max(ratio)) if ratio.size else np.nan,
               ratio_mean=float(np.mean(ratio)) if ratio.size else np.nan,
               ratio_of_means=(float(arr(cert, "cost")[both].mean() / arr(unc, "cost")[both].mean())
                               if both.any() else np.nan))
    cv = res.get("aiq_crossfit", {}).get("routers", {})
    out["cv"] = {"aiq": cv["proteus"], "others": {n: v for n, v in cv.items() if n != "proteus"}
                 } if "proteus" in cv else None
    best = res["best_fixed"]["accuracy"]
    out["goals"] = {
        **{f"{n} top": top >= best - 0.005 for n, top in out["tops"].items()},
        "AIQ": all(out["aiq"] >= v - 0.002 for v in out["others"].values()),
        "uncertified floors": (out["n_feasible"] > 0 and out["met"] >= 0.9 * out["n_feasible"]
                               and out["gap"] >= 0),
        "certified silent misses": out["silent"] == 0}
    redraw = res.get("redraw")
    if redraw:  # issue 25: the promise over many held-out draws, at every τ, and its price
        r = redraw["routers"]["proteus_certified"]
        out["redraw"] = r | {"limit": redraw["limit"], "redraws": redraw["redraws"]}
        out["goals"]["redraw: every τ within δ + 2 MC s.e."] = r["holds"]
        out["goals"]["redraw: certified cost <= 1.5x uncertified"] = (
            r["cost_vs_uncertified"] is not None and r["cost_vs_uncertified"] <= 1.5)
    return out


def report(path: str) -> list[str]:
    """Printable lines for one results.json; the last line says which goals are met."""
    with open(path) as f:
        res = json.load(f)
    m, best = measure(res), res["best_fixed"]
    lines = [f"== {path}: {res['dataset']} ({res['n_queries']} test queries x "
             f"{len(res['models'])} models)",
             f"best single model {best['model']} {best['accuracy']:.4f}; "
             f"oracle {res['oracle']['accuracy']:.4f}"]
    lines += [f"{name}: highest accuracy {top:.4f} (best single − 0.005 = "
              f"{best['accuracy'] - 0.005:.4f})" for name, top in m["tops"].items()]
    others = m["others"]
    worst = max(others, key=lambda n: others[n])
    lines.append(f"AIQ: proteus {m['aiq']:.4f}; best other {worst} {others[worst]:.4f}; all: " +
                 ", ".join(f"{n} {v:.4f}" for n, v in sorted(others.items(), key=lambda x: -x[1])))
    if m["cv"]:
        cv = m["cv"]["others"]
        lines.append(f"  cross-fitted AIQ (hull chosen on half the test split, measured on the "
                     f"other): proteus {m['cv']['aiq']:.4f}; " + ", ".join(
                         f"{n} {v:.4f}" for n, v in sorted(cv.items(), key=lambda x: -x[1])))
    paired = res.get("paired_aiq", {}).get("routers", {})
    below = {n: d for n, d in paired.items() if d["diff"] < -0.002}
    if below:  # is a shortfall more than the test split's noise? (paired bootstrap, 95%)
        lines.append("  paired AIQ(proteus) − AIQ(r), 95% interval: " + ", ".join(
            f"{n} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for n, d in below.items()))
    lines.append(f"proteus (uncertified): met {m['met']}/{m['n_feasible']} declared-"
                 f"feasible τ; mean(accuracy − τ) {m['gap']:+.4f}; worst {m['worst_gap']:+.4f}")
    promise = res.get("certificate", {}).get("promise", "P(expected accuracy < τ) <= δ")
    lines.append(f"proteus_certified ({promise}): {m['n_certified']} τ certified, "
                 f"{m['silent']} silent misses (test accuracy < τ − {m['tolerance']:g}), "
                 f"{m['below_tau']} below τ; cost / uncertified at the τ both serve: mean cost "
                 f"{m['ratio_of_means']:.2f}x, per τ max {m['ratio_max']:.2f}, mean "
                 f"{m['ratio_mean']:.2f}")
    if "redraw" in m:
        r = m["redraw"]
        lines.append(f"redraw ({r['redraws']} re-cuts of the held-out rows): worst τ "
                     f"{r['worst_tau']:.4f} certified and missed in {r['worst_miss_share']:.3f} of "
                     f"draws (limit {r['limit']:.4f}); any miss in {r['any_miss_share']:.3f} of "
                     f"draws; certified cost {r['cost_vs_uncertified']:.3f}x uncertified")
    pred = res.get("predictor")
    if pred:
        lines.append(f"predictor on test: mean AUC {pred['mean_auc']:.4f}, mean calibration "
                     f"error {pred['mean_ece']:.4f}")
    lines.append("goals: " + ", ".join(f"{k} {'MET' if v else 'NOT MET'}"
                                       for k, v in m["goals"].items()))
    return lines


def across(paths: list[str]) -> list[str]:
    """Printable lines summarising several results.json per data set (e.g. one per seed)."""
    by_set = collections.defaultdict(list)
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        by_set[res["dataset"]].append(measure(res))
    lines = []
    for name, runs in by_set.items():
        n = len(runs)
        lines.append(f"== {name}: {n} file(s); proteus AIQ " + ", ".join(
            f"{r['aiq']:.4f}" for r in runs))
        for router in sorted(runs[0]["others"], key=lambda r: runs[0]["others"][r]):
            diff = np.asarray([r["aiq"] - r["others"][router] for r in runs])
            lines.append(f"  AIQ(proteus) − AIQ({router}): mean {diff.mean():+.4f} "
                         f"[{diff.min():+.4f}, {diff.max():+.4f}]; goal held in "
                         f"{int(np.sum(diff >= -0.002))}/{n}")
        if all(r["cv"] for r in runs):
            for router in sorted(runs[0]["cv"]["others"],
                                 key=lambda r: runs[0]["cv"]["others"][r]):
                diff = np.asarray([r["cv"]["aiq"] - r["cv"]["others"][router] for r in runs])
                lines.append(f"  cross-fitted AIQ(proteus) − AIQ({router}): mean "
                             f"{diff.mean():+.4f} [{diff.min():+.4f}, {diff.max():+.4f}]; within "
                             f"0.002 in {int(np.sum(diff >= -0.002))}/{n}")
        lines.append("  uncertified met: " + ", ".join(
            f"{r['met']}/{r['n_feasible']} ({r['gap']:+.4f})" for r in runs))
        lines.append("  certified cost / uncertified, mean (max): " + ", ".join(
            f"{r['ratio_mean']:.2f} ({r['ratio_max']:.2f})" for r in runs))
        lines.append("  goals met in: " + ", ".join(
            f"{goal} {sum(r['goals'][goal] for r in runs)}/{n}" for goal in runs[0]["goals"]))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--across", action="store_true",
                        help="summarise the files per data set (e.g. seeds) instead")
    parser.add_argument("results", nargs="+")
    args = parser.parse_args(argv)
    if args.across:
        print("\n".join(across(args.results)))
        return
    for path in args.results:
        print("\n".join(report(path)))


if __name__ == "__main__":
    main()
