"""Tests for proteus.training.losses: hand-computed values (arithmetic in the comments) and
check_grads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from proteus.training import losses

# ----------------------------------------------------------------------------- predictor


def test_predictor_loss_by_hand():
    logits = jnp.array([[0.0, math.log(3.0)]])
    log_cost = jnp.zeros((1, 2))
    scores = jnp.array([[0.25, 1.0]])
    costs = jnp.array([[math.e, 1.0]])
    loss, parts = losses.predictor_loss(logits, log_cost, scores, costs, jnp.asarray(2.0))
    # BCE at logit 0 is log 2 whatever the soft target; at logit log 3 with target 1 it is
    # -log sigmoid(log 3) = -log(3/4) = log(4/3). Mean = (log 2 + log 4/3) / 2.
    bce = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    # log cost targets: log e = 1, log 1 = 0; squared errors 1 and 0; mean 0.5.
    assert float(parts["bce"]) == pytest.approx(bce, rel=1e-6)
    assert float(parts["cost_mse"]) == pytest.approx(0.5, rel=1e-6)
    assert float(loss) == pytest.approx(bce + 2.0 * 0.5, rel=1e-6)


def test_predictor_loss_is_finite_for_extreme_logits_and_zero_costs():
    logits = jnp.array([[-200.0, 200.0]])
    loss, parts = losses.predictor_loss(logits, jnp.zeros((1, 2)), jnp.array([[0.0, 1.0]]),
                                        jnp.zeros((1, 2)), jnp.asarray(1.0))
    # correct at |logit| = 200: BCE ≈ log(1 + e^-200) ≈ 0; cost floored at 1e-9:
    # (0 - log 1e-9)^2 = (9 log 10)^2 = 429.48.
    assert float(parts["bce"]) == pytest.approx(0.0, abs=1e-12)
    assert float(parts["cost_mse"]) == pytest.approx((9 * math.log(10.0)) ** 2, rel=1e-5)
    assert bool(jnp.isfinite(loss))
    with pytest.raises(AssertionError):
        losses.predictor_loss(logits, jnp.zeros((1, 3)), logits, logits, jnp.asarray(1.0))


def test_predictor_loss_grads():
    # First order throughout this module: training uses gradients only, and every extra order
    # multiplies the number of (float64) programs to compile.
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.uniform(size=(4, 3)))
    costs = jnp.asarray(rng.uniform(0.1, 2.0, size=(4, 3)))
    with jax.enable_x64(True):
        logits = jnp.asarray(rng.normal(size=(4, 3)), jnp.float64)
        log_cost = jnp.asarray(rng.normal(size=(4, 3)), jnp.float64)
        fn = lambda lg, lc: losses.predictor_loss(lg, lc, scores.astype(jnp.float64),
                                                  costs.astype(jnp.float64), 0.5)[0]
        check_grads(jax.jit(fn), (logits, log_cost), order=1, modes=("fwd", "rev"))


# ----------------------------------------------------------------------------- Beta policy


def test_beta_log_prob_by_hand():
    mu = jnp.array([0.25, 0.3, 0.5])
    alpha = jnp.array([2.0, 1.0, 2.0])
    beta = jnp.array([1.0, 1.0, 3.0])
    # Beta(2, 1) density 2μ: log 0.5 at μ = 1/4. Beta(1, 1) is uniform: 0.
    # Beta(2, 3) density 12 μ (1 - μ)^2 (1/B(2,3) = 4!/(1! 2!) = 12): 12 · 0.5 · 0.25 = 1.5.
    np.testing.assert_allclose(losses.beta_log_prob(mu, alpha, beta),
                               [math.log(0.5), 0.0, math.log(1.5)], rtol=1e-5, atol=1e-6)
    # μ on the boundary is clipped to 1e-6 (finite): Beta(2, 1) at 0 -> log(2e-6).
    edge = losses.beta_log_prob(jnp.array([0.0, 1.0]), jnp.array([2.0, 2.0]),
                                jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(edge, [math.log(2e-6), math.log(2.0)], rtol=1e-4)


def test_beta_entropy_by_hand():
    alpha = jnp.array([1.0, 2.0, 2.0])
    beta = jnp.array([1.0, 1.0, 2.0])
    # Uniform: 0.
    # Beta(2, 1), density 2μ: -∫ 2μ log(2μ) dμ = -log 2 - 2 ∫ μ log μ dμ = -log 2 + 1/2.
    # Beta(2, 2): log B(2,2) - ψ(2) - ψ(2) + 2 ψ(4) with B(2,2) = 1/6, ψ(2) = 1 - γ,
    #   ψ(4) = 1 + 1/2 + 1/3 - γ: -log 6 - 2 + 2γ + 11/3 - 2γ = 5/3 - log 6.
    expected = [0.0, 0.5 - math.log(2.0), 5.0 / 3.0 - math.log(6.0)]
    np.testing.assert_allclose(losses.beta_entropy(alpha, beta), expected, atol=1e-5)
    # entropy falls as the Beta concentrates (α = β = 30 is much narrower than uniform)
    assert float(losses.beta_entropy(jnp.asarray(30.0), jnp.asarray(30.0))) < -1.0


def test_beta_grads():
    with jax.enable_x64(True):
        mu = jnp.array([0.2, 0.5, 0.9], jnp.float64)
        alpha = jnp.array([1.5, 3.0, 20.0], jnp.float64)
        beta = jnp.array([2.0, 1.2, 4.0], jnp.float64)
        # reverse mode (what the policy update differentiates); forward mode would compile a
        # second set of polygamma programs for no extra coverage of the training path.
        check_grads(losses.beta_log_prob, (mu, alpha, beta), order=1, modes=("rev",))
        check_grads(losses.beta_entropy, (alpha, beta), order=1, modes=("rev",))


# ----------------------------------------------------------------------------- policy gradient


def test_lagrangian_reward_by_hand():
    score = jnp.array([1.0, 0.0, 0.5])
    cost_norm = jnp.array([0.2, 0.05, 1.0])
    reward = losses.lagrangian_reward(score, cost_norm, jnp.asarray(0.8), jnp.asarray(2.0))
    # -c + λ (y - τ): -0.2 + 2 (0.2) = 0.2; -0.05 + 2 (-0.8) = -1.65; -1 + 2 (-0.3) = -1.6.
    np.testing.assert_allclose(reward, [0.2, -1.65, -1.6], rtol=1e-6)
    # λ = 0: pure cost minimisation.
    np.testing.assert_allclose(
        losses.lagrangian_reward(score, cost_norm, jnp.asarray(0.8), jnp.asarray(0.0)),
        [-0.2, -0.05, -1.0])


def test_normalised_advantage_by_hand():
    adv = losses.normalised_advantage(jnp.array([1.0, 2.0, 3.0]))
    # centred (-1, 0, 1), population std sqrt(2/3) = 0.816497 -> ±1.224745 (1e-6 in the divisor).
    s = math.sqrt(2.0 / 3.0) + 1e-6
    np.testing.assert_allclose(adv, [-1.0 / s, 0.0, 1.0 / s], rtol=1e-6)
    np.testing.assert_allclose(losses.normalised_advantage(jnp.full(4, 7.0)), np.zeros(4))


def test_reinforce_loss_by_hand_and_stop_gradient():
    log_prob = jnp.array([-1.0, 0.5])
    adv = jnp.array([2.0, -1.0])
    ent = jnp.array([0.3, 0.1])
    loss = losses.reinforce_loss(log_prob, adv, ent, jnp.asarray(0.5))
    # -mean(A log π) - c mean(H) = -((-2) + (-0.5)) / 2 - 0.5 · 0.2 = 1.25 - 0.1 = 1.15.
    assert float(loss) == pytest.approx(1.15, rel=1e-6)
    # the advantage is a constant: d/dA = 0; d/dlog π = -A / B = (-1, 0.5).
    g_lp, g_adv, g_ent = jax.grad(losses.reinforce_loss, argnums=(0, 1, 2))(
        log_prob, adv, ent, jnp.asarray(0.5))
    np.testing.assert_allclose(g_lp, [-1.0, 0.5])
    np.testing.assert_array_equal(g_adv, [0.0, 0.0])
    np.testing.assert_allclose(g_ent, [-0.25, -0.25])  # -c / B


def test_ppo_clip_loss_by_hand():
    old = jnp.zeros(4)
    log_prob = jnp.log(jnp.array([1.5, 1.5, 0.5, 1.1]))  # ratios 1.5, 1.5, 0.5, 1.1
    adv = jnp.array([1.0, -1.0, 1.0, 2.0])
    ent = jnp.zeros(4)
    loss = losses.ppo_clip_loss(log_prob, old, adv, ent, jnp.asarray(0.0), 0.2)
    # min(r A, clip(r, .8, 1.2) A): A=1, r=1.5 -> min(1.5, 1.2) = 1.2; A=-1, r=1.5 ->
    # min(-1.5, -1.2) = -1.5; A=1, r=0.5 -> min(0.5, 0.8) = 0.5; A=2, r=1.1 -> 2.2 (inside).
    # loss = -(1.2 - 1.5 + 0.5 + 2.2) / 4 = -0.6.
    assert float(loss) == pytest.approx(-0.6, rel=1e-5)
    grad = jax.grad(losses.ppo_clip_loss)(log_prob, old, adv, ent, jnp.asarray(0.0), 0.2)
    # clipped terms carry no gradient; unclipped: d(-r A / 4)/dlog π = -r A / 4.
    np.testing.assert_allclose(grad, [0.0, 1.5 / 4, -0.5 / 4, -2.2 / 4], rtol=1e-5)


def test_ppo_gradient_equals_reinforce_at_ratio_one():
    rng = np.random.default_rng(1)
    log_prob = jnp.asarray(rng.normal(size=5), jnp.float32)
    adv = jnp.asarray(rng.normal(size=5), jnp.float32)
    ent = jnp.asarray(rng.normal(size=5), jnp.float32)
    g_ppo = jax.grad(losses.ppo_clip_loss, argnums=(0, 3))(log_prob, log_prob, adv, ent,
                                                           jnp.asarray(0.1), 0.2)
    g_rf = jax.grad(losses.reinforce_loss, argnums=(0, 2))(log_prob, adv, ent, jnp.asarray(0.1))
    for a, b in zip(g_ppo, g_rf, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_policy_gradient_loss_grads():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        lp = jnp.asarray(rng.normal(size=6) * 0.1, jnp.float64)
        old = lp + 0.05  # ratios e^-0.05 ≈ 0.95: inside the clip range, away from the kinks
        adv = jnp.asarray(rng.normal(size=6), jnp.float64)
        ent = jnp.asarray(rng.normal(size=6), jnp.float64)
        # jit: these are cheap to compile whole, and dozens of eager ops each otherwise.
        check_grads(jax.jit(lambda a, e: losses.reinforce_loss(a, adv, e, 0.01)), (lp, ent),
                    order=1, modes=("fwd", "rev"))
        check_grads(jax.jit(lambda a, e: losses.ppo_clip_loss(a, old, adv, e, 0.01, 0.2)),
                    (lp, ent), order=1, modes=("fwd", "rev"))

        # End to end: the REINFORCE loss as a function of the Beta parameters.
        mu = jnp.asarray(rng.uniform(0.1, 0.9, size=6), jnp.float64)

        def through_beta(alpha, beta):
            return losses.reinforce_loss(losses.beta_log_prob(mu, alpha, beta), adv,
                                         losses.beta_entropy(alpha, beta), 0.01)

        check_grads(through_beta, (jnp.full(6, 2.5, jnp.float64), jnp.linspace(1.5, 9.0, 6)),
                    order=1, modes=("rev",))  # reverse mode: what the policy update uses
