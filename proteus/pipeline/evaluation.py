"""`evaluate(trained)`: one trained run on the test split (DESIGN.md sections 4-7), in memory.

PROTEUS uncertified and certified (`proteus.pipeline.routing.proteus_blocks`), and with
`baselines` every other router on the same splits, features and shared predictor
(`proteus.pipeline.baselines`), the predictor's quality, the paired AIQ intervals and the
cross-fitted AIQ. The result is the DESIGN.md section 7 `results.json` content plus the
operating table and its certification, which is what an export needs. Writing them to a workdir
is the workdir layer's business (`experiments/runs.py`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ml_collections
import numpy as np

from proteus import operating
from proteus.data.dataset import RoutingDataset
from proteus.environment import library_versions
from proteus.evaluation import frontier, metrics, results
from proteus.evaluation.paired_aiq import crossfit_aiq, paired_aiq
from proteus.evaluation.predictor_quality import predictor_quality
from proteus.pipeline.baselines import (
    baseline_blocks,
    constant_router,
    predictor_inputs,
    training_inputs,
)
from proteus.pipeline.config import AUTO_RECORD
from proteus.pipeline.fit import Trained
from proteus.pipeline.routing import RunRouter, certification_windows, eval_taus, router_blocks
from proteus.pipeline.setup import Setup, Splits
from proteus.training import train

PAIRED_BOOT = 1000  # test resamples behind the paired AIQ intervals
CROSSFIT_REPEATS = 20  # random halvings of the test split behind the cross-fitted AIQ


class Evaluation(NamedTuple):
    """What `evaluate` measured.

    results: the `results.json` content (DESIGN.md section 7); None when only the operating
      points were read back (`proteus.training.export.read_operating`).
    operating: the candidate operating points in testing order, measured on `val`.
    certification: their `CertificationTable` dict on `calib`, about `certify.window` requests:
      the certificate an export serves.
    evaluation_certification: the one `results["routers"]["proteus_certified"]` was scored with
      (a window the size of the test split), when it differs from the served one; else None.
    All as JSON holds them (`results.to_jsonable`), equal to what `certificate()` writes.
    """

    results: dict[str, Any] | None
    operating: dict[str, Any]
    certification: dict[str, Any]
    evaluation_certification: dict[str, Any] | None = None

    def certificate(self) -> dict[str, Any]:
        """{"operating", "certification"[, "evaluation_certification"]}: the content of a
        workdir's `certification.json`."""
        out = {"operating": self.operating, "certification": self.certification}
        if self.evaluation_certification is not None:
            out["evaluation_certification"] = self.evaluation_certification
        return out


def evaluate(trained: Trained, *, run: int = 0, baselines: bool = True,
             splits: Splits | None = None) -> Evaluation:
    """Evaluate run `run` of `trained` on the test split.

    Args:
      trained: `train`'s result.
      run: which of its S runs.
      baselines: False measures PROTEUS alone (seconds; what `launch.train` reports).
      splits: the data to evaluate on (default: what it trained on, `trained.splits`).
    """
    res, certificate = evaluate_all(trained.config, trained.setup, trained.state,
                                    trained.splits if splits is None else splits, run=run,
                                    baselines=baselines)
    # as JSON holds them (NaN -> None, tuples -> lists), so that an export from memory equals
    # one from the workdir's certification.json
    certificate = results.to_jsonable(certificate)
    return Evaluation(res, certificate["operating"], certificate["certification"],
                      certificate.get("evaluation_certification"))


def sweep_taus(config: ml_collections.ConfigDict, grid: np.ndarray) -> np.ndarray:
    """[S] sorted τ at which every router is routed for its AIQ: the report grid plus τ in [0, 1]
    every `eval.aiq_step` (0: the grid alone).

    AIQ is the area under the hull of the points a router reaches as its knob moves, and
    RouterBench sweeps each router's knob over its whole range. The report grid starts at the
    cheapest model's training accuracy and is spaced ~0.01 apart: a router that keeps a safety
    margin (PROTEUS's uncertified rule) never reaches its cheapest point there, and its curve is
    sampled at a dozen points. The sweep gives every router its knob's ends and its curve.
    """
    step = float(config.eval.aiq_step)
    if step <= 0:
        return np.asarray(grid, np.float64)
    return np.union1d(grid, np.linspace(0.0, 1.0, int(round(1.0 / step)) + 1))


def on_grid(block: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """A router block routed at the sweep's S τ -> the block at the report grid's τ (`keep`: [S]
    bool), with "sweep": the distinct (cost, accuracy) points over all S (what its AIQ uses)."""
    n = len(keep)
    out = {k: [x for x, kept in zip(v, keep, strict=True) if kept]
           if isinstance(v, list) and len(v) == n else v for k, v in block.items()}
    cost, acc = metrics.distinct_points(block["cost"], block["accuracy"])
    out["sweep"] = {"cost": cost.tolist(), "accuracy": acc.tolist()}
    return out


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
    oracle_cost_at = frontier.perfect_frontier_cost(ds.scores, ds.costs, taus)
    checked, served = certification_windows(config, ds.n_queries)
    tolerance = float(config.certify.tolerance) if checked else 0.0
    certificate = {"delta": float(config.certify.delta), "window": checked,
                   "tolerance": tolerance, "served_window": served,
                   "promise": operating.certificate.promise(config.certify.delta, checked,
                                                            tolerance)}
    if AUTO_RECORD in config:  # the automatic settings' choices and evidence (`pipeline.auto`)
        extra = {AUTO_RECORD: config[AUTO_RECORD].to_dict(), **(extra or {})}
    extra = {"config_name": config.name, "perfect_frontier_cost": oracle_cost_at.tolist(),
             "certificate": certificate,
             "oracle_frontier": {"taus": list(map(float, taus)), "cost": oracle_cost_at.tolist()},
             "versions": library_versions(), **(extra or {})}
    return results.build_results(
        dataset=ds.name, models=ds.models, encoder=config.data.encoder, n_queries=ds.n_queries,
        taus=taus, oracle=(oracle_acc, oracle_cost), best_fixed=(best_model, best_acc, best_cost),
        routers=routers, cost_range=cost_range(ds), extra=extra)


def evaluate_all(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                 splits: Splits, run: int = 0,
                 baselines: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """PROTEUS, certified and (with `baselines`) every other router on the test split, with the
    predictor's quality, the paired AIQ intervals and the cross-fitted AIQ
    (`paired_aiq.crossfit_aiq`). Returns (results dict, {"operating", "certification"})."""
    router = RunRouter.of_run(setup, state, run)
    if not baselines:  # the main job: PROTEUS alone, in seconds
        return proteus_results(config, router, splits)
    grid = eval_taus(config, router.lane_taus)
    taus = sweep_taus(config, grid)  # the grid and the AIQ sweep; every router routes at all
    keep = np.isin(taus, grid)
    choices: dict[str, np.ndarray] = {}
    cert_taus = operating.certification_taus(grid, config.eval.tau_step)
    routers, certificate = router_blocks(config, router, splits, taus, choices,
                                         cert_taus=cert_taus)
    test = splits["test"]
    inputs = {name: predictor_inputs(setup, state, run, splits[name]) for name in ("val", "test")}
    inputs["train"] = training_inputs(config, setup, state, run, splits)
    routers.update(baseline_blocks(splits, inputs, taus, choices))
    routers = {name: on_grid(block, keep) for name, block in routers.items()}
    quality = predictor_quality(inputs["test"].p_hat, test.scores, test.models)
    quality["task_prior"] = list(setup.task_names)  # the tasks p̂ is conditioned on ([]: none)
    distinct = {name: np.unique(ch, axis=0) for name, ch in choices.items()}  # same hulls
    span = cost_range(test)
    paired = {"reference": "proteus", "n_boot": PAIRED_BOOT, "alpha": 0.05,
              "routers": paired_aiq(test.scores, test.costs, distinct, "proteus", span,
                                    n_boot=PAIRED_BOOT, seed=config.seed)}
    crossfit = {"repeats": CROSSFIT_REPEATS, "seed": int(config.seed),
                "routers": crossfit_aiq(test.scores, test.costs, distinct, span,
                                        repeats=CROSSFIT_REPEATS, seed=config.seed)}
    res = build_results(config, test, grid, routers,
                        extra={"delta": config.certify.delta, "run": run,
                               "predictor": quality, "paired_aiq": paired,
                               "aiq_crossfit": crossfit})
    return res, certificate


def proteus_results(config: ml_collections.ConfigDict, router: RunRouter, splits: Splits,
                    table: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """PROTEUS alone, uncertified and certified, on the test split (`evaluate_all` without
    baselines; also how an onboarded artifact is scored, with its own operating `table`; None:
    measured on `val`): (results dict, {"operating", "certification"[,
    "evaluation_certification"]}). splits: "val", "calib" and "test"."""
    grid = eval_taus(config, router.lane_taus)
    taus = sweep_taus(config, grid)  # the grid and the AIQ sweep
    cert_taus = operating.certification_taus(grid, config.eval.tau_step)
    routers, certificate = router_blocks(config, router, splits, taus, cert_taus=cert_taus,
                                         table=table)
    keep = np.isin(taus, grid)
    routers = {name: on_grid(block, keep) for name, block in routers.items()}
    return build_results(config, splits["test"], grid, routers), certificate
