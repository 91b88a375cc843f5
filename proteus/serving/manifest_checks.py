"""The manifest's content checks (step 4 of `proteus.serving.artifact`'s load order).

`validate_manifest` checks that an artifact's manifest is consistent with itself: models, mean
costs and prices, feature_dim, encoder, tasks, the λ table, the operating points, the
certification block over them, the fallback, and the feasible τ range they imply; each failure is
an `ArtifactError` naming the manifest file and the field. `check_finite_params` refuses
non-finite parameters. The export runs both before it writes an artifact, the load after reading
one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from proteus.operating import FALLBACKS, feasible_range
from proteus.operating.bounds import METHODS
from proteus.serving.artifact import MANIFEST_FILE, PARAMS_DIR, ArtifactError


def _numbers(value: Any, field: str, n: int | None = None, lo: float = -math.inf,
             hi: float = math.inf) -> list[float]:
    """`value` as a list of finite numbers in [lo, hi] (of length n); ArtifactError naming field."""
    ok = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not value or (n is not None and len(value) != n):
        want = f"{n} numbers" if n is not None else "a non-empty list of numbers"
        raise ArtifactError(f"manifest {field} must be {want}, got {value!r:.120}")
    bad = [v for v in value if not (math.isfinite(v) and lo <= v <= hi)]
    if bad:
        raise ArtifactError(f"manifest {field} must be finite and within [{lo}, {hi}], got "
                            f"{bad[0]!r}")
    return [float(v) for v in value]


def _check_tasks(tasks: Any) -> None:
    """The task prior's vocabulary: unique non-empty names (absent or [] without a task prior)."""
    if (not isinstance(tasks, list) or len(set(tasks)) != len(tasks)
            or not all(isinstance(t, str) and t for t in tasks)):
        raise ArtifactError(f"manifest tasks must be a list of unique non-empty names, got "
                            f"{tasks!r:.120}")


def _check_lambda(lam: Any) -> int:
    """The λ table: K lane τ strictly increasing in [0, 1], K finite λ >= 0, K accuracies.

    τ = 0 is allowed: training puts the lowest lane at the cheapest model's accuracy, which is 0
    when that model never succeeds.
    """
    if not isinstance(lam, dict):
        raise ArtifactError(f"manifest lambda must be an object, got {lam!r:.80}")
    taus = _numbers(lam.get("taus"), "lambda.taus", lo=0.0, hi=1.0)
    k = len(taus)
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ArtifactError(f"manifest lambda.taus must increase strictly, got {taus}")
    _numbers(lam.get("lams"), "lambda.lams", n=k, lo=0.0)
    _numbers(lam.get("lane_accuracy"), "lambda.lane_accuracy", n=k, lo=0.0, hi=1.0)
    return k


def _check_operating(table: Any, n_models: int) -> int:
    """The operating-point table (`proteus.operating.table`); returns its number of points C."""
    if not isinstance(table, dict):
        raise ArtifactError(f"manifest operating must be an object, got {table!r:.80}")
    f = "operating."
    models = _numbers(table.get("model"), f + "model", lo=-1, hi=n_models - 1)
    c = len(models)
    if c == 0 or any(m != int(m) for m in models):
        raise ArtifactError(f"manifest {f}model must be point kinds: −1 or a model index")
    taus = table.get("tau")
    if not isinstance(taus, list) or len(taus) != c or any(
            (t is None) != (m >= 0) for t, m in zip(taus, models, strict=True)):
        raise ArtifactError(f"manifest {f}tau must be a τ' for each policy point and null for "
                            "each fixed-model point")
    _numbers([t for t in taus if t is not None], f + "tau", lo=0.0, hi=1.0)
    _numbers(table.get("accuracy"), f + "accuracy", n=c, lo=-1.0, hi=1.0)
    _numbers(table.get("cost"), f + "cost", n=c, lo=0.0)
    _numbers([table.get("n_heldout")], f + "n_heldout", lo=1)
    _numbers([table.get("margin_z")], f + "margin_z", lo=0.0)
    _check_excluded(table.get("excluded"), models, n_models)
    return c


def _check_excluded(excluded: Any, models: list[float], n_models: int) -> None:
    """operating.excluded (optional): per point, the distinct model indices it routes around;
    only policy points route around models, and none around every model."""
    if excluded is None:
        return
    index = lambda m: isinstance(m, int) and not isinstance(m, bool) and 0 <= m < n_models
    ok = isinstance(excluded, list) and len(excluded) == len(models) and all(
        isinstance(e, list) and all(map(index, e)) and len(set(e)) == len(e) < n_models
        and (not e or kind < 0) for e, kind in zip(excluded, models, strict=True))
    if not ok:
        raise ArtifactError(f"manifest operating.excluded must list, for each of the "
                            f"{len(models)} points, the distinct model indices (0 to "
                            f"{n_models - 1}) it routes around, none for a fixed-model point and "
                            f"never every model; got {excluded!r:.120}")


def _check_certification(cert: Any) -> dict | None:
    """The certification block: {"status": "uncertified", "table": null} or a consistent table."""
    if not isinstance(cert, dict) or cert.get("status") not in ("certified", "uncertified"):
        raise ArtifactError("manifest certification.status must be 'certified' or "
                            f"'uncertified', got {cert!r:.80}")
    table = cert.get("table")
    if cert["status"] == "uncertified":
        if table is not None:
            raise ArtifactError("manifest certification: 'uncertified' with a table")
        return None
    if not isinstance(table, dict):
        raise ArtifactError("manifest certification: 'certified' without a table")
    f = "certification.table."
    taus = _numbers(table.get("taus"), f + "taus", lo=0.0, hi=1.0)
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ArtifactError(f"manifest {f}taus must increase strictly, got {taus}")
    n_t, n_p = len(taus), len(_numbers(table.get("accuracy"), f + "accuracy", lo=0.0, hi=1.0))
    _numbers(table.get("lcb"), f + "lcb", n=n_p, hi=1.0)  # a Hoeffding bound may be below 0
    _numbers(table.get("cost"), f + "cost", n=n_p, lo=0.0)
    _numbers([table.get("delta")], f + "delta", lo=0.0, hi=1.0)
    # the window promise (absent in tables certified before windows: the population promise)
    window = _numbers([table.get("window", 0)], f + "window", lo=0)[0]
    if window != int(window):
        raise ArtifactError(f"manifest {f}window must be a whole number of requests, got {window}")
    _numbers([table.get("tolerance", 0.0)], f + "tolerance", lo=0.0, hi=1.0)
    route_to = _numbers(table.get("route_to"), f + "route_to", n=n_t, lo=-1, hi=n_p - 1)
    chosen = _numbers(table.get("chosen"), f + "chosen", n=n_t, lo=-1, hi=n_p - 1)
    feasible = table.get("feasible")
    if not isinstance(feasible, list) or len(feasible) != n_t or not all(
            isinstance(v, bool) for v in feasible):
        raise ArtifactError(f"manifest {f}feasible must be {n_t} booleans")
    if any(ok != (c >= 0) for ok, c in zip(feasible, chosen, strict=True)) or any(
            ok and r != c for ok, r, c in zip(feasible, route_to, chosen, strict=True)):
        raise ArtifactError(f"manifest {f}feasible, chosen and route_to disagree")
    if table.get("method") not in METHODS or table.get("fallback") not in FALLBACKS:
        raise ArtifactError(f"manifest {f}method/fallback must be one of {METHODS}/{FALLBACKS}")
    reasons = table.get("reasons")
    if not isinstance(reasons, list) or len(reasons) != n_t:
        raise ArtifactError(f"manifest {f}reasons must be {n_t} strings")
    return table


def validate_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Check the manifest's content for consistency; ArtifactError naming the field otherwise.

    Checks: M unique model names, M mean costs >= 0, prices of known models, feature_dim >= 1,
    the λ table (`_check_lambda`), the operating points (`_check_operating`), the certification
    block over them (`_check_certification`), the fallback, and that `feasible_tau` is what the
    operating table and certification imply.
    """
    try:
        models = manifest["models"]
        if (not isinstance(models, list) or not models or len(set(models)) != len(models)
                or not all(isinstance(m, str) and m for m in models)):
            raise ArtifactError(f"manifest models must be unique non-empty names, got "
                                f"{models!r:.120}")
        _numbers(manifest["mean_cost_usd"], "mean_cost_usd", n=len(models), lo=0.0)
        prices = manifest["prices"]
        if not isinstance(prices, dict) or not set(prices) <= set(models):
            raise ArtifactError("manifest prices must map model names (of 'models') to prices")
        for name, price in prices.items():
            _numbers(list(price.values()) if isinstance(price, dict) else price,
                     f"prices[{name!r}]", n=2, lo=0.0)
        dim = manifest["feature_dim"]
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ArtifactError(f"manifest feature_dim must be a positive integer, got {dim!r}")
        if not isinstance(manifest["encoder"], dict) or "kind" not in manifest["encoder"]:
            raise ArtifactError("manifest encoder must be an object with a 'kind'")
        _check_tasks(manifest.get("tasks", []))
        _check_lambda(manifest["lambda"])
        n_points = _check_operating(manifest["operating"], len(models))
        table = _check_certification(manifest["certification"])
        if table is not None and len(table["accuracy"]) != n_points:
            raise ArtifactError(f"manifest certification.table has {len(table['accuracy'])} "
                                f"points, the operating table {n_points}")
        if manifest["fallback"] not in FALLBACKS:
            raise ArtifactError(f"manifest fallback must be one of {FALLBACKS}, got "
                                f"{manifest['fallback']!r}")
        want = feasible_range(manifest["operating"], table)
        got = manifest["feasible_tau"]
        if not isinstance(got, dict) or (got.get("min"), got.get("max")) != want:
            raise ArtifactError(f"manifest feasible_tau {got!r} disagrees with the operating "
                                f"table and certification, which give min={want[0]}, "
                                f"max={want[1]}")
    except ArtifactError as err:
        raise ArtifactError(f"{os.path.join(path, MANIFEST_FILE)}: {err}") from None


def check_finite_params(path: str, leaves: Sequence[tuple[str, Any]]) -> None:
    """Every floating-point parameter is finite; ArtifactError naming the first bad leaf.

    Args:
      leaves: (key path, numpy array) pairs, e.g. from `jax.tree_util.tree_flatten_with_path`.
    """
    for name, leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ArtifactError(f"{path}: parameter {name} holds {int(np.sum(~np.isfinite(arr)))} "
                                f"non-finite value(s) (corrupted {PARAMS_DIR}/?)")
