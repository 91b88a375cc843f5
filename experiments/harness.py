"""The full evaluation harness (DESIGN.md sections 4-7): PROTEUS, its certified version and every
baseline on the same splits, features and shared predictor; results.json, report and plots.

Split roles: `pred` fits the predictor, `policy` trains the policy and duals (and tunes
PROTEUS-plugin, whose λ comes from labels the predictor never fitted), `val` tunes the other
baselines, `calib` certifies floors, `test` is reported. kNN's reference set is pred + policy.
"""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import evaluation, pipeline
from experiments import workdir as workdir_lib
from proteus.data.dataset import RoutingDataset
from proteus.evaluation import metrics, report, results
from proteus.evaluation.baselines import RouterInputs, make_router
from proteus.evaluation.paired_aiq import paired_aiq
from proteus.evaluation.predictor_quality import predictor_quality
from proteus.training import crossfit, networks, train

BASELINE_NAMES = ("proteus_plugin", "carrot", "omnirouter", "threshold", "knn", "zero_router",
                  "cluster", "task_table")
NEEDS_REFERENCE = ("knn", "cluster", "task_table")  # fitted on the training rows' labels
PAIRED_BOOT = 1000  # test resamples behind the paired AIQ intervals


def predictor_inputs(setup: pipeline.Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset) -> RouterInputs:
    """`ds` with the shared (PROTEUS) predictor's p_hat [N, M] and c_hat [N, M] USD."""
    params = pipeline.run_slice(state, run).params
    _, p_hat, c_hat = networks.predicted(setup.static.spec, params,
                                         jnp.asarray(ds.features, jnp.float32))
    return RouterInputs.from_dataset(ds, np.asarray(p_hat, np.float64),
                                     np.asarray(c_hat, np.float64))


def training_inputs(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                    state: train.TrainState, run: int,
                    splits: dict[str, RoutingDataset]) -> RouterInputs:
    """The training labels with predictions the predictor did not fit: out of fold when
    cross-fitting (the pool), else the `policy` split. PROTEUS-plugin tunes its λ(τ) here."""
    if config.train.folds == 1:
        return predictor_inputs(setup, state, run, splits["policy"])
    pool, fold = pipeline.training_pool(splits, config.train.folds, config.data.split_salt)
    params = pipeline.run_slice(state, run).params
    _, (_, p_hat, c_hat) = crossfit.calibrate_and_predict(
        setup.static.spec, params, jnp.asarray(pool.features, jnp.float32),
        jnp.asarray(pool.scores, jnp.float32), jnp.asarray(fold))
    return RouterInputs.from_dataset(pool, np.asarray(p_hat, np.float64),
                                     np.asarray(c_hat, np.float64))


def baseline_blocks(splits: dict[str, RoutingDataset], inputs: dict[str, RouterInputs],
                    taus: np.ndarray, choices_out: dict[str, np.ndarray] | None = None,
                    ) -> dict[str, dict]:
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
        blocks[f"fixed:{model}"] = evaluation.constant_router(
            float(test.scores[:, m].mean()), float(test.costs[:, m].mean()), len(taus))
    return blocks


def evaluate_all(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                 state: train.TrainState, splits: dict[str, RoutingDataset],
                 run: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every router on the test split. Returns (results dict, certification dict)."""
    taus = pipeline.eval_taus(config, setup.lane_taus)
    inputs = {name: predictor_inputs(setup, state, run, splits[name]) for name in ("val", "test")}
    inputs["train"] = training_inputs(config, setup, state, run, splits)
    choices: dict[str, np.ndarray] = {}
    routers, certification = evaluation.proteus_blocks(config, setup, state, run, splits, taus,
                                                       choices)
    routers.update(baseline_blocks(splits, inputs, taus, choices))
    test = splits["test"]
    quality = predictor_quality(inputs["test"].p_hat, test.scores, test.models)
    paired = {"reference": "proteus", "n_boot": PAIRED_BOOT, "alpha": 0.05,
              "routers": paired_aiq(test.scores, test.costs, choices, "proteus",
                                    evaluation.cost_range(test), n_boot=PAIRED_BOOT,
                                    seed=config.seed)}
    res = evaluation.build_results(config, test, taus, routers,
                                   extra={"delta": config.certify.delta, "run": run,
                                          "predictor": quality, "paired_aiq": paired})
    return res, certification


def write_outputs(workdir: str, res: dict[str, Any], certification: dict[str, Any]) -> list[str]:
    """results.json, certification.json, report.md and the three plots into `workdir`."""
    paths = [str(results.write_results(res, os.path.join(workdir, "results.json")))]
    paths.append(evaluation.write_json(certification, os.path.join(workdir, "certification.json")))
    # report.md (with the predictor and paired-AIQ sections when res holds them), the three plots
    paths += [str(p) for p in report.write_all(res, workdir)]
    for p in paths:
        logging.info("wrote %s", p)
    return paths


def run_evaluation(config: ml_collections.ConfigDict, workdir: str,
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate the run trained in `workdir` (training or resuming it first if unfinished)."""
    workdir_lib.prepare(config, workdir)  # validate, lock, check / record config.json
    splits = pipeline.load_splits(config)
    state, setup = pipeline.train_runs(config, workdir, splits, progress=progress)
    res, certification = evaluate_all(config, setup, state, splits)
    write_outputs(workdir, res, certification)
    return res
