"""Synthetic results dicts (DESIGN.md section 7) for the report and plot tests: any number of
models, every router name of the contract, no training."""

from __future__ import annotations

import numpy as np

from proteus.evaluation import results

LEARNED = ("proteus", "proteus_certified", "proteus_plugin", "carrot", "omnirouter", "threshold",
           "knn", "zero_router", "cluster", "task_table")


def model_names(n: int) -> list[str]:
    """`n` model names shaped like real ones (an organisation prefix, a long tail)."""
    return [f"org{i % 3}/model-{i:02d}-instruct-v0.{i % 4}-extra-long-name" for i in range(n)]


def synthetic_results(n_models: int, n_taus: int = 12, seed: int = 0) -> dict:
    """A valid results dict: `n_models` fixed models, every router of `LEARNED`, the oracle and
    its frontier. Costs span two decades for n_models >= 3 (a single decade or less for 2).

    The certified router declares the top third of the τ grid infeasible.
    """
    rng = np.random.default_rng(seed)
    models = model_names(n_models)
    span = 100.0 if n_models > 2 else 3.0
    cost = 1e-5 * span ** np.linspace(0.0, 1.0, n_models)  # [M] USD per query
    acc = np.clip(0.35 + 0.45 * np.linspace(0, 1, n_models) ** 0.5
                  + rng.normal(0, 0.05, n_models), 0.05, 0.95)  # [M]
    best = int(np.argmax(acc))
    taus = np.linspace(0.4, 0.95, n_taus)  # [T]
    routers = {}
    for k, name in enumerate(LEARNED):
        a = np.minimum(taus + 0.02 * np.sin(k + 3 * taus), acc.max() + 0.01)  # [T]
        c = cost.min() * (cost.max() / cost.min()) ** ((a - a.min()) / np.ptp(a))  # [T]
        routers[name] = {"accuracy": a, "cost": c, "feasible": np.ones(n_taus, bool)}
    routers["proteus"]["mean_mu"] = np.linspace(0.0, 1.0, n_taus)
    routers["proteus_certified"]["mean_mu"] = np.linspace(0.0, 1.0, n_taus)
    routers["proteus_certified"]["feasible"][-(n_taus // 3):] = False
    for m, a, c in zip(models, acc, cost, strict=True):
        routers[f"fixed:{m}"] = {"accuracy": np.full(n_taus, a), "cost": np.full(n_taus, c),
                                 "feasible": np.ones(n_taus, bool)}
    routers["best_fixed"] = dict(routers[f"fixed:{models[best]}"])
    oracle = (0.97, float(cost[len(cost) // 2]))
    routers["oracle"] = {"accuracy": np.full(n_taus, oracle[0]), "cost": np.full(n_taus, oracle[1]),
                         "feasible": np.ones(n_taus, bool)}
    frontier = {"taus": taus, "cost": cost.min() * (1 + 5 * (taus - taus[0]) ** 2)}
    return results.build_results(
        dataset=f"synthetic:{n_models}models.parquet", models=models, encoder="hashing",
        n_queries=1000, taus=taus, oracle=oracle,
        best_fixed=(models[best], float(acc[best]), float(cost[best])), routers=routers,
        extra={"oracle_frontier": frontier})
