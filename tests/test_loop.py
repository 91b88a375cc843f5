"""Tests for proteus.training.loop: compile-once chunks, the host loop's schedule, grid routing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.pipeline import config as config_lib
from proteus.pipeline import setup as setup_lib
from proteus.pipeline.fit import run_slice
from proteus.training import loop, networks, predictor_phase, train
from tests import core_helpers


@pytest.fixture(scope="module")
def tiny():
    """(config, splits, setup, fresh [1]-run state, phase data) on the shared separable data."""
    config = core_helpers.tiny_config()
    splits = core_helpers.tiny_splits(config)
    setup = core_helpers.tiny_setup(config, splits)
    state = setup_lib.initial_state(setup)
    data = {name: train.Batch.from_dataset(splits[name]) for name in ("pred", "policy", "val")}
    return config, splits, setup, state, data


def test_phase_data_needs_features(tiny):
    _, splits, _, _, _ = tiny
    bare = splits["val"].subset(np.arange(3))
    bare = type(bare)(name=bare.name, models=bare.models, scores=bare.scores, costs=bare.costs,
                      query_ids=bare.query_ids, tasks=bare.tasks)
    with pytest.raises(ValueError, match="no features"):
        train.Batch.from_dataset(bare)


def test_chunks_compile_once(tiny):
    """3 chunks of each phase trace the one-run chunk once; a new data shape would retrace."""
    config, _, setup, state, data = tiny
    state = jax.tree.map(jnp.copy, state)  # fresh buffers: the chunk donates its state
    for step_fn, phase in ((predictor_phase.predictor_step, "pred"), (train.policy_step, "policy")):
        # chex identifies a function by its source and definition stack, which both phases'
        # chunks share (one `make_chunk`), so the count restarts per phase.
        chex.clear_trace_counter()
        chunk = loop.compile_chunk(setup.static, step_fn, config.train.chunk_size,
                                   wrap=chex.assert_max_traces(n=1))
        for _ in range(3):
            state, metrics = chunk(state, setup.run_keys, data[phase], setup.hparams)
        jax.block_until_ready(state)
        half = jax.tree.map(lambda x: x[: x.shape[0] // 2], data[phase])
        with pytest.raises(AssertionError, match="traced > 1 times"):
            chunk(state, setup.run_keys, half, setup.hparams)
    assert int(state.step[0]) == 6 * config.train.chunk_size
    chex.assert_shape(metrics["lam"], (1, state.lane_taus.shape[1]))  # [S, K] chunk means


def test_runs_at_once_and_widest_activation(tiny):
    _, _, setup, _, _ = tiny  # B = 32, hidden 16, policy_hidden 16, one predictor
    assert loop.widest_activation(setup.static, "policy", n_lanes=4) == 4 * 4 * 32 * 16
    assert loop.widest_activation(setup.static, "predictor") == 4 * 1 * 32 * 16
    big = loop.CPU_VMAP_MAX_BYTES
    assert loop.runs_at_once(3, sharded=False, activation_bytes=big) == 3  # as configured
    assert loop.runs_at_once(0, sharded=True, activation_bytes=big) is None  # a mesh: vmapped
    assert jax.default_backend() == "cpu"
    assert loop.runs_at_once(0, sharded=False, activation_bytes=big - 1) is None
    assert loop.runs_at_once(0, sharded=False, activation_bytes=big) == 1  # in sequence


def test_runs_mapped_in_groups_match_runs_vmapped(tiny):
    """3 runs with their own learning rates, one chunk of each phase: vmapping all 3 and mapping
    groups of 2 (a group, then the remainder; the policy phase maps each run's own predictor
    outputs with it) give each run the same state, to float rounding."""
    config, splits, _, _, data = tiny
    hp = config_lib.hparams_from_config(config, 3)
    hp = hp._replace(pred_lr=hp.pred_lr * jnp.array([0.5, 1.0, 2.0]),
                     policy_lr=hp.policy_lr * jnp.array([2.0, 1.0, 0.5]))
    setup = core_helpers.tiny_setup(config, splits, hparams=hp)
    state = setup_lib.initial_state(setup)
    finals = []
    for run_batch in (None, 2):
        chunk = loop.compile_chunk(setup.static, predictor_phase.predictor_step,
                                   config.train.chunk_size, run_batch=run_batch)
        s, _ = chunk(jax.tree.map(jnp.copy, state), setup.run_keys, data["pred"], setup.hparams)
        s, policy_data = loop.policy_phase_data(setup.static, s, data["policy"])
        assert policy_data.run_axes().p_hat == 0  # per-run data goes through the mapped path
        chunk = loop.compile_chunk(setup.static, train.policy_step, config.train.chunk_size,
                                   data_axes=policy_data.run_axes(), run_batch=run_batch)
        finals.append(chunk(jax.tree.map(jnp.copy, s), setup.run_keys, policy_data,
                            setup.hparams))
    (vmapped, m_vmapped), (mapped, m_mapped) = finals
    chex.assert_trees_all_close(mapped, vmapped, atol=1e-5)
    chex.assert_trees_all_close(m_mapped, m_vmapped, atol=1e-5)
    kernel = jax.tree.leaves(vmapped.params["policy"])[-1]  # the runs did learn differently
    assert not np.allclose(kernel[0], kernel[2])


def test_fit_schedule_and_early_stop(tiny, monkeypatch):
    """With pred_lr = 0 the validation loss never improves after the first evaluation.

    Patience 1: evaluation 1 (step 10) improves on inf, evaluation 2 (step 20) does not, so
    bad_evals = 1 >= 1 stops the predictor phase at step 20, before its save. The frozen state is
    saved as "policy" at step 20 and the policy phase runs policy_steps = 30 more: 30, 40, 50.
    """
    config, _, setup, state, data = tiny
    events = []
    callbacks = loop.Callbacks(
        on_metrics=lambda phase, step, m: events.append(("metrics", phase, step, sorted(m))),
        save=lambda phase, st, end: events.append(("save", phase, int(st.step[0]), end)))
    hp = setup.hparams._replace(pred_lr=jnp.zeros_like(setup.hparams.pred_lr))
    loop_cfg = setup.loop._replace(pred_patience=1, pred_max_steps=50)
    final = loop.fit(setup.static, loop_cfg, jax.tree.map(jnp.copy, state), setup.run_keys, hp,
                     data, callbacks=callbacks, progress=False)
    pred_keys = ["bce", "cost_mse", "pred_loss", "val_loss"]
    pol_keys = ["acc_det", "cost_det", "lam", "lam_avg", "mu_mean", "policy_loss", "reward"]
    assert events == [
        ("metrics", "predictor", 10, pred_keys), ("save", "predictor", 10, False),
        ("metrics", "predictor", 20, pred_keys),
        ("save", "policy", 20, True),  # the frozen predictor: a phase end
        ("metrics", "policy", 30, pol_keys), ("save", "policy", 30, False),
        ("metrics", "policy", 40, pol_keys), ("save", "policy", 40, False),
        ("metrics", "policy", 50, pol_keys), ("save", "policy", 50, True),
    ]
    assert int(final.step[0]) == 50 and int(final.pred_steps[0]) == 20
    assert int(final.bad_evals[0]) == 1
    # pred_lr = 0: the frozen (best) predictor is the initial one.
    assert not core_helpers.tree_diff(final.params["predictor"], state.params["predictor"])

    # Resumed when finished (step 50 = pred_steps 20 + 30): returned as restored, with no step,
    # save or recomputed phase input (its saved calibration is the one it trained with).
    events.clear()
    monkeypatch.setattr(loop, "policy_phase_data", lambda *a: pytest.fail("recomputed"))
    again = loop.fit(setup.static, loop_cfg, final, setup.run_keys, hp, data, phase="policy",
                     callbacks=callbacks, progress=False)
    assert again is final and events == []


def test_route_grid_matches_route(tiny):
    _, splits, setup, state, _ = tiny
    one = run_slice(state, 0)
    lane_lams = jnp.array([0.05, 0.5, 2.0, 8.0])
    features = jnp.asarray(splits["test"].features[:50])
    taus = jnp.array([0.55, 0.8, 0.97])
    grid = loop.route_grid(setup.static.spec, one.params, one.lane_taus, lane_lams, features,
                           taus)
    chex.assert_shape([grid.model, grid.mu], (3, 50))
    route = jax.jit(networks.route, static_argnums=0)
    for i, tau in enumerate(taus):
        lam = networks.lambda_of_tau(one.lane_taus, lane_lams, tau)
        ref = route(setup.static.spec, one.params, features, jnp.full((50,), tau),
                    jnp.full((50,), lam))
        np.testing.assert_array_equal(grid.model[i], ref.model)
        np.testing.assert_allclose(grid.mu[i], ref.mu, rtol=1e-5)
        np.testing.assert_allclose(grid.p_hat, ref.p_hat, rtol=1e-6)
        np.testing.assert_allclose(grid.lam[i], lam, rtol=1e-6)


class _Recorder(loop.Callback):
    """Appends (its name, "metrics" or "save", the call's arguments) to a shared event list."""

    def __init__(self, name: str, events: list):
        self.name, self.events = name, events

    def on_metrics(self, phase, step, metrics):
        self.events.append((self.name, "metrics", phase, step, metrics["loss"]))

    def save(self, phase, state, phase_end):
        self.events.append((self.name, "save", phase, state, phase_end))


def test_as_callbacks_keeps_callbacks_and_wraps_plain_functions_in_order():
    events = []
    rec = _Recorder("rec", events)
    fn = lambda phase, step, metrics: events.append(("fn", phase, step, metrics["loss"]))
    hooks = loop.as_callbacks([rec, fn])
    assert len(hooks) == 2 and hooks[0] is rec  # a Callback passes through unchanged
    assert isinstance(hooks[1], loop.Callback)
    hooks[1].on_metrics("policy", 30, {"loss": 0.5})
    assert events == [("fn", "policy", 30, 0.5)]
    # the wrapper keeps the base class's no-ops for everything else
    assert hooks[1].restore("state", "predictor") == ("state", "predictor")
    assert hooks[1].save("policy", "state", True) is None and events == [("fn", "policy", 30, 0.5)]
    assert loop.as_callbacks([]) == ()


def test_combine_calls_every_hook_in_order():
    events = []
    combined = loop.combine([_Recorder("a", events), _Recorder("b", events)])
    assert isinstance(combined, loop.Callbacks)
    combined.on_metrics("predictor", 10, {"loss": 1.25})
    combined.save("policy", "s", True)
    assert events == [("a", "metrics", "predictor", 10, 1.25),
                      ("b", "metrics", "predictor", 10, 1.25),
                      ("a", "save", "policy", "s", True), ("b", "save", "policy", "s", True)]
    nothing = loop.combine([])
    nothing.on_metrics("policy", 1, {})
    nothing.save("policy", "s", False)  # no hooks: both are no-ops
