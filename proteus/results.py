"""The results contract of DESIGN.md section 7: build, validate, write and read `results.json`.

    results = build_results(dataset="routerbench", models=names, encoder="hashing",
                            n_queries=n, taus=taus, oracle=(acc, cost),
                            best_fixed=(name, acc, cost), routers={"carrot": {...}, ...},
                            cost_range=(cheapest model cost, dearest model cost))
    write_results(results, "runs/x/results.json")

Router entries hold per-τ lists "accuracy", "cost", "feasible" (and "mean_mu" for "proteus");
`build_results` adds the per-router "summary" with `metrics.summarize`. Extra keys anywhere are
kept. Non-finite floats are written as null so the file is strict JSON. `write_report` and
`write_plots` render a results dict as markdown tables and PNG figures (matplotlib, Agg canvas).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proteus import metrics

ROUTER_NAMES = (
    "proteus",
    "proteus_certified",
    "proteus_plugin",
    "carrot",
    "omnirouter",
    "threshold",
    "knn",
    "zero_router",
    "cluster",
    "task_table",
    "best_fixed",
    "oracle",
)
FIXED_PREFIX = "fixed:"  # per-model fixed routers, e.g. "fixed:gpt-4"
TOP_KEYS = (
    "dataset",
    "split",
    "n_queries",
    "models",
    "encoder",
    "oracle",
    "best_fixed",
    "taus",
    "routers",
    "summary",
)
CURVE_KEYS = ("accuracy", "cost", "feasible")


class ResultsValidationError(ValueError):
    """Raised when a results dict breaks the contract; the message names the bad key."""


def to_jsonable(obj: Any) -> Any:
    """Plain-Python copy of `obj`: numpy scalars/arrays to Python, NaN and ±inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def build_results(
    *,
    dataset: str,
    models,
    encoder: str,
    n_queries: int,
    taus,
    oracle: tuple[float, float],
    best_fixed: tuple[str, float, float],
    routers: Mapping[str, Mapping[str, Any]],
    cost_range: tuple[float, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Assemble, summarise and validate a results dict for the test split.

    Args:
      dataset: dataset name.
      models: [M] model names.
      encoder: the query encoder's name.
      n_queries: test queries.
      taus: [T] targets.
      oracle: (accuracy, cost) of the oracle on test.
      best_fixed: (model, accuracy, cost) of the best fixed model (chosen on validation).
      routers: name -> {"accuracy": [T], "cost": [T], "feasible": [T] bool, ...}.
      cost_range: AIQ cost normalisation; default (min, max) over every router's and the oracle's
        costs. Stored under "cost_range".
      extra: further top-level keys (e.g. "oracle_frontier": {"taus": [..], "cost": [..]}).

    Returns:
      The validated, JSON-ready dict (non-finite floats already None).
    """
    taus = np.asarray(taus, np.float64)
    if cost_range is None:
        all_costs = np.concatenate([np.ravel(r["cost"]) for r in routers.values()] + [[oracle[1]]])
        all_costs = all_costs[np.isfinite(all_costs)]
        lo, hi = float(all_costs.min()), float(all_costs.max())
        cost_range = (lo, hi if hi > lo else lo + 1e-12)
    summary = {
        name: metrics.summarize(
            taus,
            entry["accuracy"],
            entry["cost"],
            entry["feasible"],
            oracle_accuracy=oracle[0],
            best_fixed_cost=best_fixed[2],
            cost_range=cost_range,
        )
        for name, entry in routers.items()
    }
    results = {
        "dataset": dataset,
        "split": "test",
        "n_queries": int(n_queries),
        "models": list(models),
        "encoder": encoder,
        "oracle": {"accuracy": oracle[0], "cost": oracle[1]},
        "best_fixed": {"model": best_fixed[0], "accuracy": best_fixed[1], "cost": best_fixed[2]},
        "taus": taus,
        "routers": {name: dict(entry) for name, entry in routers.items()},
        "summary": summary,
        "cost_range": list(cost_range),
        **dict(extra or {}),
    }
    results = to_jsonable(results)
    validate_results(results)
    return results


def _fail(path: str, what: str) -> None:
    raise ResultsValidationError(f"results{path}: {what}")


def _check_number(path: str, x: Any, allow_null: bool = False) -> None:
    ok = x is None and allow_null
    ok = ok or (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x))
    if not ok:
        _fail(path, f"expected a finite number{' or null' if allow_null else ''}, got {x!r}")


def _check_list(path: str, xs: Any, n: int, kind: str) -> None:
    if not isinstance(xs, list) or len(xs) != n:
        got = f"{len(xs)} values" if isinstance(xs, list) else repr(type(xs).__name__)
        _fail(path, f"expected a list of {n} values (one per τ), got {got}")
    for i, x in enumerate(xs):
        if kind == "bool":
            if not isinstance(x, bool):
                _fail(f"{path}[{i}]", f"expected a bool, got {x!r}")
        else:
            _check_number(f"{path}[{i}]", x, allow_null=(kind == "number_or_null"))


def _check_router_name(path: str, name: str) -> None:
    if name not in ROUTER_NAMES and not str(name).startswith(FIXED_PREFIX):
        _fail(path, f"unknown router {name!r}; expected one of {ROUTER_NAMES} or '{FIXED_PREFIX}*'")


def validate_results(results: Mapping[str, Any], required_routers=()) -> None:
    """Check a results dict against DESIGN.md section 7; raise `ResultsValidationError`.

    Args:
      results: the dict (as built, or as read back from JSON).
      required_routers: names that must be present in "routers" and "summary".
    """
    for key in TOP_KEYS:
        if key not in results:
            _fail(f"[{key!r}]", "missing key")
    for key in ("dataset", "encoder"):
        if not isinstance(results[key], str):
            _fail(f"[{key!r}]", f"expected a str, got {results[key]!r}")
    if results["split"] != "test":
        _fail("['split']", f"expected 'test', got {results['split']!r}")
    n = results["n_queries"]
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        _fail("['n_queries']", f"expected a positive int, got {n!r}")
    models = results["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        _fail("['models']", f"expected a non-empty list of str, got {models!r}")
    for key in ("accuracy", "cost"):
        for top in ("oracle", "best_fixed"):
            if not isinstance(results[top], Mapping) or key not in results[top]:
                _fail(f"[{top!r}][{key!r}]", "missing key")
            _check_number(f"[{top!r}][{key!r}]", results[top][key])
    if results["best_fixed"].get("model") not in models:
        _fail("['best_fixed']['model']", f"expected one of models, got {results['best_fixed']}")
    taus = results["taus"]
    if not isinstance(taus, list) or not taus:
        _fail("['taus']", f"expected a non-empty list, got {taus!r}")
    _check_list("['taus']", taus, len(taus), "number")
    _validate_routers(results, len(taus), tuple(required_routers))


def _validate_routers(results: Mapping[str, Any], t: int, required: tuple[str, ...]) -> None:
    routers, summary = results["routers"], results["summary"]
    for key, value in (("routers", routers), ("summary", summary)):
        if not isinstance(value, Mapping):
            _fail(f"[{key!r}]", f"expected a mapping, got {type(value).__name__}")
        for name in required:
            if name not in value:
                _fail(f"[{key!r}][{name!r}]", "missing required router")
    for name, entry in routers.items():
        path = f"['routers'][{name!r}]"
        _check_router_name(path, name)
        for key in CURVE_KEYS + (("mean_mu",) if name == "proteus" else ()):
            if key not in entry:
                _fail(f"{path}[{key!r}]", "missing key")
            kind = "bool" if key == "feasible" else "number_or_null"
            _check_list(f"{path}[{key!r}]", entry[key], t, kind)
        if name not in summary:
            _fail(f"['summary'][{name!r}]", "missing summary for a router in 'routers'")
    for name, entry in summary.items():
        path = f"['summary'][{name!r}]"
        _check_router_name(path, name)
        for key in metrics.SUMMARY_KEYS:
            if key not in entry:
                _fail(f"{path}[{key!r}]", "missing key")
            if key == "n_infeasible":
                v = entry[key]
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= t:
                    _fail(f"{path}[{key!r}]", f"expected an int in [0, {t}], got {v!r}")
            else:
                _check_number(f"{path}[{key!r}]", entry[key], allow_null=True)


def write_results(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validate and write `results` as strict JSON (atomically: temp file, then rename)."""
    data = to_jsonable(results)
    validate_results(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_results(path: str | os.PathLike) -> dict:
    """Read and validate a `results.json`."""
    with open(path) as f:
        data = json.load(f)
    validate_results(data)
    return data


# ------------------------------------------------------------------ markdown report

_TAU_TABLES = (  # (title, value of one router at τ index t, higher is better, format)
    ("Accuracy", lambda e, r, t: e["accuracy"][t], True, "{:.3f}"),
    ("Cost (USD per query)", lambda e, r, t: e["cost"][t], False, "{:.3g}"),
    (
        "Savings vs best fixed",
        lambda e, r, t: 1.0 - e["cost"][t] / r["best_fixed"]["cost"],
        True,
        "{:.1%}",
    ),
)
_SUMMARY_BETTER = {"oracle_gap": False, "n_infeasible": False}  # others: higher is better


def _cell(value: Any, fmt: str, bold: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = fmt.format(value)
    return f"**{text}**" if bold else text


def _best(values: list, eligible: list[bool], higher: bool) -> float | None:
    pool = [v for v, ok in zip(values, eligible, strict=True) if ok and v is not None]
    return (max(pool) if higher else min(pool)) if pool else None


def report_markdown(results: Mapping[str, Any]) -> str:
    """Markdown tables, one per metric, routers as rows.

    Per-τ tables (accuracy, cost, savings) have one column per τ; in each column the best value
    among routers whose accuracy meets that τ is bold. In the summary table the best value among
    routers that met every floor they declared feasible (floor_compliance = 1) is bold. The oracle
    is shown as a reference and never bolded.
    """
    r, taus, names = results, results["taus"], list(results["routers"])
    out = [
        f"# {r['dataset']}: test split, {r['n_queries']} queries",
        "",
        f"Encoder `{r['encoder']}`; {len(r['models'])} models. Oracle accuracy "
        f"{r['oracle']['accuracy']:.3f} at {r['oracle']['cost']:.3g} USD/query; best fixed "
        f"`{r['best_fixed']['model']}` {r['best_fixed']['accuracy']:.3f} at "
        f"{r['best_fixed']['cost']:.3g}. Bold: best among routers meeting the floor.",
    ]
    head = lambda cols: ["| router | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for title, get, higher, fmt in _TAU_TABLES:
        out += ["", f"## {title}", ""] + head([f"τ={t:.3f}" for t in taus])
        grid = [[get(r["routers"][n], r, t) for t in range(len(taus))] for n in names]
        best = []
        for t, tau in enumerate(taus):
            met = [
                n != "oracle" and metrics.meets_floor(tau, r["routers"][n]["accuracy"][t])
                for n in names
            ]
            best.append(_best([row[t] for row in grid], met, higher))
        for n, row in zip(names, grid, strict=True):
            cells = [_cell(v, fmt, v is not None and v == best[t]) for t, v in enumerate(row)]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
    keys = metrics.SUMMARY_KEYS
    out += ["", "## Summary", ""] + head(list(keys))
    summ = r["summary"]
    ok = [n != "oracle" and summ[n]["floor_compliance"] == 1.0 for n in names]
    best = {k: _best([summ[n][k] for n in names], ok, _SUMMARY_BETTER.get(k, True)) for k in keys}
    for n, eligible in zip(names, ok, strict=True):
        cells = []
        for k in keys:
            fmt = "{}" if k == "n_infeasible" else "{:.3f}"
            cells.append(_cell(summ[n][k], fmt, eligible and summ[n][k] == best[k]))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def write_report(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `report_markdown(results)` to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(results))
    return path


# ------------------------------------------------------------------ plots


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)  # Agg canvas: no pyplot, no global backend state
    return fig, fig.add_subplot()


def _nan(xs: list) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], np.float64)


def write_plots(results: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """accuracy_vs_tau.png, cost_vs_tau.png and cost_accuracy.png under `out_dir`.

    The τ above the oracle's accuracy (no router can meet them) are shaded. The cost-accuracy
    plane shows every router's (cost, accuracy) points over τ, the oracle and best fixed points,
    and the perfect-information frontier if `results["oracle_frontier"]` holds {"taus", "cost"}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taus, routers = np.asarray(results["taus"], float), results["routers"]
    oracle, best = results["oracle"], results["best_fixed"]
    paths = []
    for stem, key in (("accuracy_vs_tau", "accuracy"), ("cost_vs_tau", "cost")):
        fig, ax = _figure()
        for name, entry in routers.items():
            ax.plot(taus, _nan(entry[key]), marker=".", label=name)
        if key == "accuracy":
            ax.plot(taus, taus, "k--", lw=1, label="y = τ")
        if taus.max() > oracle["accuracy"]:
            ax.axvspan(oracle["accuracy"], taus.max(), color="grey", alpha=0.2, label="τ > oracle")
        ax.set(xlabel="target τ", ylabel=f"test {key}", title=f"{results['dataset']}: {key} vs τ")
        ax.legend(fontsize=7)
        paths.append(out_dir / f"{stem}.png")
        fig.savefig(paths[-1])
    fig, ax = _figure()
    for name, entry in routers.items():
        ax.plot(_nan(entry["cost"]), _nan(entry["accuracy"]), marker=".", label=name)
    frontier = results.get("oracle_frontier")
    if isinstance(frontier, Mapping):
        ax.plot(_nan(frontier["cost"]), _nan(frontier["taus"]), "k-", lw=1.5, label="frontier")
    ax.plot([oracle["cost"]], [oracle["accuracy"]], "k*", ms=12, label="oracle")
    ax.plot([best["cost"]], [best["accuracy"]], "ks", label=f"best fixed ({best['model']})")
    ax.set(xlabel="test cost (USD/query)", ylabel="test accuracy", title="cost-accuracy plane")
    ax.legend(fontsize=7)
    paths.append(out_dir / "cost_accuracy.png")
    fig.savefig(paths[-1])
    return paths
