"""PROTEUS's operating points for one trained run, measured on the splits (DESIGN.md section 4).

The candidates (policy targets τ' and every fixed model, `proteus.operating`) are routed on a
split by `candidate_routes`; `operating_table` measures them on `val`, `certify_points` certifies
them on `calib`, and `proteus_blocks` routes the test split with the uncertified and certified
rules. The rules themselves live in `proteus.operating`; this module feeds them a trained run.

Every function takes the run as (config, setup, state [S], run): run `run` of the [S]-run
`state`, whose `lane_taus` are the lanes it trained with.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus import operating
from proteus.data.dataset import RoutingDataset
from proteus.evaluation import metrics
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import Setup, Splits, query_tasks
from proteus.training import loop, train
from proteus.types import Array, Decisions


def eval_taus(config: ml_collections.ConfigDict, lane_taus: Array | np.ndarray) -> np.ndarray:
    """The report grid [T]: the DESIGN.md default grid (eval.tau_lo..tau_hi by tau_step) plus
    `eval.wide_n` τ evenly over the lanes' range (lane_taus: [K], the run's
    `TrainState.lane_taus`)."""
    e = config.eval
    n_default = int(round((e.tau_hi - e.tau_lo) / e.tau_step)) + 1
    grid = np.round(np.linspace(e.tau_lo, e.tau_hi, n_default), 6)
    if e.wide_n > 0:
        lanes = np.asarray(lane_taus, np.float64)  # float32 rounding would duplicate grid points
        wide = np.round(np.linspace(lanes[0], lanes[-1], e.wide_n), 4)
        grid = np.union1d(grid, wide)
    return grid.astype(np.float64)


def route_split(setup: Setup, state: train.TrainState, run: int, ds: RoutingDataset,
                taus: np.ndarray) -> Decisions:
    """Deterministic PROTEUS decisions of run `run` on `ds` at every τ: model [T, N], mu [T, N]."""
    one = run_slice(state, run)
    return loop.route_grid(setup.static.spec, one.params, one.lane_taus, one.duals.lam_avg,
                           jnp.asarray(ds.features, jnp.float32), jnp.asarray(taus, jnp.float32),
                           query_tasks(setup, ds))


def candidate_routes(setup: Setup, state: train.TrainState, run: int,
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
        decision = route_split(setup, state, run, ds, taus[policy])
        choices[policy] = np.asarray(decision.model)
        mean_mu[policy] = np.asarray(decision.mu).mean(axis=1)
    return choices, mean_mu


def operating_table(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                    run: int, heldout: RoutingDataset) -> dict[str, Any]:
    """The candidate operating points in testing order, measured on `heldout` (`val`).

    Candidates (fixed before any label is read): `certify.n_points` policy targets τ' over the
    run's lanes and, with `operating.fixed_models`, every single model
    (`proteus.operating.table`).
    """
    lanes = np.asarray(run_slice(state.lane_taus, run))
    points = operating.operating_taus(lanes, config.certify.n_points)
    cand_tau, cand_model = operating.candidates(points, heldout.n_models,
                                                config.operating.fixed_models)
    raw = {"tau": [None if np.isnan(t) else float(t) for t in cand_tau],
           "model": cand_model.tolist()}
    choices = candidate_routes(setup, state, run, heldout, raw)[0]
    scores, costs = operating.point_outcomes(heldout.scores, heldout.costs, choices)
    return operating.build_table(cand_tau, cand_model, scores, costs,
                                 config.operating.margin_z, config.operating.credit_z)


def certify_points(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                   run: int, calib: RoutingDataset, table: dict[str, Any], taus: np.ndarray,
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


def proteus_blocks(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                   run: int, splits: Splits, taus: np.ndarray,
                   choices_out: dict[str, np.ndarray] | None = None,
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
