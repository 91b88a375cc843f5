"""The full evaluation harness (DESIGN.md sections 4-7): PROTEUS, its certified version and every
baseline on the same splits, features and shared predictor; results.json, report and plots.

Split roles: `pred` fits the predictor, `policy` trains the policy and duals (and tunes
PROTEUS-plugin, whose λ comes from labels the predictor never fitted), `val` tunes the other
baselines, `calib` certifies floors, `test` is reported. kNN's reference set is pred + policy.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import evaluation, pipeline
from experiments import workdir as workdir_lib
from proteus import calibrate, metrics, networks, results, train
from proteus.baselines import RouterInputs, make_router
from proteus.data.dataset import RoutingDataset

BASELINE_NAMES = ("proteus_plugin", "carrot", "omnirouter", "threshold", "knn", "zero_router")


def predictor_inputs(setup: pipeline.Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset) -> RouterInputs:
    """`ds` with the shared (PROTEUS) predictor's p_hat [N, M] and c_hat [N, M] USD."""
    params = pipeline.run_slice(state, run).params
    _, p_hat, c_hat = networks.predicted(setup.static.spec, params,
                                         jnp.asarray(ds.features, jnp.float32))
    return RouterInputs.from_dataset(ds, np.asarray(p_hat, np.float64),
                                     np.asarray(c_hat, np.float64))


def baseline_blocks(splits: dict[str, RoutingDataset], inputs: dict[str, RouterInputs],
                    taus: np.ndarray) -> dict[str, dict]:
    """Fit every baseline on its tuning split and route the test split (labels withheld)."""
    reference = RouterInputs(
        scores=np.concatenate([splits["pred"].scores, splits["policy"].scores]),
        costs=np.concatenate([splits["pred"].costs, splits["policy"].costs]),
        features=np.concatenate([splits["pred"].features, splits["policy"].features]))
    test = splits["test"]
    blocks = {}
    for name in BASELINE_NAMES:
        kwargs = {"reference": reference} if name == "knn" else {}
        tune = inputs["policy"] if name == "proteus_plugin" else inputs["val"]
        router = make_router(name, **kwargs).fit(tune)
        decisions = router.route(inputs["test"].without_labels(), taus)
        acc, cost = metrics.realised(test.scores, test.costs, decisions.choices)
        blocks[name] = {"accuracy": acc.tolist(), "cost": cost.tolist(),
                        "feasible": np.asarray(decisions.feasible, bool).tolist()}
    for m, model in enumerate(test.models):
        blocks[f"fixed:{model}"] = evaluation.constant_router(
            float(test.scores[:, m].mean()), float(test.costs[:, m].mean()), len(taus))
    return blocks


def operating_taus(lane_taus: np.ndarray, n_points: int) -> np.ndarray:
    """[P] operating points (requested τ' values), most conservative (highest) first.

    Fixed before looking at calibration labels, as fixed-sequence testing requires: uniform in
    log(1 − τ') over the lanes' range, like the lanes themselves.
    """
    lo, hi = float(lane_taus[0]), float(lane_taus[-1])
    grid = -np.expm1(np.linspace(np.log1p(-hi), np.log1p(-lo), n_points))
    return grid.astype(np.float64)


def certify_proteus(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                    state: train.TrainState, run: int, splits: dict[str, RoutingDataset],
                    taus: np.ndarray) -> tuple[dict[str, Any], calibrate.CertificationTable,
                                               np.ndarray]:
    """Certify PROTEUS's operating points on `calib`, then route `test` at the certified points.

    Returns (router block, certification table, operating τ' [P]).
    """
    cert = config.certify
    points = operating_taus(np.asarray(setup.lane_taus), cert.n_points)
    calib, test = splits["calib"], splits["test"]
    rows = np.arange(calib.n_queries)
    calib_choice = np.asarray(pipeline.route_split(setup, state, run, calib, points).model)
    table = calibrate.certify(calib.scores[rows, calib_choice], calib.costs[rows, calib_choice],
                              taus, delta=cert.delta, method=cert.method, fallback=cert.fallback)
    test_choice = np.asarray(pipeline.route_split(setup, state, run, test, points).model)
    lookups = [table.lookup(float(t)) for t in taus]
    route_to = np.array([j for j, _, _ in lookups])
    feasible = np.array([f for _, f, _ in lookups], bool)
    acc_pts, cost_pts = metrics.realised(test.scores, test.costs, test_choice)
    # "refuse" answers nothing for an uncertified τ: no accuracy, no cost.
    accuracy = np.where(route_to >= 0, acc_pts[np.maximum(route_to, 0)], np.nan)
    cost = np.where(route_to >= 0, cost_pts[np.maximum(route_to, 0)], np.nan)
    block = {"accuracy": accuracy.tolist(), "cost": cost.tolist(), "feasible": feasible.tolist(),
             "operating_tau": [float(points[j]) if j >= 0 else None for j in route_to],
             "reason": [r for _, _, r in lookups]}
    return block, table, points


def evaluate_all(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                 state: train.TrainState, splits: dict[str, RoutingDataset],
                 run: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every router on the test split. Returns (results dict, certification dict)."""
    taus = pipeline.eval_taus(config, setup.lane_taus)
    inputs = {name: predictor_inputs(setup, state, run, splits[name])
              for name in ("policy", "val", "test")}
    routers = {"proteus": evaluation.proteus_router(setup, state, run, splits["test"], taus)[0]}
    certified, table, points = certify_proteus(config, setup, state, run, splits, taus)
    routers["proteus_certified"] = certified
    routers.update(baseline_blocks(splits, inputs, taus))
    res = evaluation.build_results(config, splits["test"], taus, routers,
                                   extra={"delta": config.certify.delta, "run": run})
    certification = {**table.to_dict(), "operating_taus": points.tolist()}
    return res, certification


def write_outputs(workdir: str, res: dict[str, Any], certification: dict[str, Any]) -> list[str]:
    """results.json, certification.json, report.md and the three plots into `workdir`."""
    paths = [str(results.write_results(res, os.path.join(workdir, "results.json")))]
    cert_path = os.path.join(workdir, "certification.json")
    with open(cert_path + ".tmp", "w") as f:
        json.dump(results.to_jsonable(certification), f, indent=1)
    os.replace(cert_path + ".tmp", cert_path)
    paths.append(cert_path)
    paths.append(str(results.write_report(res, os.path.join(workdir, "report.md"))))
    paths += [str(p) for p in results.write_plots(res, workdir)]
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
