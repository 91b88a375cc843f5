"""Test-split evaluation of a trained PROTEUS run and the main job (train, then evaluate).

`build_results` gives the DESIGN.md section 7 `results.json` with PROTEUS, the oracle and the best
fixed model; the full harness (`experiments/harness.py`) adds every baseline and the certified
router to the same `routers` block.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from experiments import pipeline
from experiments import workdir as workdir_lib
from proteus import metrics, results, train
from proteus.data.dataset import RoutingDataset
from proteus.networks import lambda_of_tau


def constant_router(accuracy: float, cost: float, n_taus: int) -> dict[str, list]:
    """A router whose operating point ignores τ (oracle, a fixed model)."""
    return {"accuracy": [accuracy] * n_taus, "cost": [cost] * n_taus, "feasible": [True] * n_taus}


def proteus_router(setup: pipeline.Setup, state: train.TrainState, run: int, ds: RoutingDataset,
                   taus: np.ndarray) -> tuple[dict[str, list], np.ndarray]:
    """PROTEUS on `ds` at every τ; returns (router block, choices [T, N]).

    `feasible` is PROTEUS's own training-time signal, not a certificate: τ is declared infeasible
    when it lies above the highest average accuracy any lane reached on the held-out policy split
    (`DualState.acc_avg`), i.e. where the duals could not make the policy reach it.
    """
    decision = pipeline.route_split(setup, state, run, ds, taus)
    choices = np.asarray(decision.model)
    accuracy, cost = metrics.realised(ds.scores, ds.costs, choices)
    one = pipeline.run_slice(state, run)
    lam = np.asarray(lambda_of_tau(one.lane_taus, one.duals.lam_avg, np.asarray(taus, np.float32)))
    ceiling = float(np.asarray(one.duals.acc_avg).max())
    block = {"accuracy": accuracy.tolist(), "cost": cost.tolist(),
             "feasible": (np.asarray(taus) <= ceiling).tolist(),
             "mean_mu": np.asarray(decision.mu).mean(1).tolist(), "lambda": lam.tolist()}
    return block, choices


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
    block, _ = proteus_router(setup, state, 0, splits["test"], taus)
    res = build_results(config, splits["test"], taus, {"proteus": block})
    path = results.write_results(res, os.path.join(workdir, "results.json"))
    logging.info("wrote %s", path)
    return {**res, "table": compliance_table(res)}
