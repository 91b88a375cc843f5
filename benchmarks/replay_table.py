"""The online section's table from replay.json files (`python -m launch.replay` outputs).

    python benchmarks/replay_table.py runs/replay/rb_*/seed*/replay.json runs/replay/mmlu_*/...

One row per replay: per router "long-run accuracy / share of windows below τ − 0.02 / recovery /
cost vs the static certified router", the online router's checks and whether the static router
falls short. With --via=both files, the HTTP row and the share of requests where both online
routers chose the same model are added.
"""

from __future__ import annotations

import json
import sys


def cell(s: dict) -> str:
    rec = s["recovery"]
    rec = "–" if not rec else ("never" if rec[0] is None else str(rec[0]))
    return (f"{s['long_run_accuracy']:.3f} / {s['share_windows_below']:.1%} / {rec} / "
            f"{s['cost_vs_static_certified']:.2f}")


def verdict(checks: dict, cost: float, scenario: str) -> str:
    failed = [k for k, v in checks.items() if v is False and k != "static_falls_short"]
    if scenario == "model_regression" and cost > 2.0:
        failed.append("regression cost > 2x")
    return "pass" if not failed else "**fails " + ", ".join(failed) + "**"


def row(path: str) -> str:
    p = json.load(open(path))
    r, name = p["routers"], "online" if "online" in p["routers"] else "online_http"
    falls = p["checks"]["static_falls_short"]
    out = [f"{p['tau']:g}", p["scenario"], str(p["config"]["seed"]), cell(r["static"]),
           cell(r["static_certified"]), cell(r[name]),
           verdict(p["checks"], r[name]["cost_vs_static_certified"], p["scenario"]),
           "–" if falls is None else ("yes" if falls else "**no**")]
    if "online_http" in r and name == "online":
        out.append(f"{cell(r['online_http'])} ({p['agreement']['same_model']:.2%} same model)")
    return "| " + " | ".join(out) + " |"


def main(paths: list[str]) -> None:
    print("| τ | scenario | seed | static | static certified | online | online checks "
          "| static falls short |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path))


if __name__ == "__main__":
    main(sys.argv[1:])
