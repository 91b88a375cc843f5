"""Test-split evaluation of a trained PROTEUS run and the reference routers (oracle, best fixed).

Builds the DESIGN.md section 7 `results.json` content. The evaluation harness of the baselines and
the certified router extend the `routers` block built here.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from experiments import pipeline
from proteus import metrics, train
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
    feasible = np.asarray(taus) <= ceiling
    block = {"accuracy": accuracy.tolist(), "cost": cost.tolist(),
             "feasible": feasible.tolist(), "mean_mu": np.asarray(decision.mu).mean(1).tolist(),
             "lambda": lam.tolist()}
    return block, choices


def reference_block(ds: RoutingDataset) -> dict[str, Any]:
    """oracle and best fixed model of `ds` (the test split) as results.json wants them."""
    oracle_acc, oracle_cost = ds.oracle()
    model, acc, cost = ds.best_fixed()
    return {"oracle": {"accuracy": oracle_acc, "cost": oracle_cost},
            "best_fixed": {"model": model, "accuracy": acc, "cost": cost}}


def cost_range(ds: RoutingDataset) -> tuple[float, float]:
    """AIQ's cost normalisation: cheapest to most expensive fixed model mean cost on `ds`."""
    means = ds.costs.mean(axis=0)
    return float(means.min()), float(means.max())


def build_results(config, setup: pipeline.Setup, state: train.TrainState, ds: RoutingDataset,
                  taus: np.ndarray, encoder: str, run: int = 0) -> dict[str, Any]:
    """results.json content for PROTEUS, the oracle and the best fixed model on `ds`."""
    refs = reference_block(ds)
    n = len(taus)
    routers = {
        "proteus": proteus_router(setup, state, run, ds, taus)[0],
        "oracle": constant_router(refs["oracle"]["accuracy"], refs["oracle"]["cost"], n),
        "best_fixed": constant_router(refs["best_fixed"]["accuracy"],
                                      refs["best_fixed"]["cost"], n),
    }
    frontier = metrics.perfect_frontier_cost(ds.scores, ds.costs, taus)
    results = {
        "dataset": ds.name, "split": "test", "n_queries": ds.n_queries, "models": list(ds.models),
        "encoder": encoder, **refs, "taus": [float(t) for t in taus], "routers": routers,
        "perfect_frontier_cost": frontier.tolist(), "config_name": config.name,
    }
    results["summary"] = summarize_routers(results, ds)
    return results


def summarize_routers(results: dict[str, Any], ds: RoutingDataset) -> dict[str, dict]:
    """The section 7 summary of every router in `results`."""
    lo_hi = cost_range(ds)
    return {
        name: metrics.summarize(results["taus"], block["accuracy"], block["cost"],
                                block.get("feasible"), results["oracle"]["accuracy"],
                                results["best_fixed"]["cost"], lo_hi)
        for name, block in results["routers"].items()
    }


def compliance_table(results: dict[str, Any], router: str = "proteus") -> str:
    """A plain-text table: τ, accuracy, cost, perfect-knowledge cost, met?, declared feasible."""
    block = results["routers"][router]
    frontier = results.get("perfect_frontier_cost") or [float("nan")] * len(results["taus"])
    lines = [f"{'tau':>6} {'accuracy':>9} {'cost':>10} {'frontier':>10} {'met':>4} {'feasible':>8}"]
    for i, tau in enumerate(results["taus"]):
        acc, cost = block["accuracy"][i], block["cost"][i]
        met = "yes" if acc >= tau - metrics.FLOOR_EPS else "NO"
        feas = "yes" if block["feasible"][i] else "no"
        lines.append(f"{tau:6.3f} {acc:9.4f} {cost:10.3e} {frontier[i]:10.3e} {met:>4} {feas:>8}")
    s = results["summary"][router]
    lines.append(f"floor compliance {s['floor_compliance']:.3f}  target-response r "
                 f"{s['target_response_corr']:.3f}  oracle gap {s['oracle_gap']:.4f}  "
                 f"max savings vs best fixed {s['max_savings_vs_best_fixed']:.3f}")
    return "\n".join(lines)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict[str, Any]:
    """The main job: train (or resume) in `workdir`, evaluate on test, write results.json.

    Returns the results dict plus a printable "table" entry (not written to the file).
    """
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    splits = pipeline.load_splits(config)
    state, setup = pipeline.train_runs(config, workdir, splits, progress=progress)
    taus = pipeline.eval_taus(config, setup.lane_taus)
    results = build_results(config, setup, state, splits["test"], taus,
                                       encoder=config.data.encoder)
    pipeline.write_json(os.path.join(workdir, "results.json"), results)
    logging.info("wrote %s", os.path.join(workdir, "results.json"))
    return {**results, "table": compliance_table(results)}
