"""Test-split evaluation of a trained PROTEUS run and the main job (train, then evaluate).

`proteus_blocks` measures the operating points on `val`, certifies them on `calib` and routes the
test split with the uncertified and certified rules (`proteus.serving.operating`); the main job, the
harness (`experiments/harness.py`, which adds every baseline) and the sweep all call it.
`build_results` gives the DESIGN.md section 7 `results.json` with the oracle and the best fixed
model added.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from experiments import pipeline
from experiments import workdir as workdir_lib
from proteus.data.dataset import RoutingDataset
from proteus.evaluation import calibrate, metrics, results
from proteus.serving import operating
from proteus.training import train


def constant_router(accuracy: float, cost: float, n_taus: int) -> dict[str, list]:
    """A router whose operating point ignores τ (oracle, a fixed model)."""
    return {"accuracy": [accuracy] * n_taus, "cost": [cost] * n_taus, "feasible": [True] * n_taus}


def candidate_routes(setup: pipeline.Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset, table: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each operating point of `table` on `ds`: (model [C, N], mean μ [C], NaN for fixed).

    A policy point routes with PROTEUS at its τ'; a fixed-model point sends every query there.
    """
    taus = np.asarray([np.nan if t is None else t for t in table["tau"]], np.float64)
    models = np.asarray(table["model"], np.int64)
    choices = np.broadcast_to(models[:, None], (len(models), ds.n_queries)).copy()
    mean_mu = np.full(taus.shape, np.nan)
    policy = models < 0
    if policy.any():
        decision = pipeline.route_split(setup, state, run, ds, taus[policy])
        choices[policy] = np.asarray(decision.model)
        mean_mu[policy] = np.asarray(decision.mu).mean(axis=1)
    return choices, mean_mu


def operating_table(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                    state: train.TrainState, run: int, heldout: RoutingDataset) -> dict[str, Any]:
    """The candidate operating points in testing order, measured on `heldout` (`val`).

    Candidates (fixed before any label is read): `certify.n_points` policy targets τ' over the
    lanes' range and, with `operating.fixed_models`, every single model. See
    `proteus.serving.operating`.
    """
    points = operating_taus(np.asarray(setup.lane_taus), config.certify.n_points)
    cand_tau, cand_model = operating.candidates(points, heldout.n_models,
                                                config.operating.fixed_models)
    raw = {"tau": [None if np.isnan(t) else float(t) for t in cand_tau],
           "model": cand_model.tolist()}
    choices = candidate_routes(setup, state, run, heldout, raw)[0]
    acc, cost = metrics.realised(heldout.scores, heldout.costs, choices)
    scores = heldout.scores[np.arange(heldout.n_queries)[None, :], choices]  # [C, N]
    smooth = operating.smoothed_accuracy(cand_tau, cand_model, acc)
    credit = operating.credited_accuracy(scores, smooth, cand_model, config.operating.margin_z,
                                         config.operating.credit_z)
    order = operating.testing_order(credit, cost, cand_model)
    return {"tau": [raw["tau"][j] for j in order], "model": cand_model[order].tolist(),
            "accuracy": credit[order].tolist(), "raw_accuracy": acc[order].tolist(),
            "cost": cost[order].tolist(), "n_heldout": int(heldout.n_queries),
            "margin_z": float(config.operating.margin_z)}


def operating_taus(lane_taus: np.ndarray, n_points: int) -> np.ndarray:
    """[P] policy targets τ', uniform in log(1 − τ') over the lanes' range (like the lanes)."""
    lo, hi = float(lane_taus[0]), float(lane_taus[-1])
    return -np.expm1(np.linspace(np.log1p(-hi), np.log1p(-lo), n_points))


def certify_points(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                   state: train.TrainState, run: int, calib: RoutingDataset,
                   table: dict[str, Any], taus: np.ndarray) -> calibrate.CertificationTable:
    """Fixed-sequence certification of the table's points (testing order) on `calib`."""
    choices = candidate_routes(setup, state, run, calib, table)[0]
    rows = np.arange(calib.n_queries)[None, :]
    cert = config.certify
    return calibrate.certify(calib.scores[rows, choices], calib.costs[rows, choices], taus,
                             delta=cert.delta, method=cert.method, fallback=cert.fallback)


def resolve_grid(policy: operating.OperatingPolicy, taus: np.ndarray) -> list[Any]:
    """The operating point of every τ; None where the fallback refuses it."""
    out = []
    for tau in taus:
        try:
            out.append(policy.resolve(float(tau)))
        except operating.InfeasibleTauError:
            out.append(None)
    return out


def router_block(points: list[Any], acc_pts: np.ndarray, cost_pts: np.ndarray,
                 mu_pts: np.ndarray) -> dict[str, list]:
    """A results.json router entry from per-τ operating points and per-point test outcomes."""
    get = lambda arr: [None if p is None else float(arr[p.point]) for p in points]
    return {"accuracy": get(acc_pts), "cost": get(cost_pts), "mean_mu": get(mu_pts),
            "feasible": [p is not None and p.feasible for p in points],
            "operating_point": [None if p is None else p.point for p in points],
            "reason": [None if p is None else p.reason for p in points]}


def proteus_blocks(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                   state: train.TrainState, run: int, splits: dict[str, RoutingDataset],
                   taus: np.ndarray, choices_out: dict[str, np.ndarray] | None = None,
                   ) -> tuple[dict[str, dict], dict[str, Any]]:
    """PROTEUS uncertified and certified on the test split.

    Returns ({"proteus", "proteus_certified"} router blocks, {"operating": table,
    "certification": CertificationTable dict}); the second is what an export needs. When
    `choices_out` is given, each router's test routing [T, N] (-1 rows: refused τ) is put there.
    """
    table = operating_table(config, setup, state, run, splits["val"])
    cert = certify_points(config, setup, state, run, splits["calib"], table, taus)
    test = splits["test"]
    choices, mu_pts = candidate_routes(setup, state, run, test, table)
    acc_pts, cost_pts = metrics.realised(test.scores, test.costs, choices)
    blocks = {}
    for name, certification in (("proteus", None), ("proteus_certified", cert.to_dict())):
        policy = operating.OperatingPolicy(table, certification, config.certify.fallback,
                                           test.models)
        points = resolve_grid(policy, taus)
        blocks[name] = router_block(points, acc_pts, cost_pts, mu_pts)
        if choices_out is not None:
            choices_out[name] = np.stack([np.full(test.n_queries, -1) if p is None
                                          else choices[p.point] for p in points])
    return blocks, {"operating": table, "certification": cert.to_dict()}


def cost_range(ds: RoutingDataset) -> tuple[float, float]:
    """AIQ's cost normalisation: cheapest to most expensive fixed model mean cost on `ds`."""
    means = ds.costs.mean(axis=0)
    return float(means.min()), float(means.max())


def build_results(config: ml_collections.ConfigDict, ds: RoutingDataset, taus: np.ndarray,
                  routers: dict[str, dict], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validated results.json content for `routers` on the test split `ds`.

    The oracle and the best fixed model (highest test accuracy, the usual reference for savings)
    are always added.
    """
    oracle_acc, oracle_cost = ds.oracle()
    best_model, best_acc, best_cost = ds.best_fixed()
    n = len(taus)
    routers = {**routers, "oracle": constant_router(oracle_acc, oracle_cost, n),
               "best_fixed": constant_router(best_acc, best_cost, n)}
    frontier = metrics.perfect_frontier_cost(ds.scores, ds.costs, taus)
    extra = {"config_name": config.name, "perfect_frontier_cost": frontier.tolist(),
             "oracle_frontier": {"taus": list(map(float, taus)), "cost": frontier.tolist()},
             **(extra or {})}
    return results.build_results(
        dataset=ds.name, models=ds.models, encoder=config.data.encoder, n_queries=ds.n_queries,
        taus=taus, oracle=(oracle_acc, oracle_cost), best_fixed=(best_model, best_acc, best_cost),
        routers=routers, cost_range=cost_range(ds), extra=extra)


def compliance_table(res: dict[str, Any], router: str = "proteus") -> str:
    """A plain-text table: τ, accuracy, cost, perfect-knowledge cost, met?, declared feasible."""
    block = res["routers"][router]
    nan = float("nan")
    frontier = [nan if c is None else c for c in res.get("perfect_frontier_cost", [])]
    frontier = frontier or [nan] * len(res["taus"])
    lines = [f"{'tau':>6} {'accuracy':>9} {'cost':>10} {'frontier':>10} {'met':>4} {'feasible':>8}"]
    for i, tau in enumerate(res["taus"]):
        acc, cost = block["accuracy"][i], block["cost"][i]
        met = "yes" if acc >= tau - metrics.FLOOR_EPS else "NO"
        feas = "yes" if block["feasible"][i] else "no"
        lines.append(f"{tau:6.3f} {acc:9.4f} {cost:10.3e} {frontier[i]:10.3e} {met:>4} {feas:>8}")
    s = {k: (nan if v is None else v) for k, v in res["summary"][router].items()}
    lines.append(f"{router}: floor compliance {s['floor_compliance']:.3f}  target-response r "
                 f"{s['target_response_corr']:.3f}  oracle gap {s['oracle_gap']:.4f}  "
                 f"max savings vs best fixed {s['max_savings_vs_best_fixed']:.3f}")
    return "\n".join(lines)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict[str, Any]:
    """The main job: train (or resume) in `workdir`, evaluate on test, write results.json.

    Returns the results dict plus a printable "table" entry (not written to the file).
    """
    workdir_lib.prepare(config, workdir)  # validate, lock, check / record config.json
    splits = pipeline.load_splits(config)
    state, setup = pipeline.train_runs(config, workdir, splits, progress=progress)
    taus = pipeline.eval_taus(config, setup.lane_taus)
    blocks, points = proteus_blocks(config, setup, state, 0, splits, taus)
    res = build_results(config, splits["test"], taus, blocks)
    path = results.write_results(res, os.path.join(workdir, "results.json"))
    write_json(points, os.path.join(workdir, "certification.json"))
    logging.info("wrote %s", path)
    return {**res, "table": compliance_table(res)}


def write_json(payload: dict[str, Any], path: str) -> str:
    """Strict JSON, written atomically (temp file, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(results.to_jsonable(payload), f, indent=1, allow_nan=False)
    os.replace(path + ".tmp", path)
    return path
