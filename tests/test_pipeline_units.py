"""Hand-checked unit tests of small proteus.pipeline helpers that have no natural test module."""

import json
import math
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import common
from proteus import operating
from proteus.data.dataset import RoutingDataset
from proteus.pipeline import baselines, bundle, fit, routing
from proteus.pipeline import config as config_lib
from proteus.pipeline import setup as setup_lib
from proteus.training import crossfit, duals, loop, networks
from proteus.types import Decisions

# ----------------------------------------------------------------------------- config helpers


def test_constant_router_repeats_one_point_at_every_tau():
    assert baselines.constant_router(0.7, 0.01, 3) == {
        "accuracy": [0.7, 0.7, 0.7], "cost": [0.01, 0.01, 0.01], "feasible": [True, True, True]}
    assert baselines.constant_router(0.5, 0.2, 0) == {"accuracy": [], "cost": [],
                                                      "feasible": []}


def test_chunk_problems_names_each_step_count_that_is_not_a_multiple():
    flat = {"train.chunk_size": 100, "train.pred_max_steps": 250, "train.policy_steps": 300}
    assert config_lib.chunk_problems(flat) == [
        "train.pred_max_steps=250: must be a multiple of train.chunk_size=100"]
    flat["train.policy_steps"] = 30
    assert len(config_lib.chunk_problems(flat)) == 2
    assert config_lib.chunk_problems({**flat, "train.pred_max_steps": 200,
                                      "train.policy_steps": 0}) == []  # 0 % 100 == 0


@pytest.mark.parametrize("flat", [
    {"train.chunk_size": 0, "train.pred_max_steps": 7},  # chunk_size is the schema's business
    {"train.chunk_size": True, "train.pred_max_steps": 7},  # a bool is not an int here
    {"train.chunk_size": "100", "train.pred_max_steps": 7},
    {"train.chunk_size": 100, "train.pred_max_steps": "250"},  # a wrong-typed step: skipped
    {"train.pred_max_steps": 250}])
def test_chunk_problems_skips_values_of_the_wrong_type(flat):
    assert config_lib.chunk_problems(flat) == []


def test_dual_settings_reads_train_and_turns_the_average_start_into_steps():
    c = common.base_config()
    c.train.dual, c.train.pid_gains, c.train.dual_ema = "pid", (3.0, 0.25, 1.5), 0.8
    c.train.dual_avg, c.train.dual_avg_start, c.train.policy_steps = 0.95, 0.25, 400
    c.train.dual_lr_late, c.train.lam_max = 0.3, 50.0
    # avg_start = int(0.25 * 400) = 100 policy steps
    assert config_lib.dual_settings(c) == duals.DualSettings(
        kind="pid", pid_gains=(3.0, 0.25, 1.5), ema=0.8, avg=0.95, avg_start=100, lr_late=0.3,
        lam_max=50.0)
    c.train.dual_avg_start, c.train.policy_steps = 0.5, 30
    assert config_lib.dual_settings(c).avg_start == 15  # int(15.0)


def test_loop_config_reads_train_and_refuses_partial_chunks():
    c = common.base_config()
    c.train.chunk_size, c.train.pred_max_steps, c.train.pred_patience = 10, 40, 3
    c.train.policy_steps, c.train.run_batch = 60, 2
    assert config_lib.loop_config(c) == loop.LoopConfig(
        chunk_size=10, pred_max_steps=40, pred_patience=3, policy_steps=60, run_batch=2)
    c.train.policy_steps = 65
    with pytest.raises(config_lib.ConfigError,
                       match=r"^train.policy_steps=65: must be a multiple of "
                             r"train.chunk_size=10$"):
        config_lib.loop_config(c)
    c.train.pred_max_steps = 45
    with pytest.raises(config_lib.ConfigError, match="pred_max_steps=45: .*; train.policy_steps"):
        config_lib.loop_config(c)


def test_run_keys_for_folds_each_run_into_the_base_seed_and_splits_it():
    # under jit: one compile instead of a dozen eager vmapped key ops (~1 s on CPU)
    keys_for = jax.jit(config_lib.run_keys_for, static_argnums=0)
    data = jax.jit(lambda keys: jax.tree.map(jax.random.key_data, keys))
    init_keys, run_keys = data(keys_for(7, jnp.array([0, 3])))
    assert init_keys.shape == run_keys.shape == (2, 2)  # [S] keys of 2 uint32 words each

    @jax.jit
    def by_hand(r):
        k_init, k_run = jax.random.split(jax.random.fold_in(jax.random.key(7), r))
        return jax.random.key_data(k_init), jax.random.key_data(k_run)

    for i, r in enumerate((0, 3)):
        k_init, k_run = by_hand(r)
        np.testing.assert_array_equal(init_keys[i], k_init)
        np.testing.assert_array_equal(run_keys[i], k_run)
    # run r's keys depend on r only, not on its position (a sweep passes r = seed)
    swapped_init, swapped_run = data(keys_for(7, jnp.array([3, 0])))
    np.testing.assert_array_equal(swapped_run[0], run_keys[1])
    np.testing.assert_array_equal(swapped_init[1], init_keys[0])
    assert not np.array_equal(run_keys[0], run_keys[1])
    assert not np.array_equal(init_keys[0], run_keys[0])


def test_get_dotted_walks_mappings_and_config_dicts():
    tree = {"a": {"b": 1, "n": None}, "x": 2}
    assert config_lib.get_dotted(tree, "a.b") == 1
    assert config_lib.get_dotted(tree, "x") == 2
    assert config_lib.get_dotted(tree, "a") == {"b": 1, "n": None}
    assert config_lib.get_dotted(tree, "a.c") is None  # missing leaf
    assert config_lib.get_dotted(tree, "q.b") is None  # missing parent
    assert config_lib.get_dotted(tree, "a.b.c") is None  # 1 is not a mapping
    assert config_lib.get_dotted(tree, "a.n") is None
    c = ml_collections.ConfigDict({"train": {"folds": 5}})
    assert config_lib.get_dotted(c, "train.folds") == 5
    assert config_lib.get_dotted(c, "train.chunk_size") is None


# ----------------------------------------------------------------------------- fit and routing


def test_metrics_record_is_json_ready_with_phase_and_step_first():
    metrics = {"loss": np.array([1.5, 2.0], np.float32), "acc": jnp.array([[1, 2]]),
               "lam": np.float64(0.25)}
    record = fit.metrics_record("policy", 200, metrics)
    assert record == {"phase": "policy", "step": 200, "loss": [1.5, 2.0], "acc": [[1, 2]],
                      "lam": 0.25}
    assert list(record)[:2] == ["phase", "step"]
    assert json.loads(json.dumps(record)) == record  # plain Python values only


def test_certification_windows_evaluate_at_the_test_size_and_serve_the_window():
    c = ml_collections.ConfigDict({"certify": {"window": 500}})
    assert routing.certification_windows(c, 120) == (120, 500)
    c.certify.window = 0  # the population promise: both 0, whatever the test size
    assert routing.certification_windows(c, 120) == (0, 0)


def _policy(fallback: str) -> operating.OperatingPolicy:
    # two fixed models: 0 accurate and dear, 1 cheap; margin_z = 0, so τ is feasible at a point
    # exactly when its accuracy >= τ
    table = {"tau": [None, None], "model": [0, 1], "accuracy": [0.9, 0.6], "cost": [1.0, 0.1],
             "n_heldout": 100, "margin_z": 0.0}
    return operating.OperatingPolicy(table, None, fallback)


def test_resolve_grid_serves_the_cheapest_point_and_none_where_refused():
    taus = np.array([0.5, 0.6, 0.8, 0.95])
    # τ <= 0.6: the cheap point 1; 0.8: only point 0 reaches it; 0.95: none (refused)
    points = routing.resolve_grid(_policy("refuse"), taus)
    assert [None if p is None else p.point for p in points] == [1, 1, 0, None]
    assert [p.tau for p in points[:3]] == [0.5, 0.6, 0.8]
    best = routing.resolve_grid(_policy("best_effort"), taus)
    assert [(p.point, p.feasible) for p in best] == [(1, True), (1, True), (0, True), (0, False)]
    with pytest.raises(ValueError, match="tau must be a number in"):
        routing.resolve_grid(_policy("refuse"), np.array([1.5]))  # only refusals become None


# ------------------------------------------------- operating points, with a hand-made policy
#
# `routing.routes` (the compiled PROTEUS routing, tested in tests/test_pipeline.py) is replaced by
# `_fake_routes`, so that every number below is worked out by hand. Two models, the same in every
# split: model 0 "strong" costs 1.0 a call, model 1 "cheap" 0.1. The fake policy at τ' sends the
# first round((1 − τ')·N) queries to cheap and the rest to strong, with μ = τ'·(query index):
# on N = 4 rows τ'=0.75 routes [1, 0, 0, 0] (mean μ 0.75·1.5 = 1.125), τ'=0.5 [1, 1, 0, 0]
# (mean μ 0.75); on N = 8, τ'=0.75 sends 2 rows to cheap and τ'=0.5 sends 4.

ROUTED_TAUS: list[list[float]] = []  # the τ' of each `_fake_routes` call, in call order


def _fake_routes(router, ds, taus):
    taus = np.asarray(taus, np.float64)
    ROUTED_TAUS.append(taus.tolist())
    n = ds.n_queries
    n_cheap = np.rint((1.0 - taus) * n).astype(int)
    model = (np.arange(n)[None, :] < n_cheap[:, None]).astype(np.int32)
    mu = taus[:, None] * np.arange(n)[None, :]
    return Decisions(model=model, mu=mu, p_hat=None, c_hat=None, lam=None)


@pytest.fixture
def fake_routes(monkeypatch):
    ROUTED_TAUS.clear()
    monkeypatch.setattr(routing, "routes", _fake_routes)
    return ROUTED_TAUS


def _two_models(split: str, strong: list[int], cheap: list[int]) -> RoutingDataset:
    """A split whose strong (model 0, 1.0 a call) and cheap (model 1, 0.1) scores are given."""
    n = len(strong)
    return RoutingDataset(
        name=f"toy:{split}", models=("strong", "cheap"),
        scores=np.array([strong, cheap], np.float32).T,
        costs=np.tile(np.array([[1.0, 0.1]], np.float32), (n, 1)),
        query_ids=np.array([f"{split}{i}" for i in range(n)]), tasks=np.array([""] * n),
        features=np.zeros((n, 1), np.float32))


VAL = _two_models("val", [1, 1, 1, 0], [1, 0, 0, 1])
CALIB = _two_models("calib", [1] * 8, [0] * 8)  # strong always right, cheap never
TEST = _two_models("test", [1, 1, 0, 1], [0, 1, 1, 0])
# the operating table `measure_points` builds on VAL (worked out in its test), in testing order
TABLE = {"tau": [None, 0.75, None, 0.5], "model": [0, -1, 1, -1]}


def _router() -> routing.RunRouter:
    """Lanes over [0.5, 0.75]: `certify.n_points` = 2 targets are τ' = 0.75 and 0.5."""
    return routing.RunRouter(spec=None, params={}, lane_taus=np.array([0.5, 0.6, 0.75]),
                             lane_lams=np.zeros(3))


def _routing_config(**certify) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "certify": {"n_points": 2, "delta": 0.15, "method": "clopper_pearson",
                    "fallback": "refuse", "tolerance": 0.0, "window": 0, **certify},
        "operating": {"fixed_models": True, "margin_z": 1.0, "credit_z": 2.0}})


def test_point_routes_sends_fixed_points_to_their_model_and_policy_points_through_routes(
        fake_routes):
    table = {"tau": [0.5, None, 0.75, None], "model": [-1, 0, -1, 1]}
    choices, mean_mu = routing.point_routes(_router(), VAL, table)
    np.testing.assert_array_equal(choices, [[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0],
                                            [1, 1, 1, 1]])
    np.testing.assert_allclose(mean_mu, [0.75, np.nan, 1.125, np.nan])  # NaN: a fixed model
    assert fake_routes == [[0.5, 0.75]]  # one call, with the policy points' τ' only
    fake_routes.clear()
    choices, mean_mu = routing.point_routes(_router(), VAL, {"tau": [None], "model": [1]})
    np.testing.assert_array_equal(choices, [[1, 1, 1, 1]])
    assert np.isnan(mean_mu).all() and fake_routes == []  # no policy point: nothing routed


def test_measure_points_builds_the_table_from_the_lanes_targets_and_the_fixed_models(
        fake_routes):
    # candidates: τ' = 0.75, 0.5 (operating_taus: from the lanes' top down), then models 0, 1.
    # On VAL they route [1,0,0,0], [1,1,0,0], [0,0,0,0], [1,1,1,1]: accuracy 3/4, 2/4, 3/4, 2/4;
    # cost (0.1 + 3)/4 = 0.775, (0.2 + 2)/4 = 0.55, 1.0, 0.1. The isotonic pass changes nothing
    # (0.5 -> 0.5, 0.75 -> 0.75); τ'=0.75 ties the best fixed model 0 with the same per-query
    # scores, so the paired standard error is 0 and its credit stays 0.75. Testing order: by
    # accuracy, fixed model first on ties, then cost: model 0, τ'=0.75, model 1, τ'=0.5.
    table = routing.measure_points(_routing_config(), _router(), VAL)
    assert table == {"tau": [None, pytest.approx(0.75), None, pytest.approx(0.5)],
                     "model": [0, -1, 1, -1], "accuracy": [0.75, 0.75, 0.5, 0.5],
                     "raw_accuracy": [0.75, 0.75, 0.5, 0.5],
                     "cost": pytest.approx([1.0, 0.775, 0.1, 0.55]), "n_heldout": 4,
                     "margin_z": 1.0}
    assert fake_routes == [pytest.approx([0.75, 0.5])]
    config = _routing_config()
    config.operating.fixed_models = False  # the policy targets alone
    table = routing.measure_points(config, _router(), VAL)
    assert table["model"] == [-1, -1] and table["accuracy"] == [0.75, 0.5]
    assert table["cost"] == pytest.approx([0.775, 0.55])


# The certificate of TABLE on CALIB (8 rows, Clopper-Pearson, δ = 0.15): the points route
# [0]*8, 2 cheap + 6 strong, [1]*8, 4 + 4: accuracy 1, 0.75, 0, 0.5, cost 1, 0.775, 0.1, 0.55.
# p-value of H0 acc < τ with k of 8 right: P(Bin(8, τ) >= k).
#   τ=0.5: point 0 0.5^8 = 0.0039 ok; point 1 (28 + 8 + 1)/256 = 0.1445 ok; point 2 (k = 0) 1:
#          prefix 2, the cheaper of points 0 and 1 is point 1.
#   τ=0.7: point 0 0.7^8 = 0.0576 ok; point 1 28·0.7^6·0.3² + 8·0.7^7·0.3 + 0.7^8 = 0.5518
#          fails: prefix 1, point 0.
#   τ=0.9: point 0 0.9^8 = 0.4305 fails: nothing certified (refused: route_to −1).
CERT_TAUS = np.array([0.5, 0.7, 0.9])


def test_certify_table_certifies_the_points_on_calib_once_per_window(fake_routes):
    population, window = routing.certify_table(_routing_config(tolerance=0.02), _router(),
                                               CALIB, TABLE, CERT_TAUS, (0, 8))
    assert population.accuracy == (1.0, 0.75, 0.0, 0.5)
    assert population.cost == pytest.approx((1.0, 0.775, 0.1, 0.55))
    np.testing.assert_allclose(np.asarray(population.pvalues)[:, 0], [0.5**8, 0.7**8, 0.9**8])
    np.testing.assert_allclose(np.asarray(population.pvalues)[:2, 1], [37 / 256, 0.55177381])
    assert population.n_certified == (2, 1, 0)
    assert population.chosen == (1, 0, -1) and population.route_to == (1, 0, -1)
    assert population.feasible == (True, True, False)
    assert (population.delta, population.method, population.fallback) == (
        0.15, "clopper_pearson", "refuse")
    # window 0 is the population promise: no tolerance, whatever certify.tolerance says
    assert (population.window, population.tolerance) == (0, 0.0)
    assert (window.window, window.tolerance) == (8, 0.02)
    assert window.accuracy == population.accuracy and window.taus == (0.5, 0.7, 0.9)
    assert fake_routes == [[0.75, 0.5]]  # routed once, certified once per window


class _Duals(NamedTuple):
    lam_avg: np.ndarray


class _State(NamedTuple):
    """The fields of an [S]-run `train.TrainState` that `RunRouter.of_run` reads (host arrays)."""

    params: dict
    lane_taus: np.ndarray
    duals: _Duals


def test_certify_points_certifies_with_the_router_of_one_run(monkeypatch):
    seen = []
    monkeypatch.setattr(routing, "routes", lambda router, ds, taus: (
        seen.append(router), _fake_routes(router, ds, taus))[1])
    setup = types.SimpleNamespace(static=types.SimpleNamespace(spec="the spec"),
                                  task_names=("code", "math"))
    state = _State(params={"w": np.array([[1.0], [2.0]])},
                   lane_taus=np.array([[0.1, 0.2], [0.5, 0.75]]),
                   duals=_Duals(lam_avg=np.array([[1.0, 2.0], [3.0, 4.0]])))
    (got,) = routing.certify_points(_routing_config(), setup, state, 1, CALIB, TABLE,
                                    CERT_TAUS, (0,))
    assert got.chosen == (1, 0, -1)  # the certificate worked out above
    router = seen[0]
    assert router.spec == "the spec" and router.task_names == ("code", "math")
    np.testing.assert_array_equal(router.params["w"], [2.0])  # run 1's slice of every leaf
    np.testing.assert_array_equal(router.lane_taus, [0.5, 0.75])
    np.testing.assert_array_equal(router.lane_lams, [3.0, 4.0])  # the averaged duals


def test_router_block_reads_each_taus_point_and_none_where_refused():
    points = [operating.OperatingPoint(0.5, 0.75, 1, True, "cheap enough"), None,
              operating.OperatingPoint(0.9, np.nan, 0, False, "best effort", 0)]
    block = routing.router_block(points, np.array([0.75, 0.5]), np.array([1.0, 0.775]),
                                 np.array([np.nan, 1.125]))
    assert block["accuracy"] == [0.5, None, 0.75] and block["cost"] == [0.775, None, 1.0]
    assert block["mean_mu"][:2] == [1.125, None] and math.isnan(block["mean_mu"][2])
    assert block["feasible"] == [True, False, False]
    assert block["operating_point"] == [1, None, 0]
    assert block["reason"] == ["cheap enough", None, "best effort"]
    assert all(type(v) is float for v in block["accuracy"] + block["cost"] if v is not None)
    assert json.loads(json.dumps(block["operating_point"])) == [1, None, 0]


def test_router_blocks_scores_the_uncertified_and_certified_rules_on_test(fake_routes):
    # VAL gives TABLE (accuracy 0.75, 0.75, 0.5, 0.5; cost 1, 0.775, 0.1, 0.55; n = 4).
    # Uncertified (margin_z 1): τ=0.5 needs 0.5 + sqrt(0.25/4) = 0.75: points 0 and 1, the
    # cheaper is point 1; τ=0.7 needs 0.7 + sqrt(0.21/4) = 0.929 and τ=0.9 1.05: refused.
    # Certified: points 1, 0 and refused (the certificate above).
    # On TEST the points route [0,0,0,0], [1,0,0,0], [1,1,1,1], [1,1,0,0]: accuracy 0.75, 0.5,
    # 0.5, 0.5; cost 1, 0.775, 0.1, 0.55; mean μ NaN, 1.125, NaN, 0.75.
    splits = {"val": VAL, "calib": CALIB, "test": TEST}
    choices: dict[str, np.ndarray] = {}
    blocks, out = routing.router_blocks(_routing_config(), _router(), splits, CERT_TAUS,
                                        choices_out=choices)
    proteus, certified = blocks["proteus"], blocks["proteus_certified"]
    assert proteus["operating_point"] == [1, None, None]
    assert proteus["accuracy"] == [0.5, None, None]
    assert proteus["cost"] == [pytest.approx(0.775), None, None]
    assert proteus["mean_mu"] == [1.125, None, None]
    assert proteus["feasible"] == [True, False, False]
    assert proteus["reason"][0].startswith("uncertified: policy at τ'=0.7500")
    assert certified["operating_point"] == [1, 0, None]
    assert certified["accuracy"] == [0.5, 0.75, None]
    assert certified["cost"] == [pytest.approx(0.775), 1.0, None]
    assert certified["feasible"] == [True, True, False]
    assert certified["mean_mu"][0] == 1.125 and math.isnan(certified["mean_mu"][1])
    np.testing.assert_array_equal(choices["proteus"], [[1, 0, 0, 0], [-1] * 4, [-1] * 4])
    np.testing.assert_array_equal(choices["proteus_certified"],
                                  [[1, 0, 0, 0], [0, 0, 0, 0], [-1] * 4])
    assert set(out) == {"operating", "certification"}  # window 0: one certificate
    assert out["operating"]["model"] == TABLE["model"]
    assert out["certification"]["chosen"] == (1, 0, -1)  # to_dict keeps tuples
    # certified at τ'=0.6 only: 0.6^8 = 0.017 certifies point 0, point 1's
    # P(Bin(8, 0.6) >= 6) = 0.315 does not; τ=0.5 is served by the grid's 0.6 (point 0) and
    # τ >= 0.7 is above the grid (refused)
    blocks, out = routing.router_blocks(_routing_config(), _router(), splits, CERT_TAUS,
                                        cert_taus=np.array([0.6]))
    assert out["certification"]["taus"] == (0.6,) and out["certification"]["chosen"] == (0,)
    assert blocks["proteus_certified"]["operating_point"] == [0, None, None]
    assert blocks["proteus"]["operating_point"] == [1, None, None]  # uncertified: unchanged


def test_router_blocks_scores_a_given_table_instead_of_measuring_one(fake_routes):
    """An artifact's own table (here: TABLE without its point 1) is certified and scored as
    given: τ=0.5 uncertified needs 0.75, now only point 0 (the old point 0, cost 1)."""
    splits = {"val": VAL, "calib": CALIB, "test": TEST}
    keep = [0, 2, 3]
    measured = routing.measure_points(_routing_config(), _router(), VAL)
    given = {k: ([v[j] for j in keep] if isinstance(v, list) else v) for k, v in measured.items()}
    blocks, out = routing.router_blocks(_routing_config(), _router(), splits, CERT_TAUS,
                                        table=given)
    assert out["operating"] is given
    assert blocks["proteus"]["operating_point"] == [0, None, None]
    assert blocks["proteus"]["accuracy"] == [0.75, None, None]


def test_router_blocks_scores_certified_at_the_test_size_and_serves_the_window(fake_routes):
    config = _routing_config(window=3, tolerance=0.05)
    _, out = routing.router_blocks(config, _router(), {"val": VAL, "calib": CALIB, "test": TEST},
                                   CERT_TAUS)
    # the evaluation's window is the test split's 4 rows; the export serves certify.window = 3
    assert (out["evaluation_certification"]["window"], out["certification"]["window"]) == (4, 3)
    assert out["certification"]["tolerance"] == 0.05
    assert out["certification"]["taus"] == (0.5, 0.7, 0.9)


# ----------------------------------------------------------------- training rows and inputs


def _rows(split: str, tasks: list[str]) -> RoutingDataset:
    """len(tasks) rows of 2 models whose numbers all differ, ids "<split><i>"."""
    n = len(tasks)
    i = np.arange(n, dtype=np.float32) + (10.0 if split == "policy" else 0.0)
    return RoutingDataset(
        name=f"toy:{split}", models=("a", "b"),
        scores=np.stack([i % 2, 1 - i % 2], axis=1), costs=np.stack([i + 1, 2 * i + 1], axis=1),
        query_ids=np.array([f"{split}{k}" for k in range(n)]), tasks=np.array(tasks),
        features=np.stack([i, -i], axis=1))


def _splits(pred_tasks=("math", "code"), policy_tasks=("math", "")) -> dict:
    return {"pred": _rows("pred", list(pred_tasks)), "policy": _rows("policy", list(policy_tasks)),
            "val": _rows("val", ["code"]), "calib": _rows("calib", ["math", "math"])}


def _train_config(folds: int, task_prior: bool = False) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"train": {"folds": folds}, "data": {"split_salt": "salt"},
                                      "model": {"task_prior": task_prior}})


def test_training_data_one_predictor_trains_on_each_split():
    splits = _splits()
    data = setup_lib.training_data(_train_config(1), splits)
    assert set(data) == {"pred", "val", "policy"}
    for name, batch in data.items():
        np.testing.assert_array_equal(batch.features, splits[name].features, err_msg=name)
        np.testing.assert_array_equal(batch.scores, splits[name].scores, err_msg=name)
        np.testing.assert_array_equal(batch.costs, splits[name].costs, err_msg=name)
        assert batch.fold is None and batch.task is None and batch.features.dtype == jnp.float32


def test_training_data_cross_fitting_trains_every_phase_on_the_pool_with_its_folds():
    splits = _splits()
    data = setup_lib.training_data(_train_config(2, task_prior=True), splits)
    assert data["pred"] is data["val"] is data["policy"]
    pool = data["pred"]
    # the pool is pred's rows then policy's: features (0, 0), (1, -1), (10, -10), (11, -11)
    np.testing.assert_array_equal(pool.features, [[0, 0], [1, -1], [10, -10], [11, -11]])
    np.testing.assert_array_equal(pool.costs[:, 1], [1, 3, 21, 23])
    # vocabulary ("code", "math") sorted: math 1, code 0, "" (unknown) -1
    np.testing.assert_array_equal(pool.task, [1, 0, 1, -1])
    _, fold = setup_lib.training_pool(splits, 2, "salt")
    np.testing.assert_array_equal(pool.fold, fold)
    assert pool.fold.dtype == jnp.int32 and set(np.asarray(pool.fold).tolist()) <= {0, 1}
    assert setup_lib.training_data(_train_config(2), splits)["pred"].task is None  # no prior
    with pytest.raises(config_lib.ConfigError,
                       match=r"needs a task column with >= 2 tasks in the training pool; "
                             r"toy:pred has 1: set model.task_prior=False"):
        setup_lib.training_data(_train_config(2, task_prior=True),
                                _splits(("math", "math"), ("", "math")))


def test_heldout_rows_carry_val_calib_and_the_pools_ids_and_folds():
    splits = _splits()
    rows = bundle.heldout_rows(types.SimpleNamespace(config=_train_config(1), splits=splits))
    assert rows.val is splits["val"] and rows.calib is splits["calib"]
    np.testing.assert_array_equal(rows.pool_ids, ["pred0", "pred1", "policy0", "policy1"])
    assert rows.pool_ids.dtype.kind == "U"
    np.testing.assert_array_equal(rows.pool_folds, [0, 0, 0, 0])  # one predictor: one fold
    rows = bundle.heldout_rows(types.SimpleNamespace(config=_train_config(2), splits=splits))
    np.testing.assert_array_equal(rows.pool_folds, setup_lib.training_pool(splits, 2, "salt")[1])


# A router whose predictor ignores the features (zero kernels: z = 0, so each head outputs its
# bias), with a task prior of 2 tasks: p_hat = sigmoid(perf bias + task_prior[task]) and
# c_hat = exp(cost bias). Run 1 (the one read): perf bias 0, task prior of "math" (task 1)
# (log 3, −log 3), "code" and unknown 0, cost bias log(1e-3), log(2e-3): a math query gets
# p_hat (0.75, 0.25), any other (0.5, 0.5); every query c_hat (1e-3, 2e-3). Run 0 is different.
SPEC_2X2 = networks.RouterSpec(n_models=2, feature_dim=2, hidden=3, policy_hidden=4,
                               use_tau_input=True, use_lambda_input=True, static_cost=False,
                               folds=1, groups=0, tasks=2)


def _two_run_params() -> dict:
    dense = lambda i, o, bias: {"kernel": np.zeros((2, i, o), np.float32),
                                "bias": np.asarray(bias, np.float32)}
    log3 = math.log(3.0)
    return {
        "predictor": {"params": {
            "trunk_0": dense(2, 3, np.zeros((2, 3))), "trunk_1": dense(3, 3, np.zeros((2, 3))),
            "perf_head": dense(3, 2, [[5.0, 5.0], [0.0, 0.0]]),
            "cost_head": dense(3, 2, [[0.0, 0.0], np.log([1e-3, 2e-3])])}},
        "stats": {"mean": np.zeros((2, 2), np.float32), "scale": np.ones((2, 2), np.float32)},
        "calib": {"scale": np.ones((2, 2), np.float32), "shift": np.zeros((2, 2), np.float32),
                  "prior_weight": np.zeros((2, 2), np.float32),
                  "prior": np.zeros((2, 1, 2), np.float32),
                  "task_weight": np.ones((2, 2), np.float32),
                  "task_prior": np.array([np.zeros((3, 2)),
                                          [[0, 0], [log3, -log3], [0, 0]]], np.float32)}}


class _ParamsState(NamedTuple):
    params: dict  # [S]-run parameters (what `run_slice(state, run).params` reads)


def _predictor_setup() -> types.SimpleNamespace:
    return types.SimpleNamespace(static=types.SimpleNamespace(spec=SPEC_2X2),
                                 task_names=("code", "math"))


def test_predictor_inputs_are_the_runs_predictions_on_the_split():
    ds = _rows("test", ["code", "math"])  # 2 rows, as policy's below: one compile of each op
    inputs = baselines.predictor_inputs(_predictor_setup(), _ParamsState(_two_run_params()), 1,
                                        ds)
    np.testing.assert_allclose(inputs.p_hat, [[0.5, 0.5], [0.75, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(inputs.c_hat, [[1e-3, 2e-3]] * 2, rtol=1e-6)
    assert inputs.p_hat.dtype == inputs.c_hat.dtype == np.float64
    assert inputs.scores is ds.scores and inputs.features is ds.features
    np.testing.assert_array_equal(inputs.tasks, ["code", "math"])


def test_training_inputs_one_predictor_predicts_the_policy_split():
    config, splits = _train_config(1), _splits()
    inputs = baselines.training_inputs(config, _predictor_setup(),
                                       _ParamsState(_two_run_params()), 1, splits)
    assert inputs.scores is splits["policy"].scores  # policy's tasks: "math", ""
    np.testing.assert_allclose(inputs.p_hat, [[0.75, 0.25], [0.5, 0.5]], rtol=1e-6)


def test_training_inputs_cross_fitting_predicts_the_pool_out_of_fold(monkeypatch):
    seen = {}

    def fake_calibrate_and_predict(spec, params, features, scores, fold, tasks):
        seen.update(spec=spec, params=params, features=features, scores=scores, fold=fold,
                    tasks=tasks)
        first = np.asarray(features)[:, 0]
        p_hat = np.stack([first / 20, np.full(first.shape, 0.5)], axis=1)
        return {}, (None, p_hat, 2 * p_hat)

    monkeypatch.setattr(crossfit, "calibrate_and_predict", fake_calibrate_and_predict)
    splits = _splits()
    inputs = baselines.training_inputs(_train_config(2), _predictor_setup(),
                                       _ParamsState(_two_run_params()), 1, splits)
    assert seen["spec"] is SPEC_2X2
    np.testing.assert_array_equal(seen["params"]["calib"]["shift"], [0.0, 0.0])  # run 1's
    np.testing.assert_array_equal(seen["params"]["predictor"]["params"]["perf_head"]["bias"],
                                  [0.0, 0.0])
    np.testing.assert_array_equal(seen["fold"], setup_lib.training_pool(splits, 2, "salt")[1])
    np.testing.assert_array_equal(seen["tasks"], [1, 0, 1, -1])  # math, code, math, unknown
    # the pool (pred then policy) with the fake's out-of-fold predictions: feature 0 / 20
    np.testing.assert_array_equal(inputs.features[:, 0], [0, 1, 10, 11])
    np.testing.assert_allclose(inputs.p_hat, [[0, 0.5], [0.05, 0.5], [0.5, 0.5], [0.55, 0.5]],
                               rtol=1e-6)
    np.testing.assert_allclose(inputs.c_hat, 2 * inputs.p_hat)
    np.testing.assert_array_equal(inputs.tasks, ["math", "code", "math", ""])
