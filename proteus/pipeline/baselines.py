"""The baselines of one trained run: every other router on the same splits, features and shared
(PROTEUS) predictor (DESIGN.md section 5).

Split roles: `pred` fits the predictor, `policy` trains the policy and duals (and tunes
PROTEUS-plugin, whose λ comes from labels the predictor never fitted), `val` tunes the other
baselines, `test` is reported. kNN's, the cluster router's and the task table's reference set is
pred + policy.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus.data.dataset import RoutingDataset
from proteus.evaluation import metrics
from proteus.evaluation.baselines import RouterInputs, make_router
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import Setup, Splits, query_tasks, training_pool
from proteus.training import crossfit, networks, train

BASELINE_NAMES = ("proteus_plugin", "carrot", "omnirouter", "threshold", "knn", "zero_router",
                  "cluster", "task_table")
NEEDS_REFERENCE = ("knn", "cluster", "task_table")  # fitted on the training rows' labels


def constant_router(accuracy: float, cost: float, n_taus: int) -> dict[str, list]:
    """A router whose operating point ignores τ (oracle, a fixed model)."""
    return {"accuracy": [accuracy] * n_taus, "cost": [cost] * n_taus, "feasible": [True] * n_taus}


def predictor_inputs(setup: Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset) -> RouterInputs:
    """`ds` with the shared (PROTEUS) predictor's p_hat [N, M] and c_hat [N, M] USD."""
    params = run_slice(state, run).params
    _, p_hat, c_hat = networks.predicted(setup.static.spec, params,
                                         jnp.asarray(ds.features, jnp.float32),
                                         query_tasks(setup, ds))
    return RouterInputs.from_dataset(ds, np.asarray(p_hat, np.float64),
                                     np.asarray(c_hat, np.float64))


def training_inputs(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                    run: int, splits: Splits) -> RouterInputs:
    """The training labels with predictions the predictor did not fit: out of fold when
    cross-fitting (the pool), else the `policy` split. PROTEUS-plugin tunes its λ(τ) here."""
    if config.train.folds == 1:
        return predictor_inputs(setup, state, run, splits["policy"])
    pool, fold = training_pool(splits, config.train.folds, config.data.split_salt)
    params = run_slice(state, run).params
    _, (_, p_hat, c_hat) = crossfit.calibrate_and_predict(
        setup.static.spec, params, jnp.asarray(pool.features, jnp.float32),
        jnp.asarray(pool.scores, jnp.float32), jnp.asarray(fold), query_tasks(setup, pool))
    return RouterInputs.from_dataset(pool, np.asarray(p_hat, np.float64),
                                     np.asarray(c_hat, np.float64))


def baseline_blocks(splits: Splits, inputs: dict[str, RouterInputs], taus: np.ndarray,
                    choices_out: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Fit every baseline on its tuning split and route the test split (labels withheld).

    inputs: RouterInputs with the shared predictor's outputs for "train" (see
    `training_inputs`), "val" and "test". The task-table router runs when the data has tasks.
    choices_out: when given, each baseline's test routing [T, N] is put there.
    """
    pred, policy = splits["pred"], splits["policy"]
    reference = RouterInputs(
        scores=np.concatenate([pred.scores, policy.scores]),
        costs=np.concatenate([pred.costs, policy.costs]),
        features=np.concatenate([pred.features, policy.features]),
        tasks=np.concatenate([pred.tasks, policy.tasks]))
    test = splits["test"]
    has_tasks = bool(np.any(reference.tasks != "")) and bool(np.any(test.tasks != ""))
    blocks = {}
    for name in BASELINE_NAMES:
        if name == "task_table" and not has_tasks:
            continue
        kwargs = {"reference": reference} if name in NEEDS_REFERENCE else {}
        tune = inputs["train"] if name == "proteus_plugin" else inputs["val"]
        router = make_router(name, **kwargs).fit(tune)
        decisions = router.route(inputs["test"].without_labels(), taus)
        acc, cost = metrics.realised(test.scores, test.costs, decisions.choices)
        if choices_out is not None:
            choices_out[name] = np.asarray(decisions.choices)
        blocks[name] = {"accuracy": acc.tolist(), "cost": cost.tolist(),
                        "feasible": np.asarray(decisions.feasible, bool).tolist()}
    for m, model in enumerate(test.models):
        blocks[f"fixed:{model}"] = constant_router(
            float(test.scores[:, m].mean()), float(test.costs[:, m].mean()), len(taus))
    return blocks
