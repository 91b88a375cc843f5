"""PROTEUS's operating points for one trained run, measured on the splits (DESIGN.md section 4).

The candidates (policy targets τ' and every fixed model, `proteus.operating`) are routed on a
split by `candidate_routes`; `operating_table` measures them on `val`, `certify_points` certifies
them on `calib`, and `proteus_blocks` routes the test split with the uncertified and certified
rules. The rules themselves live in `proteus.operating`; this module feeds them a trained run.

Every function takes the router as a `RunRouter`: the networks, parameters, lanes and task
vocabulary of one run, from a trained run (`RunRouter.of_run`) or from an exported artifact's
bundle (`RunRouter.of_bundle`, what onboarding re-measures). The `(setup, state, run)` forms
(`route_split`, `candidate_routes`, `operating_table`, `certify_points`, `proteus_blocks`) are
the same functions for run `run` of an [S]-run `state`, whose `lane_taus` are its lanes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from proteus import operating
from proteus.data.dataset import RoutingDataset, task_index
from proteus.evaluation import metrics
from proteus.operating import exclusion
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import Setup, Splits
from proteus.training import loop, networks, train
from proteus.training.export import RouterBundle
from proteus.types import Array, Decisions, Params


class RunRouter(NamedTuple):
    """One router as the functions below route with it.

    spec: the networks; params: ONE run's {"predictor", "policy", "stats", "calib"};
    lane_taus, lane_lams: [K] the λ(τ) table; task_names: the task prior's vocabulary (()).
    """

    spec: networks.RouterSpec
    params: Params
    lane_taus: Array
    lane_lams: Array
    task_names: tuple[str, ...] = ()

    @classmethod
    def of_run(cls, setup: Setup, state: train.TrainState, run: int) -> RunRouter:
        """Run `run` of an [S]-run trained state."""
        one = run_slice(state, run)
        return cls(setup.static.spec, one.params, one.lane_taus, one.duals.lam_avg,
                   setup.task_names)

    @classmethod
    def of_bundle(cls, bundle: RouterBundle) -> RunRouter:
        """An artifact's router (`proteus.training.export.RouterBundle`)."""
        return cls(bundle.spec, bundle.params, jnp.asarray(bundle.lane_taus, jnp.float32),
                   jnp.asarray(bundle.lane_lams, jnp.float32), tuple(bundle.tasks))

    def task_ids(self, ds: RoutingDataset) -> Array | None:
        """[N] int32 task id of each query of `ds` (-1 unknown), or None without a task prior."""
        return jnp.asarray(task_index(self.task_names, ds.tasks)) if self.task_names else None


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
    """Deterministic PROTEUS decisions of run `run` on `ds` at every τ (`routes`)."""
    return routes(RunRouter.of_run(setup, state, run), ds, taus)


ROUTE_ROWS = 1024  # rows are padded to a multiple of this, so that splits share a compile


def routes(router: RunRouter, ds: RoutingDataset, taus: np.ndarray) -> Decisions:
    """Deterministic PROTEUS decisions of `router` on `ds` at every τ: model [T, N], mu [T, N].

    The rows are routed padded with zero rows to a multiple of `ROUTE_ROWS` (each row is routed
    on its own, so the padding changes nothing): `val`, `calib` and `test` then mostly share
    one compiled program (re-measuring an onboarded router compiles once, not twice).
    """
    n = ds.n_queries
    pad = -n % ROUTE_ROWS
    features = np.concatenate([np.asarray(ds.features, np.float32),
                               np.zeros((pad, ds.features.shape[1]), np.float32)])
    tasks = router.task_ids(ds)
    if tasks is not None:
        tasks = jnp.concatenate([tasks, jnp.full((pad,), -1, jnp.int32)])
    d = loop.route_grid(router.spec, router.params, router.lane_taus, router.lane_lams,
                        jnp.asarray(features), jnp.asarray(taus, jnp.float32), tasks)
    return d._replace(model=d.model[:, :n], mu=d.mu[:, :n], p_hat=d.p_hat[:n],
                      c_hat=d.c_hat[:n])


def candidate_routes(setup: Setup, state: train.TrainState, run: int,
                     ds: RoutingDataset, table: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """`point_routes` of run `run`."""
    return point_routes(RunRouter.of_run(setup, state, run), ds, table)


def point_routes(router: RunRouter, ds: RoutingDataset,
                 table: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each operating point of `table` on `ds`: (model [C, N], mean μ [C], NaN for fixed).

    A policy point routes with PROTEUS at its τ' (around the models it excludes, if any:
    `proteus.operating.exclusion`); a fixed-model point sends every query there.
    """
    taus = operating.table.table_taus(table)
    models = np.asarray(table["model"], np.int64)
    choices = np.broadcast_to(models[:, None], (len(models), ds.n_queries)).copy()
    mean_mu = np.full(taus.shape, np.nan)
    policy = np.flatnonzero(models < 0)
    if policy.size:
        decision = routes(router, ds, taus[policy])
        mu = np.asarray(decision.mu)
        choices[policy] = np.asarray(decision.model)
        mean_mu[policy] = mu.mean(axis=1)
        excluded = exclusion.table_excluded(table)
        around = [(k, j) for k, j in enumerate(policy.tolist()) if excluded[j]]
        if around:  # the rule again without those models (c_ref: the trained normaliser)
            p_hat, c_hat = np.asarray(decision.p_hat), np.asarray(decision.c_hat)
            c_ref = float(router.params["stats"]["c_ref"])
        for k, j in around:
            mask = exclusion.rows_mask([excluded[j]] * ds.n_queries, ds.n_models)
            choices[j] = exclusion.route_around(choices[j], mu[k], p_hat, c_hat, c_ref, mask)
    return choices, mean_mu


def operating_table(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                    run: int, heldout: RoutingDataset) -> dict[str, Any]:
    """`measure_points` of run `run` on `heldout` (`val`)."""
    return measure_points(config, RunRouter.of_run(setup, state, run), heldout)


def measure_points(config: ml_collections.ConfigDict, router: RunRouter,
                   heldout: RoutingDataset, masked: Sequence[int] = (),
                   route: Callable[[dict[str, Any]], np.ndarray] | None = None
                   ) -> dict[str, Any]:
    """The candidate operating points in testing order, measured on `heldout` (`val`).

    Candidates (fixed before any label is read): `certify.n_points` policy targets τ' over the
    router's lanes, the same targets again routing around the `masked` models when it names any
    (an onboarded router's points without the model it added), and, with
    `operating.fixed_models`, every single model (`proteus.operating.table`). `route` maps the
    candidates (a table without outcomes) to their choices on `heldout` [C, N]; None routes
    them with `router` (`point_routes`). Onboarding passes its own, which routes each row with
    a column fitted without that row.
    """
    points = operating.operating_taus(np.asarray(router.lane_taus), config.certify.n_points)
    cand_tau, cand_model, excluded = operating.table.masked_candidates(
        *operating.candidates(points, heldout.n_models, config.operating.fixed_models), masked)
    raw = {"tau": [None if np.isnan(t) else float(t) for t in cand_tau],
           "model": cand_model.tolist(), "excluded": [list(e) for e in excluded]}
    choices = (point_routes(router, heldout, raw)[0] if route is None else route(raw))
    scores, costs = operating.point_outcomes(heldout.scores, heldout.costs, choices)
    return operating.build_table(cand_tau, cand_model, scores, costs,
                                 config.operating.margin_z, config.operating.credit_z, excluded)


def certify_points(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                   run: int, calib: RoutingDataset, table: dict[str, Any], taus: np.ndarray,
                   windows: tuple[int, ...]) -> list[operating.CertificationTable]:
    """`certify_table` of run `run`."""
    return certify_table(config, RunRouter.of_run(setup, state, run), calib, table, taus,
                         windows)


def certify_table(config: ml_collections.ConfigDict, router: RunRouter, calib: RoutingDataset,
                  table: dict[str, Any], taus: np.ndarray,
                  windows: tuple[int, ...]) -> list[operating.CertificationTable]:
    """Fixed-sequence certification of the table's points (testing order) on `calib`, once per
    promised window N in `windows` (0: the population promise; see `certification_windows`)."""
    choices = point_routes(router, calib, table)[0]
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
    """`router_blocks` of run `run`."""
    return router_blocks(config, RunRouter.of_run(setup, state, run), splits, taus, choices_out,
                         cert_taus)


def router_blocks(config: ml_collections.ConfigDict, router: RunRouter, splits: Splits,
                  taus: np.ndarray, choices_out: dict[str, np.ndarray] | None = None,
                  cert_taus: np.ndarray | None = None, table: dict[str, Any] | None = None
                  ) -> tuple[dict[str, dict], dict[str, Any]]:
    """PROTEUS uncertified and certified on the test split, at each of `taus` (splits: at least
    "val", "calib" and "test").

    Returns ({"proteus", "proteus_certified"} router blocks, {"operating": table,
    "certification": the served CertificationTable dict, "evaluation_certification": the one
    `proteus_certified` is scored with, when its window differs}); the first two are what an
    export needs. The points are certified at `cert_taus` (default `taus`); the certified router
    serves any other τ by the smallest certified-grid τ' >= τ. When `choices_out` is given, each
    router's test routing [T, N] (-1 rows: refused τ) is put there. `table`: the operating table
    to certify and score (an artifact's own, e.g. an onboarded one's with points around its new
    model); None measures it on `val` here (`measure_points`).
    """
    table = measure_points(config, router, splits["val"]) if table is None else table
    test = splits["test"]
    windows = certification_windows(config, test.n_queries)
    checked, served = certify_table(config, router, splits["calib"], table,
                                    taus if cert_taus is None else cert_taus, windows)
    choices, mu_pts = point_routes(router, test, table)
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
