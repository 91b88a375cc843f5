"""Does the certificate hold as users check it? Redraw the held-out rows many times and count.

A user checks the certified router on a window of their own traffic, and one draw of the
held-out rows says little about a rate of δ = 5%. Here the trained router and its candidate
operating points stay fixed; only the held-out rows (val ∪ calib ∪ test) are re-cut at random
into splits of the same sizes, `redraws` times. Each draw runs the project's own rules end to end:
the table on the draw's `val` (`table.rank_candidates`), the certificate on its `calib`
(`certificate.certify`), the τ → point rule (`policy.OperatingPolicy`), and scores the chosen
points on its `test` rows. Per τ it reports the share of draws in which τ is certified and its
test accuracy falls below the promise (τ − ε), which the window certificate keeps at most δ
(up to Monte Carlo error: the check allows 2 standard errors, sqrt(δ(1 − δ)/redraws) each), and
the certified cost against the uncertified router's on the same draw.

Everything is numpy on [C, H] outcomes: each candidate's realised score and cost on each of the H
held-out rows, computed once (no model runs per draw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proteus.operating import certificate, policy, table

SPLITS = ("val", "calib", "test")


def _draw(rng: np.random.Generator, sizes: Mapping[str, int], h: int) -> dict[str, np.ndarray]:
    """One random re-cut of H rows into val, calib and test of the given sizes."""
    perm = rng.permutation(h)
    cuts = np.cumsum([sizes[name] for name in SPLITS])
    return dict(zip(SPLITS, np.split(perm[:cuts[-1]], cuts[:-1]), strict=True))


def _route(tbl: dict[str, Any], cert: certificate.CertificationTable | None,
           taus: np.ndarray) -> np.ndarray:
    """[T] the point (index in testing order) each τ is served at, −1 where not feasible."""
    rule = policy.OperatingPolicy(tbl, None if cert is None else cert.to_dict(), "best_effort")
    return np.asarray([p.point if p.feasible else -1
                       for p in (rule.resolve(float(t)) for t in taus)], np.int64)


def one_draw(scores: np.ndarray, costs: np.ndarray, cand_tau: np.ndarray,
             cand_model: np.ndarray, rows: Mapping[str, np.ndarray], taus: np.ndarray,
             rules: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]
             ) -> dict[str, dict[str, np.ndarray]]:
    """One draw: per router, the test accuracy and cost [T] at each τ and whether τ is served
    feasibly [T] (NaN accuracy and cost where not), plus each chosen point's accuracy over all
    H rows (its population accuracy on this pool).

    Args:
      scores, costs: [C, H] each candidate's outcome on each held-out row.
      cand_tau, cand_model: [C] the candidates (`table.candidates`).
      rows: split name -> row indices into H.
      taus: [T] targets.
      rules: certified router name -> `certificate.certify` keyword arguments (window, ...).
      settings: margin_z, credit_z, delta, method, fallback.
    """
    val, calib, test = (rows[name] for name in SPLITS)
    ranking = table.rank_candidates(cand_tau, cand_model, scores[:, val], costs[:, val],
                                    settings["margin_z"], settings["credit_z"])
    tbl = table.ranked_table(cand_tau, cand_model, *ranking, val.size, settings["margin_z"])
    order = ranking[0]
    ordered_scores, ordered_costs = scores[order], costs[order]
    per_point = {"accuracy": ordered_scores[:, test].mean(axis=1),  # [C] each
                 "cost": ordered_costs[:, test].mean(axis=1),
                 "pool_accuracy": ordered_scores.mean(axis=1)}
    out = {}
    for name, kwargs in {"proteus": None, **rules}.items():
        cert = None if kwargs is None else certificate.certify(
            ordered_scores[:, calib], ordered_costs[:, calib], taus, delta=settings["delta"],
            method=settings["method"], fallback=settings["fallback"], **kwargs)
        point = _route(tbl, cert, taus)
        served = point >= 0
        out[name] = {"feasible": served} | {
            key: np.where(served, values[np.maximum(point, 0)], np.nan)
            for key, values in per_point.items()}
    return out


def redraw(scores, costs, cand_tau, cand_model, sizes: Mapping[str, int], taus: Sequence[float],
           rules: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any],
           tolerance: float, redraws: int = 200, seed: int = 0) -> dict[str, Any]:
    """Redraw the held-out rows `redraws` times and summarise each router (module docstring).

    Args:
      scores, costs: [C, H] each candidate's realised score and cost on the H held-out rows.
      cand_tau, cand_model: [C] the candidates before ordering.
      sizes: {"val", "calib", "test"} split sizes (their sum <= H).
      taus: [T] the targets checked.
      rules: certified router name -> `certificate.certify` keyword arguments.
      settings: {"margin_z", "credit_z", "delta", "method", "fallback"} as in the config.
      tolerance: ε of the promise checked: a miss is test accuracy < τ − ε.
      redraws: draws; seed: of the draws' generator.

    Returns:
      A JSON-ready summary: per router and τ the share of draws in which τ is served feasibly,
      missed on test (accuracy < τ − ε) and missed in population (the chosen point's accuracy
      over all H rows < τ − ε); the worst τ, the share of draws with any miss, whether every τ
      is within δ + 2 Monte Carlo standard errors, and the certified cost over the uncertified
      router's on the τ both serve.
    """
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    cand_tau, cand_model = np.asarray(cand_tau, np.float64), np.asarray(cand_model, np.int64)
    taus = np.asarray(taus, np.float64)
    if sum(sizes[name] for name in SPLITS) > scores.shape[1]:
        raise ValueError(f"split sizes {dict(sizes)} exceed the {scores.shape[1]} held-out rows")
    rng = np.random.default_rng(seed)
    draws = [one_draw(scores, costs, cand_tau, cand_model, _draw(rng, sizes, scores.shape[1]),
                      taus, rules, settings) for _ in range(int(redraws))]
    stack = {name: {k: np.stack([d[name][k] for d in draws]) for k in draws[0][name]}
             for name in draws[0]}  # router -> field -> [R, T]
    delta = float(settings["delta"])
    limit = delta + 2.0 * math.sqrt(delta * (1.0 - delta) / int(redraws))
    summary = {name: _summarise(block, taus, tolerance, limit, stack["proteus"])
               for name, block in stack.items()}
    return {"redraws": int(redraws), "seed": int(seed), "sizes": dict(sizes),
            "taus": taus.tolist(), "delta": delta, "tolerance": float(tolerance),
            "limit": limit, "routers": summary}


def _summarise(block: dict[str, np.ndarray], taus: np.ndarray, tolerance: float, limit: float,
               uncertified: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-τ shares over the draws for one router ([R, T] fields; see `redraw`)."""
    served = block["feasible"]
    with np.errstate(invalid="ignore"):  # NaN accuracy where not served compares False
        miss = served & (block["accuracy"] < taus - tolerance - 1e-9)
        strict = served & (block["accuracy"] < taus - 1e-9)
        pop = served & (block["pool_accuracy"] < taus - tolerance - 1e-9)
    share = miss.mean(axis=0)
    worst = int(np.argmax(share))
    both = served & uncertified["feasible"]  # the τ both routers serve, per draw
    mine = np.where(both, block["cost"], 0.0)
    theirs = np.where(both, uncertified["cost"], 0.0)
    ok = theirs.sum(axis=1) > 0
    ratio = mine.sum(axis=1)[ok] / theirs.sum(axis=1)[ok]  # per draw, costs averaged over τ
    with np.errstate(invalid="ignore", divide="ignore"):  # τ no draw serves: None
        per_tau = np.where(both, mine / np.where(both, theirs, 1.0), 0.0).sum(axis=0) / (
            both.sum(axis=0))
    return {"served_share": served.mean(axis=0).tolist(), "miss_share": share.tolist(),
            "strict_miss_share": strict.mean(axis=0).tolist(),
            "population_miss_share": pop.mean(axis=0).tolist(),
            "worst_tau": float(taus[worst]), "worst_miss_share": float(share[worst]),
            "any_miss_share": float(miss.any(axis=1).mean()),
            "holds": bool(np.all(share <= limit)),
            "mean_served": float(served.sum(axis=1).mean()),
            "cost_vs_uncertified": float(ratio.mean()) if ok.any() else None,
            "cost_vs_uncertified_quantiles": ({str(q): float(np.quantile(ratio, q))
                                               for q in (0.1, 0.5, 0.9)} if ok.any() else None),
            "cost_vs_uncertified_per_tau": [None if np.isnan(v) else float(v) for v in per_tau]}
