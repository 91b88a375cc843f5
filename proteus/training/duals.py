"""The dual of each τ lane's accuracy floor: its state and its whole update (DESIGN.md section 3).

Written for ONE lane (vmap over lanes is the caller's job). After every policy step the lane's
dual moves by `update`, the one place its two stages are written:

1. the step: plain projected ascent λ ← clip(λ + η (τ + margin − â), 0, λ_max), or PID (Stooke,
   Achiam & Abbeel 2020), â the deterministic policy's batch accuracy (optionally an EMA);
2. from `avg_start` policy-phase steps on, the step is multiplied by `lr_late` and the iterates
   are averaged into λ_avg, the λ used at inference. Before then the duals travel from lam_init
   to their equilibrium with the full step. After it, the batch accuracy is noisy, and a λ that
   keeps jittering meets E[acc(λ_t)] = τ + margin while acc(E[λ_t]) overshoots (acc is concave in
   λ there), so the deployed λ_avg would buy more accuracy than asked for.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax.numpy as jnp

from proteus.types import Array


class DualSettings(NamedTuple):
    """Static (hashable) dual settings; `proteus.pipeline.config.dual_settings` reads them from
    the config (`train.dual`, `train.pid_gains`, ...), which holds their defaults and meaning."""

    kind: str  # "plain" projected ascent | "pid"
    pid_gains: tuple[float, float, float]  # (K_p, K_i, K_d), multiplied by the dual step
    ema: float  # EMA of the batch accuracy that drives λ (0: the batch accuracy alone)
    avg: float  # EMA of the λ iterates once averaging has started
    avg_start: int  # policy-phase steps before averaging (and the smaller step) start
    lr_late: float  # dual step multiplier from then on
    lam_max: float  # projection bound of λ


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


def update(settings: DualSettings, state: DualState, batch_acc: Array, tau: Array,
           dual_lr: Array, margin: Array, phase_step: Array) -> DualState:
    """One lane's whole dual update after a policy step (both stages, see the module docstring).

    Args:
      settings: the static dual settings.
      state: the lane's DualState (scalar leaves).
      batch_acc: [] the deterministic policy's accuracy on the batch; tau: [] the lane's target.
      dual_lr, margin: [] the run's traced dual step η_λ and margin (`train.HParams`).
      phase_step: [] int32 policy-phase steps taken before this one.
    """
    late = phase_step >= settings.avg_start
    avg = jnp.where(late, settings.avg, 0.0).astype(jnp.float32)
    lr = dual_lr * jnp.where(late, settings.lr_late, 1.0)
    ema = jnp.asarray(settings.ema, jnp.float32)
    if settings.kind == "pid":
        gains = lr * jnp.asarray(settings.pid_gains, jnp.float32)
        state = pid_step(state, batch_acc, tau, gains, margin, settings.lam_max, ema)
    else:
        state = plain_step(state, batch_acc, tau, lr, margin, settings.lam_max, ema)
    return average(state, batch_acc, avg)


def average(state: DualState, batch_acc: Array, avg: Array) -> DualState:
    """λ_avg ← avg·λ_avg + (1 − avg)·λ and the same for the batch accuracy, after a step."""
    return state._replace(lam_avg=avg * state.lam_avg + (1.0 - avg) * state.lam,
                          acc_avg=avg * state.acc_avg + (1.0 - avg) * batch_acc)


def smoothed_accuracy(state: DualState, batch_acc: Array, ema: Array) -> Array:
    """â ← ema·â + (1 − ema)·batch accuracy; ema = 0 uses the batch accuracy alone."""
    return ema * state.acc_ema + (1.0 - ema) * batch_acc


def plain_step(
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


def pid_step(
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
