"""Losses, rewards and dual updates, each written for ONE τ lane (vmap is the caller's job).

DESIGN.md section 3. Notation: B queries in a batch, M models, costs normalised by c_ref.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from proteus.training import beta as beta_dist
from proteus.types import Array

# ----------------------------------------------------------------------------- predictor


def predictor_loss(
    perf_logits: Array, log_cost: Array, scores: Array, costs: Array, cost_weight: Array,
    weights: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """BCE on soft scores plus weighted MSE on log cost.

    Args:
      perf_logits: [B, M] correctness logits.
      log_cost: [B, M] predicted log USD.
      scores: [B, M] realised scores in [0, 1] (soft targets).
      costs: [B, M] realised USD (> 0 expected; floored at 1e-9 before the log).
      cost_weight: [] weight of the cost term.
      weights: [B] row weights (None: uniform); the loss is the weighted mean over rows.

    Returns:
      scalar loss and {"bce", "cost_mse"}.
    """
    chex.assert_equal_shape([perf_logits, log_cost, scores, costs])
    if weights is None:
        weights = jnp.ones(scores.shape[:1], scores.dtype)
    mean = lambda per_cell: (per_cell.mean(axis=-1) * weights).sum() / jnp.maximum(
        weights.sum(), 1e-12)
    # log-sigmoid form is stable for large |logit|.
    bce = mean(-(scores * jax.nn.log_sigmoid(perf_logits)
                 + (1.0 - scores) * jax.nn.log_sigmoid(-perf_logits)))
    cost_mse = mean(jnp.square(log_cost - jnp.log(jnp.maximum(costs, 1e-9))))
    return bce + cost_weight * cost_mse, {"bce": bce, "cost_mse": cost_mse}


# ----------------------------------------------------------------------------- Beta policy


def beta_log_prob(mu: Array, alpha: Array, beta: Array) -> Array:
    """log Beta(μ; α, β), elementwise; μ clipped to (0, 1) for finiteness (see
    `proteus.training.beta`)."""
    return beta_dist.log_prob(mu, alpha, beta)


def beta_entropy(alpha: Array, beta: Array) -> Array:
    """Differential entropy of Beta(α, β), elementwise (see `proteus.training.beta`)."""
    return beta_dist.entropy(alpha, beta)


def lagrangian_reward(score: Array, cost_norm: Array, tau: Array, lam: Array) -> Array:
    """r = −c/c_ref + λ (y − τ), with the REALISED score y and cost c of the chosen model.

    score, cost_norm: [B]; tau, lam: [] -> [B].
    """
    chex.assert_rank([score, cost_norm, tau, lam], [1, 1, 0, 0])  # one lane: vmap over lanes
    chex.assert_equal_shape([score, cost_norm])
    return -cost_norm + lam * (score - tau)


def normalised_advantage(reward: Array) -> Array:
    """Per-lane baseline (batch mean) and scale (batch std): [B] -> [B]."""
    centred = reward - reward.mean()
    return centred / (centred.std() + 1e-6)


def reinforce_loss(log_prob: Array, advantage: Array, entropy: Array, ent_coef: Array) -> Array:
    """−E[A log π(μ)] − c_ent H[π]; log_prob, advantage, entropy: [B]."""
    chex.assert_equal_shape([log_prob, advantage, entropy])
    return -(jax.lax.stop_gradient(advantage) * log_prob).mean() - ent_coef * entropy.mean()


def ppo_clip_loss(
    log_prob: Array, old_log_prob: Array, advantage: Array, entropy: Array,
    ent_coef: Array, clip_eps: float,
) -> Array:
    """PPO-clip surrogate (Schulman et al. 2017) on one lane's batch; all vectors [B]."""
    chex.assert_equal_shape([log_prob, old_log_prob, advantage, entropy])
    ratio = jnp.exp(log_prob - jax.lax.stop_gradient(old_log_prob))
    adv = jax.lax.stop_gradient(advantage)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    return -surrogate.mean() - ent_coef * entropy.mean()


# ----------------------------------------------------------------------------- duals


class DualState(NamedTuple):
    """Per-lane dual state (all scalars for one lane; [K] after vmap).

    lam: the Lagrange multiplier λ >= 0.
    acc_ema: EMA of the deterministic policy's realised batch accuracy (the constraint signal).
    integral: PID integral term (unused by the plain projected update).
    prev_error: previous constraint error, for the PID derivative term.
    lam_avg: exponential average of the λ iterates, the lane's λ at inference. The last iterate of
      a stochastic dual ascent jitters with the batch accuracy; averaged iterates are the standard
      remedy for saddle-point problems and give a steadier λ(τ).
    acc_avg: the same average of the batch accuracy: what the lane reached on the `policy`
      split's labels, the rows the policy and the duals train on (not held out: an in-sample
      figure; held-out accuracy is measured on `val` by `proteus.operating`).
    """

    lam: Array
    acc_ema: Array
    integral: Array
    prev_error: Array
    lam_avg: Array
    acc_avg: Array


def init_dual(lam0: Array, tau: Array) -> DualState:
    """A lane's dual state at λ = lam0 with the accuracy average started at τ."""
    zero = jnp.zeros_like(lam0)
    tau = jnp.asarray(tau, lam0.dtype)
    return DualState(lam=lam0, acc_ema=tau, integral=zero, prev_error=zero, lam_avg=lam0,
                     acc_avg=tau)


def average_dual(state: DualState, batch_acc: Array, avg: Array) -> DualState:
    """λ_avg ← avg·λ_avg + (1 − avg)·λ and the same for the batch accuracy, after an update."""
    return state._replace(lam_avg=avg * state.lam_avg + (1.0 - avg) * state.lam,
                          acc_avg=avg * state.acc_avg + (1.0 - avg) * batch_acc)


def smoothed_accuracy(state: DualState, batch_acc: Array, ema: Array) -> Array:
    """â ← ema·â + (1 − ema)·batch accuracy; ema = 0 uses the batch accuracy alone."""
    return ema * state.acc_ema + (1.0 - ema) * batch_acc


def dual_update(
    state: DualState, batch_acc: Array, tau: Array, dual_lr: Array, margin: Array,
    lam_max: float, ema: Array,
) -> DualState:
    """Projected dual ascent: λ ← clip(λ + η_λ (τ + margin − â), 0, λ_max).

    One lane: every argument and `state` leaf is a scalar [] (vmap over lanes).
    """
    chex.assert_rank([*state, batch_acc, tau, dual_lr, margin, ema], 0)
    acc = smoothed_accuracy(state, batch_acc, ema)
    error = tau + margin - acc
    lam = jnp.clip(state.lam + dual_lr * error, 0.0, lam_max)
    return state._replace(lam=lam, acc_ema=acc, prev_error=error)


def pid_dual_update(
    state: DualState, batch_acc: Array, tau: Array, gains: Array, margin: Array,
    lam_max: float, ema: Array,
) -> DualState:
    """PID Lagrangian (Stooke, Achiam & Abbeel 2020): λ = [K_p e + K_i I + K_d (e − e_prev)^+]^+.

    gains: [3] (K_p, K_i, K_d). The integral is clamped at >= 0 (anti-windup) and at λ_max/K_i
    so that a long infeasible stretch cannot build an integral that takes ages to unwind. One
    lane: `gains` aside, every argument and `state` leaf is a scalar [] (vmap over lanes).
    """
    chex.assert_rank([*state, batch_acc, tau, margin, ema, gains], [0] * (len(state) + 4) + [1])
    acc = smoothed_accuracy(state, batch_acc, ema)
    error = tau + margin - acc
    k_p, k_i, k_d = gains[0], gains[1], gains[2]
    integral = jnp.clip(state.integral + error, 0.0, lam_max / jnp.maximum(k_i, 1e-8))
    derivative = jnp.maximum(error - state.prev_error, 0.0)
    lam = jnp.clip(k_p * error + k_i * integral + k_d * derivative, 0.0, lam_max)
    return state._replace(lam=lam, acc_ema=acc, integral=integral, prev_error=error)
