"""The results contract of DESIGN.md section 7: build, validate, write and read `results.json`.

    results = build_results(dataset="routerbench", models=names, encoder="hashing",
                            n_queries=n, taus=taus, oracle=(acc, cost),
                            best_fixed=(name, acc, cost), routers={"carrot": {...}, ...},
                            cost_range=(cheapest model cost, dearest model cost))
    write_results(results, "runs/x/results.json")

Router entries hold per-τ lists "accuracy", "cost", "feasible" (and "mean_mu" for "proteus");
`build_results` adds the per-router "summary" with `metrics.summarize`. Extra keys anywhere are
kept. Non-finite floats are written as null so the file is strict JSON. `proteus.evaluation.report`
and `proteus.evaluation.plots` render a results dict as `report.md` and PNG figures.
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

from proteus.evaluation import metrics

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


def _spanned_costs(routers: Mapping[str, Mapping[str, Any]],
                   oracle_cost: float) -> tuple[float, float]:
    """AIQ's default cost normalisation: (min, max) of every router's and the oracle's finite
    costs (widened by 1e-12 when they coincide)."""
    costs = np.concatenate([np.ravel(r["cost"]) for r in routers.values()] + [[oracle_cost]])
    costs = costs[np.isfinite(costs)]
    lo, hi = float(costs.min()), float(costs.max())
    return lo, hi if hi > lo else lo + 1e-12


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
      routers: name -> {"accuracy": [T], "cost": [T], "feasible": [T] bool, ...}; an optional
        "sweep": {"cost": [P], "accuracy": [P]} (the distinct points of the router's whole knob
        sweep) is what its AIQ is computed from.
      cost_range: AIQ cost normalisation; default (min, max) over every router's and the oracle's
        costs. Stored under "cost_range".
      extra: further top-level keys (e.g. "oracle_frontier": {"taus": [..], "cost": [..]}).

    Returns:
      The validated, JSON-ready dict (non-finite floats already None).
    """
    taus = np.asarray(taus, np.float64)
    if cost_range is None:
        cost_range = _spanned_costs(routers, oracle[1])
    summary = {name: metrics.summarize(taus, entry["accuracy"], entry["cost"], entry["feasible"],
                                       oracle_accuracy=oracle[0], best_fixed_cost=best_fixed[2],
                                       cost_range=cost_range, aiq_points=_sweep_points(entry))
               for name, entry in routers.items()}
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


def _sweep_points(entry: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(cost [P], accuracy [P]) of a router entry's "sweep", or None when it has none."""
    sweep = entry.get("sweep")
    if sweep is None:
        return None
    return np.asarray(sweep["cost"], np.float64), np.asarray(sweep["accuracy"], np.float64)


def _fail(path: str, what: str) -> None:
    raise ResultsValidationError(f"results{path}: {what}")


def _check_number(path: str, x: Any, allow_null: bool = False) -> None:
    ok = x is None and allow_null
    ok = ok or (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x))
    if not ok:
        _fail(path, f"expected a finite number{' or null' if allow_null else ''}, got {x!r}")


def _check_list(path: str, xs: Any, n: int, kind: str, per: str = "τ") -> None:
    if not isinstance(xs, list) or len(xs) != n:
        got = f"{len(xs)} values" if isinstance(xs, list) else repr(type(xs).__name__)
        _fail(path, f"expected a list of {n} values (one per {per}), got {got}")
    for i, x in enumerate(xs):
        if kind == "bool":
            if not isinstance(x, bool):
                _fail(f"{path}[{i}]", f"expected a bool, got {x!r}")
        else:
            _check_number(f"{path}[{i}]", x, allow_null=(kind == "number_or_null"))


def _check_sweep(path: str, sweep: Any) -> None:
    """A router's "sweep": {"cost": [P], "accuracy": [P]} finite numbers, P >= 1."""
    if not isinstance(sweep, Mapping) or not isinstance(sweep.get("cost"), list) or not sweep[
            "cost"]:
        _fail(path, f"expected {{'cost': [P], 'accuracy': [P]}} with P >= 1, got {sweep!r:.80}")
    for key in ("cost", "accuracy"):
        _check_list(f"{path}[{key!r}]", sweep.get(key), len(sweep["cost"]), "number", "point")


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
        if "sweep" in entry:
            _check_sweep(f"{path}['sweep']", entry["sweep"])
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
    """Read and validate a `results.json`; ResultsValidationError naming `path` when it is not
    JSON or not the contract (the field and what is wrong)."""
    with open(path) as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ResultsValidationError(f"{path}: not a JSON file: {e}") from None
    try:
        validate_results(data)
    except ResultsValidationError as e:
        raise ResultsValidationError(f"{path}: {e}") from None
    return data
