"""Evaluation of a trained run on the test split, for every launcher (DESIGN.md sections 4-7).

`proteus_blocks` measures the operating points on `val`, certifies them on `calib` and routes the
test split with the uncertified and certified rules (`proteus.operating`); the main job,
the full evaluation (`evaluate_all`, which adds every baseline on the same splits, features and
shared predictor) and the sweep all call it. `build_results` gives the DESIGN.md section 7
`results.json` with the oracle and the best fixed model added; `run_evaluation` trains or resumes
a workdir, evaluates it and writes the outputs (the main job: PROTEUS only, without the report).

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

from experiments import pipeline
from experiments import workdir as workdir_lib
from proteus import operating
from proteus.data.dataset import RoutingDataset
from proteus.environment import library_versions
from proteus.evaluation import metrics, report, results
from proteus.evaluation.baselines import RouterInputs, make_router
from proteus.evaluation.paired_aiq import crossfit_aiq, paired_aiq
from proteus.evaluation.predictor_quality import predictor_quality
from proteus.training import crossfit, networks, train

BASELINE_NAMES = ("proteus_plugin", "carrot", "omnirouter", "threshold", "knn", "zero_router",
                  "cluster", "task_table")
NEEDS_REFERENCE = ("knn", "cluster", "task_table")  # fitted on the training rows' labels
PAIRED_BOOT = 1000  # test resamples behind the paired AIQ intervals
CROSSFIT_REPEATS = 20  # random halvings of the test split behind the cross-fitted AIQ


def constant_router(accuracy: float, cost: float, n_taus: int) -> dict[str, list]:
    """A router whose operating point ignores τ (oracle, a fixed model)."""
    return {"accuracy": [accuracy] * n_taus, "cost": [cost] * n_taus, "feasible": [True] * n_taus}


def candidate_routes(setup: pipeline.Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset, table: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each operating point of `table` on `ds`: (model [C, N], mean μ [C], NaN for fixed).

    A policy point routes with PROTEUS at its τ'; a fixed-model point sends every query there.
    """
    taus = operating.table.table_taus(table)
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
    lanes' range and, with `operating.fixed_models`, every single model
    (`proteus.operating.table`).
    """
    points = operating.operating_taus(np.asarray(setup.lane_taus), config.certify.n_points)
    cand_tau, cand_model = operating.candidates(points, heldout.n_models,
                                                config.operating.fixed_models)
    raw = {"tau": [None if np.isnan(t) else float(t) for t in cand_tau],
           "model": cand_model.tolist()}
    choices = candidate_routes(setup, state, run, heldout, raw)[0]
    scores, costs = operating.point_outcomes(heldout.scores, heldout.costs, choices)
    return operating.build_table(cand_tau, cand_model, scores, costs,
                                 config.operating.margin_z, config.operating.credit_z)


def certify_points(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                   state: train.TrainState, run: int, calib: RoutingDataset,
                   table: dict[str, Any], taus: np.ndarray,
                   windows: tuple[int, ...]) -> list[operating.CertificationTable]:
    """Fixed-sequence certification of the table's points (testing order) on `calib`, once per
    promised window N in `windows` (0: the population promise; see `certification_windows`)."""
    choices = candidate_routes(setup, state, run, calib, table)[0]
    scores, costs = operating.point_outcomes(calib.scores, calib.costs, choices)
    cert = config.certify
    return [operating.certify(scores, costs, taus, delta=cert.delta, method=cert.method,
                              fallback=cert.fallback, window=window,
                              tolerance=cert.tolerance if window else 0.0)
            for window in windows]


def certification_windows(config: ml_collections.ConfigDict, n_test: int) -> tuple[int, int]:
    """(the evaluation's window, the served window): a promise about N requests is checked on a
    test split of N, so the evaluation certifies at the test split's size and the export serves
    `certify.window`; with `certify.window` = 0 both are the population promise."""
    served = int(config.certify.window)
    return (n_test if served else 0), served


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
                   cert_taus: np.ndarray | None = None) -> tuple[dict[str, dict], dict[str, Any]]:
    """PROTEUS uncertified and certified on the test split, at each of `taus`.

    Returns ({"proteus", "proteus_certified"} router blocks, {"operating": table,
    "certification": the served CertificationTable dict, "evaluation_certification": the one
    `proteus_certified` is scored with, when its window differs}); the first two are what an
    export needs. The points are certified at `cert_taus` (default `taus`); the certified router
    serves any other τ by the smallest certified-grid τ' >= τ. When `choices_out` is given, each
    router's test routing [T, N] (-1 rows: refused τ) is put there.
    """
    table = operating_table(config, setup, state, run, splits["val"])
    test = splits["test"]
    windows = certification_windows(config, test.n_queries)
    checked, served = certify_points(config, setup, state, run, splits["calib"], table,
                                     taus if cert_taus is None else cert_taus, windows)
    choices, mu_pts = candidate_routes(setup, state, run, test, table)
    acc_pts, cost_pts = metrics.realised(test.scores, test.costs, choices)
    blocks = {}
    for name, certification in (("proteus", None), ("proteus_certified", checked.to_dict())):
        policy = operating.OperatingPolicy(table, certification, config.certify.fallback,
                                           test.models)
        points = resolve_grid(policy, taus)
        blocks[name] = router_block(points, acc_pts, cost_pts, mu_pts)
        if choices_out is not None:
            choices_out[name] = np.stack([np.full(test.n_queries, -1) if p is None
                                          else choices[p.point] for p in points])
    out = {"operating": table, "certification": served.to_dict()}
    if windows[0] != windows[1]:  # what results.json's proteus_certified was scored with
        out["evaluation_certification"] = checked.to_dict()
    return blocks, out


def sweep_taus(config: ml_collections.ConfigDict, grid: np.ndarray) -> np.ndarray:
    """[S] sorted τ at which every router is routed for its AIQ: the report grid plus τ in [0, 1]
    every `eval.aiq_step` (0: the grid alone).

    AIQ is the area under the hull of the points a router reaches as its knob moves, and
    RouterBench sweeps each router's knob over its whole range. The report grid starts at the
    cheapest model's training accuracy and is spaced ~0.01 apart: a router that keeps a safety
    margin (PROTEUS's uncertified rule) never reaches its cheapest point there, and its curve is
    sampled at a dozen points. The sweep gives every router its knob's ends and its curve.
    """
    step = float(config.eval.get("aiq_step", 0.0))  # a workdir from before the sweep: none
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
    frontier = metrics.perfect_frontier_cost(ds.scores, ds.costs, taus)
    checked, served = certification_windows(config, ds.n_queries)
    tolerance = float(config.certify.tolerance) if checked else 0.0
    certificate = {"delta": float(config.certify.delta), "window": checked,
                   "tolerance": tolerance, "served_window": served,
                   "promise": operating.certificate.promise(config.certify.delta, checked,
                                                            tolerance)}
    extra = {"config_name": config.name, "perfect_frontier_cost": frontier.tolist(),
             "certificate": certificate,
             "oracle_frontier": {"taus": list(map(float, taus)), "cost": frontier.tolist()},
             "versions": library_versions(), **(extra or {})}
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


def write_json(payload: dict[str, Any], path: str) -> str:
    """Strict JSON, written atomically (temp file, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(results.to_jsonable(payload), f, indent=1, allow_nan=False)
    os.replace(path + ".tmp", path)
    return path


def predictor_inputs(setup: pipeline.Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset) -> RouterInputs:
    """`ds` with the shared (PROTEUS) predictor's p_hat [N, M] and c_hat [N, M] USD."""
    params = pipeline.run_slice(state, run).params
    _, p_hat, c_hat = networks.predicted(setup.static.spec, params,
                                         jnp.asarray(ds.features, jnp.float32),
                                         pipeline.query_tasks(setup, ds))
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
        jnp.asarray(pool.scores, jnp.float32), jnp.asarray(fold), pipeline.query_tasks(setup, pool))
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
        blocks[f"fixed:{model}"] = constant_router(
            float(test.scores[:, m].mean()), float(test.costs[:, m].mean()), len(taus))
    return blocks


def evaluate_all(config: ml_collections.ConfigDict, setup: pipeline.Setup,
                 state: train.TrainState, splits: dict[str, RoutingDataset],
                 run: int = 0, baselines: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """PROTEUS, certified and (with `baselines`) every other router on the test split, with the
    predictor's quality, the paired AIQ intervals and the cross-fitted AIQ
    (`paired_aiq.crossfit_aiq`). Returns (results dict, certification)."""
    grid = pipeline.eval_taus(config, setup.lane_taus)
    taus = sweep_taus(config, grid)  # the grid and the AIQ sweep; every router routes at all
    keep = np.isin(taus, grid)
    choices: dict[str, np.ndarray] = {}
    cert_taus = operating.certification_taus(grid, config.eval.tau_step)
    routers, certification = proteus_blocks(config, setup, state, run, splits, taus, choices,
                                            cert_taus=cert_taus)
    test = splits["test"]
    if not baselines:  # the main job: PROTEUS alone, in seconds
        routers = {name: on_grid(block, keep) for name, block in routers.items()}
        return build_results(config, test, grid, routers), certification
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
    return res, certification


def write_outputs(workdir: str, res: dict[str, Any], certification: dict[str, Any],
                  with_report: bool = True) -> list[str]:
    """results.json, certification.json and (with_report) report.md and the three plots."""
    paths = [str(results.write_results(res, os.path.join(workdir, "results.json")))]
    paths.append(write_json(certification, os.path.join(workdir, "certification.json")))
    if with_report:  # with the predictor and paired-AIQ sections when res holds them
        paths += [str(p) for p in report.write_all(res, workdir)]
    for p in paths:
        logging.info("wrote %s", p)
    return paths


def run_evaluation(config: ml_collections.ConfigDict, workdir: str, progress: bool = True,
                   baselines: bool = True, redraws: int = 0) -> dict[str, Any]:
    """Evaluate the run trained in `workdir` (training or resuming it first if unfinished) and
    write its outputs; `baselines=False` is the main job (PROTEUS only, no report). With
    `redraws` > 0, results.json also holds the redraw evaluation (`experiments.redraws`)."""
    from experiments import redraws as redraws_lib  # noqa: PLC0415 (it imports this module)

    workdir_lib.prepare(config, workdir)  # validate, lock, check / record config.json
    splits = pipeline.load_splits(config)
    state, setup = pipeline.train_runs(config, workdir, splits, progress=progress)
    res, certification = evaluate_all(config, setup, state, splits, baselines=baselines)
    if redraws > 0:
        res["redraw"] = redraws_lib.redraw_block(config, setup, state, splits, redraws)
    write_outputs(workdir, res, certification, with_report=baselines)
    return res
