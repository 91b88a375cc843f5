"""PROTEUS networks (DESIGN.md section 2) and the pure routing function.

Two Linen modules with separate parameter trees, so that the predictor can be trained (and frozen)
on its own and the policy can be vmapped over τ lanes while the predictor runs once per batch:

- `Predictor`: features -> trunk z [B, H], correctness logits [B, M], log-cost [B, M].
- `PolicyHead`: (stop-gradient z, τ, λ) -> Beta(α, β) over the quality preference μ.

The policy's first layer is split into a z-projection and a (τ, λ)-projection that are summed. The
z-projection, the costly [B, H] x [H, P] product, does not depend on the lane, so a training step
computes it once (`policy_projection`) and runs only the rest per lane
(`policy_beta_from_projection`); a lane's (τ, λ)-projection runs on one row, not B.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from proteus.types import Array, Decisions, Params

_LAMBDA_EPS = 1e-3  # keeps log λ finite for lanes whose dual sits at 0


class Predictor(nn.Module):
    """Trunk MLP2 -> 256-d z, performance head (logits) and cost head (log USD)."""

    n_models: int
    hidden: int = 256

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array, Array]:
        """x: [B, D] standardised features -> z [B, H], perf logits [B, M], log cost [B, M]."""
        z = nn.relu(nn.Dense(self.hidden, name="trunk_0")(x))
        z = nn.relu(nn.Dense(self.hidden, name="trunk_1")(z))
        perf_logits = nn.Dense(self.n_models, name="perf_head")(z)
        log_cost = nn.Dense(self.n_models, name="cost_head")(z)
        return z, perf_logits, log_cost


class _ColumnDense(nn.Dense):
    """`nn.Dense` (the same parameters and initialisation) as one matrix-vector product per
    output column: for the policy's 2-wide output layer on a step's [K·B, 64] rows, XLA's CPU
    matmul and its transposes take ~2.5x longer than two matvecs (benchmarks/profile_policy.py)."""

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        kernel = self.param("kernel", self.kernel_init, (jnp.shape(inputs)[-1], self.features),
                            self.param_dtype)
        out = jnp.stack([inputs @ kernel[:, j] for j in range(self.features)], axis=-1)
        if self.use_bias:
            out = out + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return out


class PolicyHead(nn.Module):
    """π_θ(μ | z, τ, λ): a Beta distribution over the quality preference μ, with α, β >= 1.

    Parameterised as a residual around the plug-in solution. With the Lagrangian reward
    r = λ y − c / c_ref, the routing rule μ p̂ − (1 − μ) ĉ / c_ref equals the plug-in rule
    argmax λ p̂ − ĉ / c_ref exactly when μ / (1 − μ) = λ. The network therefore predicts a
    correction δ to that prior's logit, and a concentration κ:

        m = sigmoid(log λ + δ(z, τ, λ)),   K = softplus(k(z, τ, λ)) + 1/m + 1/(1 − m),
        α = m K,   β = (1 − m) K          (so α, β >= 1 and the Beta mean is exactly m).

    The RL learns what the plug-in cannot: per-query corrections for a miscalibrated p̂ and ĉ,
    measured on realised labels. With δ = 0 at initialisation the duals drive the policy from the
    first step, instead of waiting for REINFORCE to discover that μ must rise with λ. (The paper
    states α, β = 1 + softplus(.); this keeps α, β >= 1 and the Beta family.)
    """

    hidden: int = 128
    cond_hidden: int = 32
    init_concentration: float = 30.0
    init_spread: float = 1.0  # variance scale of the output kernel (see `head`)

    def setup(self):
        # Explicit names: the parameter tree is the one the compact version of this module had
        # (checkpoints and exports stay valid); `hidden` is also the width field's name.
        self.z_proj = nn.Dense(self.hidden, name="z_proj")
        self.cond_0 = nn.Dense(self.cond_hidden, name="cond_0")
        self.cond_proj = nn.Dense(self.hidden, name="cond_proj")
        self.hidden_layer = nn.Dense(self.hidden // 2, name="hidden")
        # Zero output bias: the policy starts on average at the plug-in prior. The small random
        # kernel spreads δ across queries; at a fixed λ many queries are near-ties (equal value,
        # equal price), and a single shared μ would switch all of them at once, making the
        # accuracy a step function of λ that no dual can settle on. A spread lets the
        # Lagrangian solution's mixing happen across queries while the policy learns.
        k_bias = math.log(math.expm1(self.init_concentration))  # softplus^-1
        self.beta_params = _ColumnDense(
            2, name="beta_params",
            kernel_init=nn.initializers.variance_scaling(self.init_spread, "fan_in", "normal"),
            bias_init=lambda *_: jnp.array([0.0, k_bias], jnp.float32))

    def project(self, z: Array) -> Array:
        """z: [B, H] -> the first layer's z-projection [B, P]; τ-independent, so a training step
        computes it once and shares it across lanes (the costly [B, H] x [H, P] product)."""
        return self.z_proj(z)

    def head(self, projection: Array, tau: Array, lam: Array) -> tuple[Array, Array]:
        """projection: [B, P] (from `project`); tau, lam: [] or [B] -> alpha, beta: [B] (>= 1)."""
        chex.assert_rank(projection, 2)
        # A lane's (τ, λ) are scalars: its conditioning MLP then runs on one row and is broadcast
        # over the batch (the same numbers as running it on B identical rows, at 1/B the cost).
        rows = 1 if jnp.ndim(tau) == 0 and jnp.ndim(lam) == 0 else projection.shape[0]
        tau = jnp.broadcast_to(tau, (rows,))
        lam = jnp.broadcast_to(lam, (rows,))
        log_lam = jnp.log(jnp.maximum(lam, 1e-3))
        # log1p keeps the dual's scale (0 .. λ_max) in a range an MLP handles well.
        cond = jnp.stack([tau, jnp.log1p(lam)], axis=-1)
        cond = nn.relu(self.cond_0(cond))
        h = nn.relu(projection + self.cond_proj(cond))
        h = nn.relu(self.hidden_layer(h))
        out = self.beta_params(h)
        m = jnp.clip(jax.nn.sigmoid(log_lam + out[:, 0]), 1e-4, 1.0 - 1e-4)
        concentration = nn.softplus(out[:, 1]) + 1.0 / m + 1.0 / (1.0 - m)
        return m * concentration, (1.0 - m) * concentration

    def __call__(self, z: Array, tau: Array, lam: Array) -> tuple[Array, Array]:
        """z: [B, H]; tau, lam: [] or [B] -> alpha, beta: [B] float32 (both >= 1)."""
        return self.head(self.project(z), tau, lam)


class RouterSpec(NamedTuple):
    """Static description of the networks (hashable; part of the exported manifest).

    The sizes and ablation switches have no defaults here: the config holds them with their
    meaning (`proteus.pipeline.config.router_spec` reads them).
    """

    n_models: int
    feature_dim: int
    hidden: int
    policy_hidden: int
    use_tau_input: bool  # ablation: False hides τ from the policy
    use_lambda_input: bool  # ablation: False hides λ from the policy
    static_cost: bool  # ablation: per-model mean train cost instead of the cost head
    folds: int  # cross-fitted predictors stacked on a leading [F] axis (1: a single one)
    groups: int  # G > 0: a per-(query group, model) prior stacked into the calibration
    # T > 0: queries carry a task index in [-1, T) (-1 unknown) and a per-(task, model) prior
    # deviation is stacked into the calibration (`crossfit.task_prior`); from the data's task
    # vocabulary, not the config (0: no task prior)
    tasks: int = 0

    def predictor(self) -> Predictor:
        return Predictor(self.n_models, self.hidden)

    def policy(self) -> PolicyHead:
        return PolicyHead(self.policy_hidden)


def data_stats(features: Array, costs: Array) -> dict[str, Array]:
    """Fixed (never trained) statistics of the predictor's training part.

    Args:
      features: [N, D] float32.
      costs: [N, M] USD.

    Returns:
      {"mean": [D], "scale": [D]} feature standardisation, "mean_cost": [M] per-model mean cost,
      "c_ref": [] mean cost of the most expensive model (the routing rule's cost normaliser).
      The scale is floored at the median per-feature std, so that a hashing feature that is almost
      always zero on train cannot become a huge input when it appears at test time.
    """
    features = jnp.asarray(features, jnp.float32)
    std = features.std(axis=0)
    floor = jnp.maximum(jnp.median(std), 1e-6)
    mean_cost = jnp.asarray(costs, jnp.float32).mean(axis=0)
    return {"mean": features.mean(axis=0), "scale": jnp.maximum(std, floor),
            "mean_cost": mean_cost, "c_ref": mean_cost.max()}


def init_params(spec: RouterSpec, key: Array, stats: dict[str, Array]) -> Params:
    """Fresh parameters {"predictor", "policy", "stats"}; stats (from `data_stats`) are data."""
    k_pred, k_pol = jax.random.split(key)
    x = jnp.zeros((1, spec.feature_dim), jnp.float32)
    if spec.folds > 1:  # one predictor per cross-fitting fold, stacked on a leading [F] axis
        pred = jax.vmap(lambda k: spec.predictor().init(k, x))(jax.random.split(k_pred, spec.folds))
    else:
        pred = spec.predictor().init(k_pred, x)
    z = jnp.zeros((1, spec.hidden), jnp.float32)
    pol = spec.policy().init(k_pol, z, jnp.zeros(()), jnp.zeros(()))
    m = spec.n_models
    calib = {"scale": jnp.ones((m,), jnp.float32), "shift": jnp.zeros((m,), jnp.float32),
             "prior_weight": jnp.zeros((m,), jnp.float32),
             "prior": jnp.zeros((max(spec.groups, 1), m), jnp.float32)}
    if spec.tasks:  # only then: a run without tasks keeps the parameter tree it always had
        calib["task_weight"] = jnp.zeros((m,), jnp.float32)
        calib["task_prior"] = jnp.zeros((spec.tasks + 1, m), jnp.float32)  # row T: unknown
    return {"predictor": pred, "policy": pol, "stats": stats, "calib": calib}


def query_groups(spec: RouterSpec, stats: Params, features: Array) -> Array:
    """[B] group of each query: its nearest centroid (cosine; stats["centroids"] [G, D]), or 0."""
    if spec.groups == 0:
        return jnp.zeros(features.shape[:1], jnp.int32)
    unit = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    c = stats["centroids"]
    # |x − c|² = 1 − 2 x·c + |c|² on unit x: the same assignment the cluster baseline makes
    return jnp.argmin((c * c).sum(axis=-1) - 2.0 * unit @ c.T, axis=-1).astype(jnp.int32)


def calibrated(calib: Params, logits: Array, prior_logits: Array,
               task_logits: Array | None = None) -> Array:
    """Per-model stacking: sigmoid(scale_m·logit_m + prior_weight_m·prior_logit_m
    [+ task_weight_m·task_logit_m] + shift_m).

    logits, prior_logits, task_logits: [..., M] (the prior is the query group's shrunk per-model
    accuracy, as a logit, zero weight without groups; the task term, present only when the
    calibration has a "task_weight", is the query's task prior deviation) -> probabilities [..., M].
    """
    x = calib["scale"] * logits + calib["prior_weight"] * prior_logits + calib["shift"]
    if "task_weight" in calib:
        x = x + calib["task_weight"] * task_logits
    return jax.nn.sigmoid(x)


def task_logits(spec: RouterSpec, calib: Params, tasks: Array | None, n: int) -> Array | None:
    """The queries' task prior deviations [n, M] (None without tasks). tasks: [n] int32 in
    [-1, T), -1 (or None: every query) for a task the training pool did not have, whose row of
    calib["task_prior"] [T + 1, M] (the last) is 0."""
    if not spec.tasks:
        return None
    tasks = jnp.full((n,), -1, jnp.int32) if tasks is None else tasks
    return calib["task_prior"][task_rows(spec, tasks)]


def task_rows(spec: RouterSpec, tasks: Array) -> Array:
    """Each query's row of a [T + 1, M] task table: tasks [n] int32 in [-1, T) -> [n], with -1
    (an unknown task) mapped to row T, the table's zero row."""
    return jnp.where(tasks < 0, spec.tasks, tasks)


def predict(spec: RouterSpec, params: Params, features: Array,
            tasks: Array | None = None) -> tuple[Array, Array, Array]:
    """features [B, D] (tasks [B] int32 or None, see `task_logits`) -> z, calibrated p_hat in
    (0, 1), log_c_hat, per predictor.

    Shapes: z [B, H], p_hat [B, M], log_c_hat [B, M] for one predictor; with `spec.folds` > 1
    every output gains a leading [F] axis (one row per cross-fitted fold predictor).
    """
    stats = params["stats"]
    x = (features - stats["mean"]) / stats["scale"]
    apply = lambda p: spec.predictor().apply(p, x)
    z, logits, log_cost = (jax.vmap(apply)(params["predictor"]) if spec.folds > 1
                           else apply(params["predictor"]))
    calib = params["calib"]
    prior = calib["prior"][query_groups(spec, stats, features)]  # [B, M]
    task = task_logits(spec, calib, tasks, features.shape[0])
    return z, calibrated(calib, logits, prior, task), log_cost


def predicted(spec: RouterSpec, params: Params, features: Array,
              tasks: Array | None = None) -> tuple[Array, Array, Array]:
    """features [B, D] (tasks [B] int32 or None) -> z, p_hat [B, M], c_hat [B, M] USD (cost
    head or static means).

    z is [B, H], or [F, B, H] for a cross-fitted ensemble, whose p_hat and c_hat are the means of
    the F fold predictors' calibrated probabilities and predicted costs.
    """
    z, p_hat, log_c = predict(spec, params, features, tasks)
    c_hat = jnp.exp(log_c)
    if spec.folds > 1:
        p_hat, c_hat = p_hat.mean(axis=0), c_hat.mean(axis=0)
    if spec.static_cost:
        c_hat = jnp.broadcast_to(params["stats"]["mean_cost"], p_hat.shape)
    return z, p_hat, c_hat


def policy_inputs(spec: RouterSpec, tau: Array, lam: Array) -> tuple[Array, Array]:
    """What the policy is shown for (τ, λ), honouring the no-τ / no-λ ablations."""
    tau_in = tau if spec.use_tau_input else jnp.zeros_like(tau)
    lam_in = lam if spec.use_lambda_input else jnp.zeros_like(lam)
    return tau_in, lam_in


def policy_beta(spec: RouterSpec, policy_params: Params, z: Array, tau: Array, lam: Array):
    """Beta parameters of the policy; the trunk output is detached (policy never trains it).

    tau and lam are the lane's true values; the ablation flags decide what the network sees.
    """
    return policy_beta_from_projection(spec, policy_params,
                                       policy_projection(spec, policy_params, z), tau, lam)


def policy_projection(spec: RouterSpec, policy_params: Params, z: Array) -> Array:
    """The policy's τ-independent z-projection [B, P] of a detached trunk output z [B, H]."""
    return spec.policy().apply(policy_params, jax.lax.stop_gradient(z),
                               method=PolicyHead.project)


def policy_beta_from_projection(spec: RouterSpec, policy_params: Params, projection: Array,
                                tau: Array, lam: Array) -> tuple[Array, Array]:
    """`policy_beta` from a precomputed `policy_projection` (shared by a step's lanes).

    projection: [B, P]; tau, lam: [] (one lane) or [B] -> alpha, beta: [B].
    """
    tau, lam = policy_inputs(spec, tau, lam)
    return spec.policy().apply(policy_params, projection, tau, lam, method=PolicyHead.head)


def policy_mean(spec: RouterSpec, policy_params: Params, z: Array, tau: Array,
                lam: Array) -> Array:
    """The deterministic quality preference μ (Beta mean): [B]; z [B, H] or [F, B, H].

    With a cross-fitted ensemble the policy was trained on each query's out-of-fold trunk
    features, so at inference it sees every fold's z and its Beta means are averaged.
    """
    def mean_of(zf):
        alpha, beta = policy_beta(spec, policy_params, zf, tau, lam)
        return alpha / (alpha + beta)

    return jax.vmap(mean_of)(z).mean(axis=0) if z.ndim == 3 else mean_of(z)


def routing_rule(mu: Array, p_hat: Array, c_hat_norm: Array) -> Array:
    """m* = argmax_m μ p̂_m − (1 − μ) ĉ_m / c_ref.

    Args:
      mu: [B] quality preference in [0, 1].
      p_hat: [B, M] predicted correctness.
      c_hat_norm: [B, M] predicted cost divided by c_ref.

    Returns:
      [B] int32 model index.
    """
    chex.assert_rank([mu, p_hat, c_hat_norm], [1, 2, 2])
    utility = mu[:, None] * p_hat - (1.0 - mu[:, None]) * c_hat_norm
    return jnp.argmax(utility, axis=-1).astype(jnp.int32)


def lambda_of_tau(lane_taus: Array, lane_lams: Array, tau: Array) -> Array:
    """λ(τ) by piecewise-linear interpolation of log(λ + ε) between lanes, constant beyond ends.

    The duals span orders of magnitude (λ ~ 0.01 at a cheap target, ~10 near the oracle) and the
    accuracy bought is roughly linear in log λ, so interpolating λ itself between two distant
    lanes would overshoot badly; log-space interpolation does not. The lanes' λ are not forced to
    be monotone: the policy also sees τ, so a lane's behaviour is set by its (τ_k, λ_k) pair.

    lane_taus: [K] increasing; lane_lams: [K] >= 0; tau: any shape -> λ of the same shape.
    """
    log_lams = jnp.log(lane_lams + _LAMBDA_EPS)
    return jnp.maximum(jnp.exp(jnp.interp(tau, lane_taus, log_lams)) - _LAMBDA_EPS, 0.0)


def route(spec: RouterSpec, params: Params, features: Array, tau: Array, lam: Array,
          tasks: Array | None = None) -> Decisions:
    """The deterministic router used at evaluation and in serving: B queries, one τ each.

    Args:
      spec: network shapes.
      params: {"predictor", "policy", "stats", "calib"} (stats["c_ref"] normalises costs).
      features: [B, D] float32.
      tau: [B] requested accuracy targets.
      lam: [B] duals λ(τ) (see `lambda_of_tau`).
      tasks: [B] int32 task indices (`task_logits`; only used when spec.tasks > 0).

    Returns:
      `Decisions` with model [B], mu [B], p_hat, c_hat [B, M], lam [B].
    """
    return route_predicted(spec, params, predicted(spec, params, features, tasks), tau, lam)


def route_predicted(spec: RouterSpec, params: Params, prediction: tuple[Array, Array, Array],
                    tau: Array, lam: Array) -> Decisions:
    """`route` given the τ-independent `predicted(spec, params, features)` = (z, p_hat, c_hat).

    Callers routing the same queries at many τ (`loop.route_grid`) predict once and map this.
    """
    z, p_hat, c_hat = prediction
    mu = policy_mean(spec, params["policy"], z, tau, lam)
    model = routing_rule(mu, p_hat, c_hat / params["stats"]["c_ref"])
    return Decisions(model=model, mu=mu, p_hat=p_hat, c_hat=c_hat, lam=lam)
