"""Losses and rewards, each written for ONE τ lane (vmap is the caller's job); the duals' update
is `proteus.training.duals`.

DESIGN.md section 3. Notation: B queries in a batch, M models, costs normalised by c_ref.
"""

from __future__ import annotations

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
