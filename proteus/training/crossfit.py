"""Cross-fitting: out-of-fold predictor outputs and per-model probability calibration.

With F folds over the training pool, predictor f is trained on every fold but f
(`predictor_phase.predictor_step` weights fold f's rows 0). Each pool query's out-of-fold
(OOF) outputs come from the one predictor that never fitted its label, so the policy and its
duals learn on predictions as good as those on unseen queries (DESIGN.md section 3, "held-out
signal"), while every label still trains F − 1 predictors. The deployed predictor is the fold
ensemble (`networks.predicted` averages the F calibrated probabilities and costs): it needs no
refit, and the policy sees at inference the same kind of trunk features it was trained on, one
fold's at a time (`networks.policy_mean`).

Calibration is a per-model stacking, sigmoid(a_m · logit + b_m · prior_logit + c_m), fitted on
the OOF logits. The prior is the model's accuracy within the query's group (`spec.groups` k-means
clusters of the features, fixed before any label is read), shrunk toward its pool-wide accuracy
by `PRIOR_COUNT` pseudo-queries; out of fold it is computed without the row's own fold. A slope
a_m < 1 shrinks a model's per-query predictions toward that group prior where they carry little
signal: the cure for the winner's curse, where argmax over M noisy p̂ picks the lucky model.

Where the data has a task column and `spec.tasks` > 0, a fourth term t_m · task_logit enters:
the model's shrunk accuracy on the query's task as a logit minus its pool-wide one
(`task_prior`), so a task the pool never had contributes 0. It is fitted out of fold like the
group prior; serving then needs each query's task (DESIGN.md's task column).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from proteus.training.networks import RouterSpec, calibrated, query_groups, task_rows
from proteus.types import Array, Params

PLATT_RIDGE = 1e-3  # L2 on (a − 1, b, c): keeps the fit finite for separable or constant scores
PLATT_ITERS = 25  # Newton steps (quadratic convergence; 25 is far more than needed)
PRIOR_COUNT = 10.0  # pseudo-queries at the pool-wide accuracy in each group's prior
PRIOR_CLIP = 1e-3  # priors are clipped to [c, 1 − c] before the logit


def raw_outputs(spec: RouterSpec, params: Params, features: Array) -> tuple[Array, Array, Array]:
    """Every fold predictor on every row: z [F, N, H], logits [F, N, M], log cost [F, N, M]."""
    stats = params["stats"]
    x = (features - stats["mean"]) / stats["scale"]
    return jax.vmap(lambda p: spec.predictor().apply(p, x))(params["predictor"])


def out_of_fold(spec: RouterSpec, params: Params, features: Array,
                fold: Array) -> tuple[Array, Array, Array]:
    """Each row's outputs from the predictor that held its fold out.

    Args:
      features: [N, D]; fold: [N] int32 in [0, F).

    Returns:
      z [N, H], logits [N, M], log cost [N, M].
    """
    z, logits, log_cost = raw_outputs(spec, params, features)
    rows = jnp.arange(features.shape[0])
    return z[fold, rows], logits[fold, rows], log_cost[fold, rows]


def group_prior(scores: Array, groups: Array, weights: Array, n_groups: int) -> Array:
    """Shrunk per-(group, model) accuracy as logits [G, M].

    Args:
      scores: [N, M]; groups: [N] int32 in [0, G); weights: [N] 1 for rows that may be used.
    """
    member = jax.nn.one_hot(groups, n_groups) * weights[:, None]  # [N, G]
    overall = weights @ scores / jnp.maximum(weights.sum(), 1.0)  # [M]
    p = (member.T @ scores + PRIOR_COUNT * overall) / (member.sum(0)[:, None] + PRIOR_COUNT)
    p = jnp.clip(p, PRIOR_CLIP, 1.0 - PRIOR_CLIP)
    return jnp.log(p) - jnp.log1p(-p)


def task_prior(scores: Array, tasks: Array, weights: Array, n_tasks: int) -> Array:
    """[T + 1, M]: each task's shrunk accuracy logit (`group_prior`) minus the pool-wide accuracy
    logit, from the rows with weight 1 and a known task; the last row (an unknown task) is 0.

    Args:
      scores: [N, M]; tasks: [N] int32 in [-1, T) (-1 unknown); weights: [N].
    """
    known = weights * (tasks >= 0)
    table = group_prior(scores, jnp.maximum(tasks, 0), known, n_tasks)  # [T, M]
    overall = jnp.clip(known @ scores / jnp.maximum(known.sum(), 1.0), PRIOR_CLIP,
                       1.0 - PRIOR_CLIP)
    deviation = table - (jnp.log(overall) - jnp.log1p(-overall))[None, :]
    return jnp.concatenate([deviation, jnp.zeros((1, scores.shape[1]), deviation.dtype)])


def oof_task_priors(spec: RouterSpec, scores: Array, tasks: Array, fold: Array,
                    weights: Array | None = None) -> tuple[Array, Array]:
    """Task prior deviations: (out of fold [N, M], from every row [T + 1, M]); row i's comes from
    the rows outside fold(i). scores [N, M], tasks [N] int32 in [-1, T), fold [N]; weights [N]
    (None: all 1; a row of weight 0 enters no table)."""
    in_fold = (fold[None, :] != jnp.arange(spec.folds)[:, None]).astype(jnp.float32)  # [F, N]
    everyone = jnp.ones(fold.shape, jnp.float32)
    if weights is not None:
        in_fold, everyone = in_fold * weights[None, :], weights
    tables = jax.vmap(lambda w: task_prior(scores, tasks, w, spec.tasks))(
        in_fold)  # [F, T + 1, M]
    everyone = task_prior(scores, tasks, everyone, spec.tasks)
    return tables[fold, task_rows(spec, tasks)], everyone


STEP_SIZES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0)  # a Newton step's line search, full step first
MAX_STEP = 2.0  # longest Newton step (Euclidean, in theta's units: a trust region)
OBJECTIVE_SLACK = 1e-6  # a step may raise the objective by this (relative): float32 noise


def _fit_one(x: Array, score: Array, weights: Array) -> Array:
    """Weighted Newton fit of sigmoid(x @ theta) for one model: x [N, K] (first column the model's
    logit), soft score [N], weights [N] -> theta [K], pulled toward (1, 0, ..., 0) by the ridge.

    Each Newton step is at most `MAX_STEP` long and taken at the largest size in `STEP_SIZES`
    that does not raise the objective (0 is the last), so it never rises beyond float noise
    (`OBJECTIVE_SLACK`): full Newton steps diverge when
    the held-out logits are weak and large (the Hessian is then ~0; a smoke run's hashing
    features drove the scale to −1000).
    """
    k = x.shape[-1]
    start = jnp.zeros(k).at[0].set(1.0)  # the ridge pulls toward the identity map
    total = jnp.maximum(weights.sum(), 1.0)
    sizes = jnp.asarray(STEP_SIZES, jnp.float32)

    def objective(theta):  # weighted mean log-loss + ridge, for [S, K] candidate thetas
        z = x @ theta.T  # [N, S]
        nll = -(score[:, None] * jax.nn.log_sigmoid(z) + (1 - score[:, None]) *
                jax.nn.log_sigmoid(-z))
        return weights @ nll / total + 0.5 * PLATT_RIDGE * ((theta - start) ** 2).sum(-1)

    def step(theta, _):
        p = jax.nn.sigmoid(x @ theta)
        grad = x.T @ (weights * (p - score)) / total + PLATT_RIDGE * (theta - start)
        hess = (x.T * (weights * p * (1 - p))) @ x / total + PLATT_RIDGE * jnp.eye(k)
        direction = jnp.linalg.solve(hess, grad)
        direction *= jnp.minimum(1.0, MAX_STEP / jnp.maximum(jnp.linalg.norm(direction), 1e-12))
        candidates = theta - sizes[:, None] * direction[None, :]  # [S, K]
        values = objective(candidates)  # the last candidate (size 0) is theta itself
        # The first (largest) size that does not raise the objective beyond float noise: near
        # convergence that is always the full step, so the fit stays a smooth function of its
        # inputs (an argmin over sizes would flip between near-equal values on rounding).
        ok = values <= values[-1] + OBJECTIVE_SLACK * (1.0 + jnp.abs(values[-1]))
        return candidates[jnp.argmax(ok)], None

    theta, _ = jax.lax.scan(step, start, None, length=PLATT_ITERS)
    return theta


@jax.jit
def fit_columns(columns: Array, scores: Array, weights: Array | None = None) -> Array:
    """Per-model stacking of K columns: columns [N, M, K] (column 0 the logit), scores [N, M] in
    [0, 1], weights [N] (None: all 1) -> theta [M, K] of sigmoid(columns[:, m] @ theta[m])."""
    weights = jnp.ones(scores.shape[:1], jnp.float32) if weights is None else weights
    return jax.vmap(_fit_one, in_axes=(1, 1, None))(columns, scores, weights)


@jax.jit
def fit_stacking(logits: Array, prior_logits: Array, scores: Array,
                 weights: Array | None = None, task_logits: Array | None = None) -> Params:
    """Per-model calibration on held-out rows.

    Args:
      logits: [N, M] raw correctness logits (out of fold); prior_logits: [N, M] the rows' group
        priors (out of fold); scores: [N, M] in [0, 1]; weights: [N] (None: all 1);
      task_logits: [N, M] the rows' task prior deviations (out of fold), or None.

    Returns:
      {"scale", "prior_weight", "shift"} (and "task_weight" with task_logits): [M] each, for
      `networks.calibrated`.
    """
    extra = [] if task_logits is None else [task_logits]
    columns = jnp.stack([logits, prior_logits, jnp.ones_like(logits), *extra], axis=-1)
    theta = fit_columns(columns, scores, weights)  # [M, 3] or [M, 4]
    out = {"scale": theta[:, 0], "prior_weight": theta[:, 1], "shift": theta[:, 2]}
    if task_logits is not None:
        out["task_weight"] = theta[:, 3]
    return out


def oof_priors(spec: RouterSpec, params: Params, features: Array, scores: Array,
               fold: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """Group priors: (out of fold [N, M], from every row [G, M]), as logits.

    Row i's prior comes from the table of the rows outside fold(i), so its own label is not in it.
    weights [N] (None: all 1): a row of weight 0 enters no table.
    """
    n_groups = max(spec.groups, 1)
    groups = query_groups(spec, params["stats"], features)
    in_fold = (fold[None, :] != jnp.arange(spec.folds)[:, None]).astype(jnp.float32)  # [F, N]
    everyone = jnp.ones(fold.shape, jnp.float32)
    if weights is not None:
        in_fold, everyone = in_fold * weights[None, :], weights
    tables = jax.vmap(lambda w: group_prior(scores, groups, w, n_groups))(in_fold)  # [F, G, M]
    everyone = group_prior(scores, groups, everyone, n_groups)
    return tables[fold, groups], everyone


@functools.partial(jax.jit, static_argnums=0)
def calibrate_and_predict(spec: RouterSpec, params: Params, features: Array, scores: Array,
                          fold: Array, tasks: Array | None = None,
                          ) -> tuple[Params, tuple[Array, Array, Array]]:
    """Fit the calibration on the OOF logits; return it and the OOF z, p_hat, c_hat.

    Args:
      params: one run's parameters with F stacked fold predictors.
      features: [N, D], scores: [N, M], fold: [N] of the training pool; tasks: [N] int32 in
        [-1, T) (read only when spec.tasks > 0).

    Returns:
      (calibration {"scale", "prior_weight", "shift"} [M], "prior" [G, M], with tasks also
      "task_weight" [M] and "task_prior" [T + 1, M]),
      (z [N, H], p_hat [N, M] calibrated, c_hat [N, M] USD)).
    """
    z, logits, log_cost = out_of_fold(spec, params, features, fold)
    prior_oof, table = oof_priors(spec, params, features, scores, fold)
    task_oof = None
    calib = {"prior": table}
    if spec.tasks:
        task_oof, calib["task_prior"] = oof_task_priors(spec, scores, tasks, fold)
    calib.update(fit_stacking(logits, prior_oof, scores, None, task_oof))
    # The policy's inputs: row i is calibrated by a stacking fitted with fold(i)'s rows weighted
    # 0 (the deployed calibration uses every row). Its own label thus enters neither its
    # predictor, nor its group prior, nor its calibration's fit; it reaches the fit only second
    # hand, through the other folds' OOF predictions, whose predictors trained on it.
    in_fold = fold[None, :] != jnp.arange(spec.folds)[:, None]  # [F, N]
    per_fold = jax.vmap(lambda w: fit_stacking(logits, prior_oof, scores, w.astype(jnp.float32),
                                               task_oof))(in_fold)  # [F, M] leaves
    p_hat = calibrated(jax.tree.map(lambda leaf: leaf[fold], per_fold), logits, prior_oof,
                       task_oof)
    c_hat = jnp.exp(log_cost)
    if spec.static_cost:
        c_hat = jnp.broadcast_to(params["stats"]["mean_cost"], p_hat.shape)
    return calib, (z, p_hat, c_hat)
