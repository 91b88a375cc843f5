"""Training state and the Lagrangian RL phase (DESIGN.md section 3); the predictor phase's steps
are in `proteus.training.predictor_phase`.

Training has two phases, because a predictor that has fitted the very queries the duals measure
makes the batch accuracy overshoot every τ and collapses every λ to 0 (DESIGN.md section 3,
"held-out signal"):

1. predictor phase: trunk + performance head + cost head, cross-fitted over the training pool (or
   on the `pred` part), early-stopped on held-out rows (the best parameters are kept per run);
2. policy phase: the predictor is frozen; the τ-conditioned Beta policy and the per-lane duals learn
   on predictions for queries whose labels the predictor never fitted (out of fold, or `policy`).

Everything here is a pure function of one run: `(state, key, batch, hparams) -> (state, metrics)`.
A run's K τ lanes share the policy parameters; per-lane work is written for one lane and vmapped
over lanes inside the step. Independent runs (seeds, swept hyperparameters) are vmapped over by
the caller (`proteus.training.loop`), which also scans steps into compiled chunks.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from proteus.training import beta as beta_dist
from proteus.training import duals as duals_lib
from proteus.training import losses
from proteus.training.networks import (
    RouterSpec,
    policy_beta,
    policy_beta_from_projection,
    policy_projection,
    predicted,
    routing_rule,
)
from proteus.types import Array, Params


class HParams(NamedTuple):
    """Per-run hyperparameters; traced, so a sweep over them is one compiled program.

    Each field is a scalar for one run ([S] when vmapped over S runs).
    """

    pred_lr: Array
    policy_lr: Array
    ent_coef: Array
    dual_lr: Array
    margin: Array


class StaticConfig(NamedTuple):
    """Python-level (hashable) training settings; changing one means a new compile.

    No defaults: the config (`experiments/configs/common.py`) holds them with their meaning, and
    `proteus.pipeline.config.static_config` reads them from it.
    """

    spec: RouterSpec
    batch_size: int
    cost_weight: float
    weight_decay: float
    grad_clip: float
    algo: str  # "reinforce" | "ppo"
    ppo_epochs: int
    ppo_clip: float
    duals: duals_lib.DualSettings
    tau_jitter: float  # half-width of the uniform jitter added to each lane's τ input


class Batch(NamedTuple):
    """Rows of a routing split: a minibatch ([B, ...]) or a phase's whole split ([N, ...]).

    features [B, D] float32, scores [B, M] in [0, 1], costs [B, M] USD. Optional: fold [B] int32,
    each query's cross-fitting fold (the predictor of fold f never fits queries of fold f);
    z [B, H], p_hat [B, M], c_hat [B, M], the frozen predictor's outputs for the policy phase,
    precomputed (out of fold when cross-fitting) instead of recomputed. A phase's split held on
    device for S vmapped runs carries them per run: z [S, N, H], p_hat and c_hat [S, N, M] (see
    `loop.policy_phase_data` and `run_axes`). task [B] int32 in [-1, T): each query's task index
    for the calibration's task prior (`networks.task_logits`), when the spec has tasks.
    """

    features: Array
    scores: Array
    costs: Array
    fold: Array | None = None
    z: Array | None = None
    p_hat: Array | None = None
    c_hat: Array | None = None
    task: Array | None = None

    @classmethod
    def from_dataset(cls, ds, fold=None, task=None) -> Batch:
        """A dataset's rows on device (float32; fold and task int32)."""
        if ds.features is None:
            raise ValueError(f"dataset {ds.name!r} has no features; encode it first")
        as_int = lambda x: None if x is None else jnp.asarray(x, jnp.int32)
        return cls(jnp.asarray(ds.features, jnp.float32), jnp.asarray(ds.scores, jnp.float32),
                   jnp.asarray(ds.costs, jnp.float32), as_int(fold), task=as_int(task))

    def run_axes(self) -> Batch:
        """vmap in_axes over runs: the per-run predictor outputs are batched, the data shared."""
        shared = ("features", "scores", "costs", "fold", "task")
        return Batch(*(None if name in shared or v is None
                       else 0 for name, v in self._asdict().items()))


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit-identically (one run; [S, ...] when vmapped).

    step: [] int32, number of updates taken (both phases).
    params: {"predictor", "policy", "stats"} (stats: feature mean/scale, c_ref, mean_cost).
    pred_opt, policy_opt: optimiser states of the two parameter groups.
    duals: `duals.DualState` with [K] leaves.
    lane_taus: [K] the lanes' accuracy targets, increasing.
    best_predictor: predictor parameters with the lowest validation loss so far.
    best_val: [] that loss; bad_evals: [] int32 evaluations since it improved.
    pred_steps: [] int32 the step at which the predictor phase ended (0 while it runs).
    """

    step: Array
    params: Params
    pred_opt: optax.OptState
    policy_opt: optax.OptState
    duals: duals_lib.DualState
    lane_taus: Array
    best_predictor: Params
    best_val: Array
    bad_evals: Array
    pred_steps: Array


def make_optimizer(static: StaticConfig) -> optax.GradientTransformation:
    """Adam direction with clipping and decoupled decay; the (traced) lr is applied by the step."""
    return optax.chain(
        optax.clip_by_global_norm(static.grad_clip),
        optax.scale_by_adam(),
        optax.add_decayed_weights(static.weight_decay),
    )


def init_state(static: StaticConfig, params: Params, lane_taus: Array, lam0: Array) -> TrainState:
    """A fresh state around initialised `params`; lam0: [] initial dual of every lane."""
    tx = make_optimizer(static)
    lane_taus = jnp.asarray(lane_taus, jnp.float32)
    lane_lams = jnp.full_like(lane_taus, lam0)
    folds = static.spec.folds
    pred_opt = (jax.vmap(tx.init)(params["predictor"]) if folds > 1
                else tx.init(params["predictor"]))
    shape = (folds,) if folds > 1 else ()  # early stopping is tracked per fold
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        pred_opt=pred_opt,
        policy_opt=tx.init(params["policy"]),
        duals=jax.vmap(duals_lib.init_dual)(lane_lams, lane_taus),
        lane_taus=lane_taus,
        best_predictor=params["predictor"],
        best_val=jnp.full(shape, jnp.inf, jnp.float32),
        bad_evals=jnp.zeros(shape, jnp.int32),
        pred_steps=jnp.zeros((), jnp.int32),
    )


def apply_updates(tx, grads, opt_state, params, lr):
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state


# ----------------------------------------------------------------------------- policy phase


class LaneInputs(NamedTuple):
    """What one lane sees of a batch; the first four are shared by all lanes (not vmapped)."""

    z: Array  # [B, H] frozen trunk output
    p_hat: Array  # [B, M]
    c_hat_norm: Array  # [B, M] predicted cost / c_ref
    scores: Array  # [B, M] realised
    cost_norm: Array  # [B, M] realised cost / c_ref


def sample_lane(spec: RouterSpec, policy_params: Params, inputs: LaneInputs, tau_in: Array,
                tau: Array, lam: Array, key: Array) -> dict[str, Array]:
    """Sample μ ~ π(. | z, τ, λ) for one lane, realise rewards, and score the Beta-mean policy.

    tau_in: [] the (possibly jittered) τ the policy is shown; tau, lam: [] the lane's target and
    dual. Returns [B] "mu", "log_prob", "advantage", and [] "reward", "acc_det", "cost_det".
    """
    chex.assert_rank([inputs.z, tau_in, tau, lam], [2, 0, 0, 0])  # one lane: vmap over lanes
    alpha, beta = policy_beta(spec, policy_params, inputs.z, tau_in, lam)
    return sample_from_beta(alpha, beta, inputs, tau, lam, key)


def sample_from_beta(alpha: Array, beta: Array, inputs: LaneInputs, tau: Array, lam: Array,
                     key: Array) -> dict[str, Array]:
    """`sample_lane` given the lane's Beta parameters alpha, beta: [B] (both >= 1)."""
    chex.assert_rank([alpha, beta, tau, lam], [1, 1, 0, 0])
    mu = beta_dist.sample(key, alpha, beta)
    rows = jnp.arange(mu.shape[0])
    choice = routing_rule(mu, inputs.p_hat, inputs.c_hat_norm)
    reward = losses.lagrangian_reward(
        inputs.scores[rows, choice], inputs.cost_norm[rows, choice], tau, lam)
    det = routing_rule(alpha / (alpha + beta), inputs.p_hat, inputs.c_hat_norm)
    return {
        "mu": mu,
        "log_prob": losses.beta_log_prob(mu, alpha, beta),
        "advantage": losses.normalised_advantage(reward),
        "reward": reward.mean(),
        "acc_det": inputs.scores[rows, det].mean(),
        "cost_det": inputs.cost_norm[rows, det].mean(),
    }


def lane_policy_loss(static: StaticConfig, policy_params: Params, inputs: LaneInputs,
                     tau_in: Array, lam: Array, sample: dict[str, Array], ent_coef: Array):
    """The policy-gradient loss of one lane on its sampled batch (REINFORCE or PPO-clip)."""
    alpha, beta = policy_beta(static.spec, policy_params, inputs.z, tau_in, lam)
    return loss_from_beta(static, alpha, beta, sample, ent_coef)


def loss_from_beta(static: StaticConfig, alpha: Array, beta: Array, sample: dict[str, Array],
                   ent_coef: Array) -> Array:
    """`lane_policy_loss` given the lane's alpha, beta: [B]; sample holds [B] "mu", "log_prob",
    "advantage". Log-density and entropy share their special functions (`proteus.training.beta`)."""
    chex.assert_rank([alpha, beta, sample["mu"]], 1)
    log_prob, entropy = beta_dist.log_prob_and_entropy(sample["mu"], alpha, beta)
    if static.algo == "ppo":
        return losses.ppo_clip_loss(log_prob, sample["log_prob"], sample["advantage"], entropy,
                                    ent_coef, static.ppo_clip)
    return losses.reinforce_loss(log_prob, sample["advantage"], entropy, ent_coef)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _broadcast_lanes(x: Array, n_lanes: int) -> Array:
    """x [...] -> [K, ...], K copies; its VJP sums the K cotangents with a matrix product.

    The lanes share the policy's z-projection; left to vmap, the transpose of that sharing is a
    reduce over the leading lane axis, which XLA's CPU backend (YNNPACK reduce fusion, jax 0.10)
    runs ~40x slower than the same sum as a [1, K] x [K, B·P] product (profile in
    benchmarks/profile_policy.py).
    """
    return jnp.broadcast_to(x, (n_lanes, *x.shape))


def _broadcast_lanes_fwd(x, n_lanes):
    return _broadcast_lanes(x, n_lanes), None


def _broadcast_lanes_bwd(n_lanes, _, g):
    return (jnp.tensordot(jnp.ones((n_lanes,), g.dtype), g, axes=1),)


_broadcast_lanes.defvjp(_broadcast_lanes_fwd, _broadcast_lanes_bwd)


def lanes_beta(spec: RouterSpec, policy_params: Params, z: Array, tau_in: Array,
               lam: Array) -> tuple[Array, Array]:
    """Every lane's Beta parameters: z [B, H]; tau_in, lam: [K] -> alpha, beta: [K, B].

    The z-projection runs once for the batch; the rest of the policy runs per lane (vmapped),
    so lane k's alpha, beta equal `policy_beta(spec, policy_params, z, tau_in[k], lam[k])`.
    """
    projection = policy_projection(spec, policy_params, z)
    shared = _broadcast_lanes(projection, tau_in.shape[0])
    return jax.vmap(lambda p, t, lm: policy_beta_from_projection(spec, policy_params, p, t, lm))(
        shared, tau_in, lam)


def frozen_lane_inputs(static: StaticConfig, params: Params, batch: Batch) -> LaneInputs:
    """The τ-independent part of a policy step, computed once per batch (never per lane).

    Uses the batch's precomputed (out-of-fold) z, p_hat, c_hat when present; otherwise runs the
    frozen single predictor.
    """
    if batch.p_hat is not None:
        z, p_hat, c_hat = batch.z, batch.p_hat, batch.c_hat
    else:
        z, p_hat, c_hat = predicted(static.spec, params, batch.features)
    c_ref = params["stats"]["c_ref"]
    return jax.lax.stop_gradient(LaneInputs(
        z=z, p_hat=p_hat, c_hat_norm=c_hat / c_ref, scores=batch.scores,
        cost_norm=batch.costs / c_ref))


def policy_step(static: StaticConfig, state: TrainState, key: Array, batch: Batch,
                hp: HParams) -> tuple[TrainState, dict[str, Array]]:
    """One Lagrangian RL update of the shared policy plus one dual update per lane
    (`duals.update`)."""
    spec = static.spec
    inputs = frozen_lane_inputs(static, state.params, batch)
    n_lanes = state.lane_taus.shape[0]
    k_jitter, k_sample = jax.random.split(key)
    jitter = static.tau_jitter * jax.random.uniform(k_jitter, (n_lanes,), minval=-1.0, maxval=1.0)
    tau_in = state.lane_taus + jitter
    lam = state.duals.lam
    lane_keys = jax.random.split(k_sample, n_lanes)

    def forward(policy_params):  # all lanes' α, β [K, B] and the map back to parameter grads
        return jax.vjp(lambda p: lanes_beta(spec, p, inputs.z, tau_in, lam), policy_params)

    def loss_of_beta(alpha, beta, samples):  # [K, B] -> [] (mean over lanes)
        per_lane = jax.vmap(lambda a, b, smp: loss_from_beta(static, a, b, smp, hp.ent_coef))(
            alpha, beta, samples)
        return per_lane.mean()

    # One forward serves the sampling and the first gradient: REINFORCE's loss is evaluated at
    # the parameters that sampled, so the policy runs forward once and backward once per step.
    policy_params, policy_opt = state.params["policy"], state.policy_opt
    (alpha, beta), pullback = forward(policy_params)
    samples = jax.vmap(lambda a, b, t, lm, k: sample_from_beta(a, b, inputs, t, lm, k))(
        alpha, beta, state.lane_taus, lam, lane_keys)
    tx = make_optimizer(static)
    n_epochs = static.ppo_epochs if static.algo == "ppo" else 1
    loss = jnp.zeros(())
    for epoch in range(n_epochs):  # unrolled: n_epochs is a small static number
        if epoch > 0:  # PPO: later epochs see the updated parameters
            (alpha, beta), pullback = forward(policy_params)
        loss, beta_grads = jax.value_and_grad(loss_of_beta, argnums=(0, 1))(alpha, beta, samples)
        (grads,) = pullback(beta_grads)
        policy_params, policy_opt = apply_updates(tx, grads, policy_opt, policy_params,
                                                   hp.policy_lr)
    phase_step = state.step - state.pred_steps  # the duals' schedule counts policy steps
    duals = jax.vmap(lambda d, acc, t: duals_lib.update(
        static.duals, d, acc, t, hp.dual_lr, hp.margin, phase_step))(
        state.duals, samples["acc_det"], state.lane_taus)
    state = state.replace(step=state.step + 1, params={**state.params, "policy": policy_params},
                          policy_opt=policy_opt, duals=duals)
    metrics = {"policy_loss": loss, "reward": samples["reward"], "acc_det": samples["acc_det"],
               "cost_det": samples["cost_det"], "lam": duals.lam, "lam_avg": duals.lam_avg,
               "mu_mean": samples["mu"].mean(axis=-1)}
    return state, metrics


def lane_grid(scores, costs, n_lanes: int, *, spacing: str, lo: float | None = None,
              hi: float | None = None) -> jnp.ndarray:
    """The lanes' targets: K values of τ over the feasible range of the training labels.

    Default range (DESIGN.md section 3): from the cheapest model's accuracy to
    min(0.99, oracle accuracy), both on the given (training) scores. "log1m" spacing is uniform
    in log(1 − τ), so lanes crowd where targets are demanding and the dual changes fastest (the
    operating range of most SLAs); "linear" is uniform in τ.

    Args:
      scores, costs: [N, M] training labels.
      n_lanes: K >= 2.
      lo, hi: override either end.
      spacing: "log1m" or "linear".

    Returns:
      [K] float32 increasing.
    """
    scores = jnp.asarray(scores, jnp.float32)
    cheapest = jnp.argmin(jnp.asarray(costs).mean(axis=0))
    lo = float(scores[:, cheapest].mean()) if lo is None else lo
    hi = min(0.99, float(scores.max(axis=1).mean())) if hi is None else hi
    if not lo < hi:
        raise ValueError(f"lane range is empty: lo={lo:.4f} >= hi={hi:.4f}")
    if spacing == "linear":
        return jnp.linspace(lo, hi, n_lanes, dtype=jnp.float32)
    if spacing == "log1m":
        grid = jnp.linspace(jnp.log1p(-lo), jnp.log1p(-hi), n_lanes)
        return (-jnp.expm1(grid)).astype(jnp.float32)
    raise ValueError(f"unknown lane spacing {spacing!r}; expected 'log1m' or 'linear'")
