"""Hand-checked unit tests of small proteus.pipeline helpers that have no natural test module."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import common
from proteus import operating
from proteus.pipeline import baselines, fit, routing
from proteus.pipeline import config as config_lib
from proteus.training import duals, loop

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
