"""Tests for proteus.training.train: hand-computed lane grids and updates; vmapped lanes vs one by
one."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from proteus.training import duals, loop, losses, networks, predictor_phase, train
from tests import core_helpers


@pytest.fixture(scope="module")
def tiny():
    """(config, splits, setup, one-run state) on the shared separable data, committed."""
    config = core_helpers.tiny_config()
    splits = core_helpers.tiny_splits(config)
    setup = core_helpers.tiny_setup(config, splits)
    params = core_helpers.init_params(setup.static.spec, 0, setup.init.stats)
    state = train.init_state(setup.static, params, setup.init.lane_taus, jnp.asarray(1.0))
    return config, splits, setup, core_helpers.on_device(state)


def _batch(ds, n: int = 32) -> train.Batch:
    return train.Batch(jnp.asarray(ds.features[:n]), jnp.asarray(ds.scores[:n]),
                       jnp.asarray(ds.costs[:n]))


def _hp(**kw) -> train.HParams:
    values = dict(pred_lr=1e-2, policy_lr=1e-3, ent_coef=1e-3, dual_lr=0.5, margin=0.0)
    values.update(kw)
    return train.HParams(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


# ----------------------------------------------------------------------------- lane grid


def test_lane_grid_by_hand():
    # model 0 is cheapest (cost 1) with accuracy 2/4 = 0.5; the oracle is right on 3 of 4
    # queries whatever the costs: accuracy 0.75.
    scores = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], np.float32)
    costs = np.array([[1, 5]] * 4, np.float32)
    # linear: linspace(0.5, 0.75, 3) = 0.5, 0.625, 0.75.
    np.testing.assert_allclose(train.lane_grid(scores, costs, 3, spacing="linear"),
                               [0.5, 0.625, 0.75], rtol=1e-6)
    # log1m: 1 - τ geometric from 0.5 to 0.25: 0.5, sqrt(0.125) = 0.353553, 0.25 -> τ = 0.5,
    # 0.646447, 0.75.
    np.testing.assert_allclose(train.lane_grid(scores, costs, 3, spacing="log1m"),
                               [0.5, 1 - math.sqrt(0.125), 0.75], rtol=1e-6)
    # overrides: lo = 0.6, hi = 0.9 with log1m: 1 - τ from 0.4 to 0.1, middle sqrt(0.04) = 0.2.
    np.testing.assert_allclose(train.lane_grid(scores, costs, 3, spacing="log1m", lo=0.6, hi=0.9),
                               [0.6, 0.8, 0.9], rtol=1e-6)
    assert train.lane_grid(scores, costs, 5, spacing="log1m").dtype == jnp.float32


def test_lane_grid_clamps_and_rejects():
    # the oracle here is always right (accuracy 1.0), so hi is clamped to 0.99; cheapest model
    # (index 1, cost 1) accuracy 0.5: linspace(0.5, 0.99, 2) = 0.5, 0.99.
    scores = np.array([[1, 1], [1, 0]], np.float32)
    costs = np.array([[3, 1], [3, 1]], np.float32)
    np.testing.assert_allclose(train.lane_grid(scores, costs, 2, spacing="linear"), [0.5, 0.99])
    with pytest.raises(ValueError, match="empty"):
        train.lane_grid(scores, costs, 2, spacing="linear", lo=0.995)
    with pytest.raises(ValueError, match="spacing"):
        train.lane_grid(scores, costs, 2, spacing="cubic")


# ----------------------------------------------------------------------------- state, predictor


def test_init_state(tiny):
    _, _, setup, state = tiny
    k = setup.init.lane_taus.shape[0]
    chex.assert_shape([state.duals.lam, state.duals.acc_avg, state.lane_taus], (k,))
    np.testing.assert_array_equal(state.lane_taus, setup.init.lane_taus)
    np.testing.assert_array_equal(state.duals.lam, np.ones(k))
    np.testing.assert_array_equal(state.duals.lam_avg, np.ones(k))
    np.testing.assert_array_equal(state.duals.acc_avg, state.lane_taus)  # started at τ
    assert int(state.step) == 0 and int(state.pred_steps) == 0 and int(state.bad_evals) == 0
    assert float(state.best_val) == math.inf
    assert not core_helpers.tree_diff(state.best_predictor, state.params["predictor"])


@functools.partial(jax.jit, static_argnums=0)
def _predictor_step_and_reference(static, state, batch, hp):
    """One `predictor_step` and, from the same state, the loss and its gradient (one compile)."""
    new, metrics = predictor_phase.predictor_step(static, state, jax.random.key(0), batch, hp)
    objective = lambda p: predictor_phase.predictor_objective(
        static, {**state.params, "predictor": p}, batch)[0]
    loss, grads = jax.value_and_grad(objective)(state.params["predictor"])
    return new, metrics, loss, grads


def test_predictor_step_is_one_clipped_adam_step(tiny):
    _, splits, setup, state = tiny
    static, hp = setup.static, _hp(pred_lr=1e-2)
    new, metrics, loss, grads = _predictor_step_and_reference(static, state,
                                                              _batch(splits["pred"]), hp)
    # First Adam step: m̂ = ĝ, v̂ = ĝ², so the direction is ĝ / (|ĝ| + 1e-8) (≈ sign ĝ), with
    # ĝ = g · min(1, grad_clip / ‖g‖); decoupled decay adds wd · p; the step is -lr times that.
    norm = float(optax.tree.norm(grads))
    scale = min(1.0, static.grad_clip / norm)
    expected = jax.tree.map(
        lambda p, g: p - 1e-2 * ((g * scale) / (jnp.abs(g * scale) + 1e-8)
                                 + static.weight_decay * p),
        state.params["predictor"], grads)
    chex.assert_trees_all_close(new.params["predictor"], expected, rtol=1e-4, atol=1e-7)
    assert int(new.step) == 1
    assert not core_helpers.tree_diff(new.params["policy"], state.params["policy"])
    assert float(metrics["pred_loss"]) == pytest.approx(float(loss), rel=1e-5)


def test_track_and_freeze_best_predictor(tiny):
    _, _, _, state = tiny
    moved = state.replace(params={**state.params, "predictor": jax.tree.map(
        lambda x: x + 1.0, state.params["predictor"])})
    # inf -> 0.5 improves: best = current, bad = 0.
    s1 = predictor_phase.track_best_predictor(moved, jnp.asarray(0.5), patience=2)
    assert float(s1.best_val) == 0.5 and int(s1.bad_evals) == 0
    assert not core_helpers.tree_diff(s1.best_predictor, moved.params["predictor"])
    # 0.7 and 0.5 do not improve on 0.5: bad 1, then 2, then stays at the patience cap 2.
    back = s1.replace(params={**s1.params, "predictor": state.params["predictor"]})
    s2 = predictor_phase.track_best_predictor(back, jnp.asarray(0.7), patience=2)
    s3 = predictor_phase.track_best_predictor(s2, jnp.asarray(0.5), patience=2)
    s4 = predictor_phase.track_best_predictor(s3, jnp.asarray(0.6), patience=2)
    assert [int(s.bad_evals) for s in (s2, s3, s4)] == [1, 2, 2]
    assert float(s4.best_val) == 0.5
    # the best kept is the moved predictor, and freezing puts it back in params.
    frozen = predictor_phase.freeze_best_predictor(s4)
    assert not core_helpers.tree_diff(frozen.params["predictor"], moved.params["predictor"])
    assert frozen.bad_evals.dtype == jnp.int32


# ----------------------------------------------------------------------------- policy phase


def test_frozen_lane_inputs_normalise_costs(tiny):
    _, splits, setup, state = tiny
    batch = _batch(splits["policy"], 8)
    inputs = train.frozen_lane_inputs(setup.static, state.params, batch)
    _, p_hat, c_hat = networks.predicted(setup.static.spec, state.params, batch.features)
    c_ref = state.params["stats"]["c_ref"]
    np.testing.assert_allclose(inputs.p_hat, p_hat, rtol=1e-6)
    np.testing.assert_allclose(inputs.c_hat_norm, c_hat / c_ref, rtol=1e-6)
    np.testing.assert_allclose(inputs.cost_norm, batch.costs / c_ref, rtol=1e-6)
    np.testing.assert_array_equal(inputs.scores, batch.scores)
    chex.assert_shape(inputs.z, (8, setup.static.spec.hidden))


@functools.partial(jax.jit, static_argnums=0)
def _one_lane_step(static, policy_params, inputs, tau, dual, key, hp, phase_step):
    """One lane of a policy step, written out by hand: sample, then that lane's dual update."""
    sample = train.sample_lane(static.spec, policy_params, inputs, tau, tau, dual.lam, key)
    new_dual = duals.update(static.duals, dual, sample["acc_det"], tau, hp.dual_lr, hp.margin,
                            phase_step)
    return sample, new_dual


def test_sample_lane_scores_the_beta_mean_policy(tiny):
    _, splits, setup, state = tiny
    spec = setup.static.spec
    inputs = train.frozen_lane_inputs(setup.static, state.params, _batch(splits["policy"]))
    dual = jax.tree.map(lambda x: x[1], state.duals)
    tau = state.lane_taus[1]
    key = core_helpers.on_device(jax.random.key(3))  # as the lanes test's keys (one compile)
    sample, _ = _one_lane_step(setup.static, state.params["policy"], inputs, tau, dual, key,
                               _hp(), jnp.asarray(0, jnp.int32))
    chex.assert_shape([sample["mu"], sample["log_prob"], sample["advantage"]], (32,))
    alpha, beta = networks.policy_beta(spec, state.params["policy"], inputs.z, tau, dual.lam)
    rows = np.arange(32)
    det = networks.routing_rule(alpha / (alpha + beta), inputs.p_hat, inputs.c_hat_norm)
    assert float(sample["acc_det"]) == pytest.approx(float(inputs.scores[rows, det].mean()))
    assert float(sample["cost_det"]) == pytest.approx(float(inputs.cost_norm[rows, det].mean()))
    choice = networks.routing_rule(sample["mu"], inputs.p_hat, inputs.c_hat_norm)
    reward = losses.lagrangian_reward(inputs.scores[rows, choice],
                                      inputs.cost_norm[rows, choice], tau, dual.lam)
    assert float(sample["reward"]) == pytest.approx(float(reward.mean()), rel=1e-5)
    np.testing.assert_allclose(sample["log_prob"], losses.beta_log_prob(sample["mu"], alpha,
                                                                        beta), rtol=1e-4)
    assert abs(float(sample["advantage"].mean())) < 1e-5


def test_lane_policy_loss_dispatch(tiny):
    _, splits, setup, state = tiny
    inputs = train.frozen_lane_inputs(setup.static, state.params, _batch(splits["policy"]))
    lam, tau = jnp.asarray(2.0), jnp.asarray(0.8)
    alpha, beta = networks.policy_beta(setup.static.spec, state.params["policy"], inputs.z, tau,
                                       lam)
    mu = jnp.linspace(0.05, 0.95, 32)
    adv = jnp.linspace(-1.0, 1.0, 32)
    old = losses.beta_log_prob(mu, alpha, beta) - 0.1  # ratios e^0.1 = 1.105: inside the clip
    sample = {"mu": mu, "log_prob": old, "advantage": adv}
    ent = losses.beta_entropy(alpha, beta)
    lp = losses.beta_log_prob(mu, alpha, beta)
    rf = train.lane_policy_loss(setup.static, state.params["policy"], inputs, tau, lam, sample,
                                jnp.asarray(0.01))
    assert float(rf) == pytest.approx(float(losses.reinforce_loss(lp, adv, ent, 0.01)), rel=1e-5)
    ppo = train.lane_policy_loss(setup.static._replace(algo="ppo"), state.params["policy"],
                                 inputs, tau, lam, sample, jnp.asarray(0.01))
    expected = losses.ppo_clip_loss(lp, old, adv, ent, 0.01, setup.static.ppo_clip)
    assert float(ppo) == pytest.approx(float(expected), rel=1e-5)


def test_vmapped_lanes_equal_lanes_one_by_one(tiny):
    """A policy chunk's per-lane metrics and duals equal running each lane by hand.

    The policy learning rate is 0, so the shared policy stays fixed and each lane depends only
    on its own (τ, λ) and keys: lane k of step t samples with split(split(k_step)[1], K)[k],
    where k_step = split(fold_in(run_key, t))[1] (proteus.training.loop.make_chunk,
    train.policy_step). The duals still move (dual_lr > 0), and steps 10..19 cross the duals'
    avg_start = 15, so both dual stages are exercised.
    """
    config, splits, setup, state = tiny
    static, k_lanes = setup.static, state.lane_taus.shape[0]
    assert static.duals.avg_start == 15 and static.tau_jitter == 0.0
    hp = _hp(policy_lr=0.0, dual_lr=0.5, margin=0.015)
    start = core_helpers.on_device(state.replace(step=jnp.asarray(10, jnp.int32)))
    data = train.Batch.from_dataset(splits["policy"])
    run_key = setup.run_keys[0]
    chunk = loop.compile_chunk(static, train.policy_step, config.train.chunk_size)
    batched = jax.tree.map(lambda x: x[None], start)
    final, metrics = chunk(jax.tree.map(jnp.copy, batched), run_key[None], data,
                           core_helpers.on_device(jax.tree.map(lambda x: x[None], hp)))
    final = jax.tree.map(lambda x: x[0], final)

    lane_duals = [jax.tree.map(lambda x, k=k: x[k], start.duals) for k in range(k_lanes)]
    sums = {name: np.zeros(k_lanes) for name in ("reward", "acc_det", "cost_det", "lam",
                                                  "lam_avg", "mu_mean")}
    gather = jax.jit(lambda idx: train.Batch(data.features[idx], data.scores[idx],
                                             data.costs[idx]))
    inputs_of = jax.jit(train.frozen_lane_inputs, static_argnums=0)
    for t in range(10, 20):
        k_batch, k_step = jax.random.split(jax.random.fold_in(run_key, t))
        idx = jax.random.randint(k_batch, (static.batch_size,), 0, data.features.shape[0])
        inputs = inputs_of(static, start.params, gather(idx))
        lane_keys = jax.random.split(jax.random.split(k_step)[1], k_lanes)
        for k in range(k_lanes):
            sample, lane_duals[k] = _one_lane_step(static, start.params["policy"], inputs,
                                                   start.lane_taus[k], lane_duals[k],
                                                   lane_keys[k], hp, jnp.asarray(t, jnp.int32))
            for name in ("reward", "acc_det", "cost_det"):
                sums[name][k] += float(sample[name])
            sums["mu_mean"][k] += float(sample["mu"].mean())
            sums["lam"][k] += float(lane_duals[k].lam)
            sums["lam_avg"][k] += float(lane_duals[k].lam_avg)

    for name, total in sums.items():
        np.testing.assert_allclose(metrics[name][0], total / 10, rtol=2e-5, atol=1e-6,
                                   err_msg=name)
    by_hand = jax.tree.map(lambda *xs: jnp.stack(xs), *lane_duals)
    chex.assert_trees_all_close(final.duals, by_hand, rtol=2e-5, atol=1e-6)
    assert int(final.step) == 20
    assert not core_helpers.tree_diff(final.params["policy"], start.params["policy"])
    assert float(jnp.abs(final.duals.lam - start.duals.lam).max()) > 0.0  # the duals did move


@functools.partial(jax.jit, static_argnums=0)
def _lanes_and_one_by_one(spec, policy_params, z, tau_in, lam):
    """`lanes_beta` and, lane by lane, `policy_beta` at the same (τ, λ) (one compile)."""
    by_lane = [networks.policy_beta(spec, policy_params, z, tau_in[k], lam[k])
               for k in range(tau_in.shape[0])]
    return train.lanes_beta(spec, policy_params, z, tau_in, lam), by_lane


def test_lanes_beta_is_each_lanes_policy_beta(tiny):
    _, _, setup, state = tiny
    spec, policy = setup.static.spec, state.params["policy"]
    z = jnp.asarray(np.random.default_rng(0).normal(size=(5, spec.hidden)), jnp.float32)
    tau_in, lam = jnp.asarray([0.6, 0.9]), jnp.asarray([1.0, 3.0])
    (alpha, beta), by_lane = _lanes_and_one_by_one(spec, policy, z, tau_in, lam)
    chex.assert_shape([alpha, beta], (2, 5))
    for k, (alpha_k, beta_k) in enumerate(by_lane):
        np.testing.assert_allclose(alpha[k], alpha_k, rtol=1e-5, err_msg=f"lane {k}")
        np.testing.assert_allclose(beta[k], beta_k, rtol=1e-5, err_msg=f"lane {k}")
    # With the output kernel zeroed the correction δ is 0 and the concentration's logit is its
    # bias softplus^-1(30): m = sigmoid(log λ) = λ / (1 + λ), K = 30 + 1/m + 1/(1 − m),
    # α = m K, β = (1 − m) K. λ = 1: m = 1/2, K = 34, α = β = 17. λ = 3: m = 3/4,
    # K = 30 + 4/3 + 4 = 35.333, α = 26.5, β = 8.8333 (the same for every query and τ).
    out = dict(policy["params"]["beta_params"], kernel=jnp.zeros_like(
        policy["params"]["beta_params"]["kernel"]))
    flat = {"params": {**policy["params"], "beta_params": out}}
    (alpha, beta), _ = _lanes_and_one_by_one(spec, flat, z, tau_in, lam)
    np.testing.assert_allclose(alpha, [[17.0] * 5, [26.5] * 5], rtol=1e-5)
    np.testing.assert_allclose(beta, [[17.0] * 5, [106 / 12] * 5], rtol=1e-5)


# ----------------------------------------------------------------------------- small parts by hand


def test_make_optimizer_clips_then_adam_then_decays_by_hand():
    static = core_helpers.static_for(core_helpers.TINY_SPEC, grad_clip=1.0, weight_decay=0.1)
    tx = train.make_optimizer(static)
    params = {"w": jnp.float32([1.0, 2.0])}
    grads = {"w": jnp.float32([3.0, -4.0])}  # ‖g‖ = 5 -> clipped to g / 5 = (0.6, −0.8)
    updates, opt_state = jax.jit(tx.update)(grads, tx.init(params), params)
    clip_state, adam_state, _ = opt_state
    del clip_state
    # Adam's moments hold the CLIPPED gradient: μ = 0.1 ĝ, ν = 0.001 ĝ²
    np.testing.assert_allclose(adam_state.mu["w"], [0.06, -0.08], rtol=1e-5)
    np.testing.assert_allclose(adam_state.nu["w"], [0.00036, 0.00064], rtol=1e-5)
    # first step: m̂ / (sqrt(v̂) + 1e-8) = sign ĝ = (1, −1), plus decay 0.1 p = (0.1, 0.2)
    np.testing.assert_allclose(updates["w"], [1.1, -0.8], rtol=1e-5)


def test_apply_updates_steps_against_the_direction_at_the_traced_lr():
    params = {"w": jnp.float32([1.0, 2.0]), "b": jnp.float32(0.5)}
    grads = {"w": jnp.float32([3.0, -4.0]), "b": jnp.float32(1.0)}
    tx = optax.scale(2.0)  # the optimiser's direction: 2 g
    new, opt_state = jax.jit(functools.partial(train.apply_updates, tx))(
        grads, tx.init(params), params, jnp.float32(0.5))
    # p − lr · 2g: w = (1 − 3, 2 + 4) = (−2, 6); b = 0.5 − 1 = −0.5
    np.testing.assert_allclose(new["w"], [-2.0, 6.0])
    assert float(new["b"]) == -0.5
    assert opt_state == tx.init(params)  # the optimiser's (here empty) state comes back


def test_fold_weights_zero_each_predictor_on_its_own_fold():
    fold = jnp.int32([0, 1, 0, 2])
    # predictor f may fit every row whose fold is not f; held_out flips that
    expected_fit = [[0, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 0]]
    fit = predictor_phase.fold_weights(fold, 3)
    np.testing.assert_array_equal(fit, expected_fit)
    assert fit.dtype == jnp.float32
    np.testing.assert_array_equal(predictor_phase.fold_weights(fold, 3, held_out=True),
                                  1 - np.asarray(expected_fit))


def test_sample_from_beta_by_hand_with_the_draw_fixed(monkeypatch):
    """The sampler is stubbed (tests/test_beta.py tests it): μ = (0.2, 0.001) for
    Beta(1000, 1) and Beta(1, 1000), so row 0's draw and its Beta mean route differently."""
    drawn = []

    def fixed_draw(key, alpha, beta):
        drawn.append((alpha, beta))
        return jnp.float32([0.2, 0.001])

    monkeypatch.setattr(train.beta_dist, "sample", fixed_draw)
    alpha, beta = jnp.float32([1000.0, 1.0]), jnp.float32([1.0, 1000.0])
    inputs = train.LaneInputs(
        z=jnp.zeros((2, 1)), p_hat=jnp.float32([[0.2, 0.9], [0.3, 0.8]]),
        c_hat_norm=jnp.float32([[0.1, 0.5], [0.2, 0.6]]),
        scores=jnp.float32([[0.0, 1.0], [1.0, 0.0]]),
        cost_norm=jnp.float32([[0.1, 0.5], [0.2, 0.6]]))
    # a fresh function to jit: no trace cached with the real sampler is reused
    out = jax.jit(lambda *args: train.sample_from_beta(*args))(
        alpha, beta, inputs, jnp.float32(0.5), jnp.float32(2.0), jax.random.key(0))
    assert len(drawn) == 1
    np.testing.assert_array_equal(out["mu"], np.float32([0.2, 0.001]))
    # utility μ p̂ − (1 − μ) ĉ: row 0 at μ = 0.2: (0.04 − 0.08, 0.18 − 0.4) -> model 0 (cheap,
    # wrong); row 1 at μ = 0.001 -> model 0 (cheap, right). Realised (y, c) = (0, 0.1), (1, 0.2);
    # r = −c + λ (y − τ) = (−0.1 − 1, −0.2 + 1) = (−1.1, 0.8), mean −0.15;
    # advantage (r + 0.15) / (std 0.95 + 1e-6) = (−1, 1)
    assert float(out["reward"]) == pytest.approx(-0.15, rel=1e-5)
    np.testing.assert_allclose(out["advantage"], [-1.0, 1.0], rtol=1e-5)
    # the Beta means 1000/1001 and 1/1001 route row 0 to model 1 (y 1, c 0.5), row 1 to
    # model 0 (y 1, c 0.2): acc_det 1, cost_det (0.5 + 0.2) / 2 = 0.35
    assert float(out["acc_det"]) == pytest.approx(1.0)
    assert float(out["cost_det"]) == pytest.approx(0.35, rel=1e-5)
    # log Beta(μ; α, β) at the drawn μ: log(α μ^(α−1)) for Beta(α, 1), log(β (1−μ)^(β−1))
    expected = [math.log(1000.0) + 999.0 * math.log(0.2),
                math.log(1000.0) + 999.0 * math.log1p(-0.001)]  # (−1600.9, 5.9083)
    np.testing.assert_allclose(out["log_prob"], expected, rtol=1e-4)


def test_loss_from_beta_reinforce_and_ppo_by_hand():
    # Beta(2, 1): density 2μ, so log π(μ) = log 2μ: (0, −log 2) at μ = (0.5, 0.25);
    # entropy = log B(2, 1) − ψ(2) + ψ(3) = −log 2 + 1/2 = −0.193147
    static = core_helpers.static_for(core_helpers.TINY_SPEC, algo="reinforce", ppo_clip=0.2)
    alpha, beta = jnp.float32([2.0, 2.0]), jnp.float32([1.0, 1.0])
    sample = {"mu": jnp.float32([0.5, 0.25]), "log_prob": jnp.float32([-math.log(2.0), 0.0]),
              "advantage": jnp.float32([1.0, -1.0])}
    ent = -math.log(2.0) + 0.5
    reinforce, ppo = jax.jit(lambda c: (  # one compile for both
        train.loss_from_beta(static, alpha, beta, sample, c),
        train.loss_from_beta(static._replace(algo="ppo"), alpha, beta, sample, c)))(
            jnp.float32(0.1))
    # REINFORCE: −mean(A log π) − c H = −(0 + log 2) / 2 − 0.1 H = −0.327259
    assert float(reinforce) == pytest.approx(-math.log(2.0) / 2 - 0.1 * ent, rel=1e-5)
    # PPO: ratio = exp(log π − old) = (2, 1/2); clipped to (1.2, 0.8);
    # min(2·1, 1.2·1) = 1.2, min(−0.5, −0.8) = −0.8; −mean = −0.2; −0.2 − 0.1 H = −0.180685
    assert float(ppo) == pytest.approx(-0.2 - 0.1 * ent, rel=1e-5)
