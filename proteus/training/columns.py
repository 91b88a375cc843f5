"""One model's column of a trained router: the per-model parameters, kept, dropped or fitted alone.

A router's parameters hold a model axis, always the last, in exactly these leaves
(`is_model_leaf`): the fold predictors' performance and cost heads (`perf_head`, `cost_head`
kernels [F, H, M] and biases [F, M]), every calibration leaf (`calib/*`: scale, shift,
prior_weight [M], the group prior [G, M], the task prior [T + 1, M] and task_weight [M]) and the
static per-model cost (`stats/mean_cost` [M]). The trunks, the policy and the rest of `stats`
(c_ref included) do not depend on the model pool. `take_models` keeps some columns (removing a
model), `append_model` adds one (onboarding).

`fit_column` fits a new model's column the way cross-fitting fits a trained one
(`proteus.training.crossfit`), with every trunk frozen:

  1. performance head: for each fold predictor f, a ridge logistic regression of the model's
     score (soft, BCE) on f's trunk features z_f, on the rows outside fold f. The ridge is chosen
     from `RIDGES` by the out-of-fold log-loss: row i is scored by the predictor of fold(i), the
     one that did not fit it;
  2. cost head: likewise a ridge least-squares fit of log cost on z_f (or a static cost);
  3. calibration: the group and task priors out of fold and the stacking fit on the out-of-fold
     logits (`crossfit.oof_priors`, `crossfit.oof_task_priors`, `crossfit.fit_stacking`), as the
     training's calibration does for every model; the deployed priors use every row.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proteus.training import crossfit
from proteus.training.networks import RouterSpec
from proteus.types import Array, Params

RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # L2 on standardised z, in units of the mean loss
NEWTON_STEPS = 20  # at most; a ridge logistic fit converges in ~8; the line search keeps each safe
NEWTON_TOL = 1e-6  # a step moving no weight by more than this (relative) ends the fit
STEP_SIZES = (1.0, 0.5, 0.25, 0.0)  # a Newton step's line search, full step first
HEADS = ("perf_head", "cost_head")


def leaf_name(path: Sequence) -> str:
    """A parameter leaf's key path as "predictor/params/perf_head/kernel"."""
    return "/".join(str(getattr(k, "key", k)) for k in path)


def is_model_leaf(name: str) -> bool:
    """Whether the leaf `name` (`leaf_name`) has a model axis (its last): see the module doc."""
    parts = name.split("/")
    return (parts[0] == "calib" or name == "stats/mean_cost"
            or (parts[0] == "predictor" and len(parts) >= 2 and parts[-2] in HEADS))


def take_models(params: Params, keep: Sequence[int]) -> Params:
    """`params` with only the model columns `keep` ([M'] indices, in that order)."""
    keep = jnp.asarray(keep, jnp.int32)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.take(x, keep, axis=-1) if is_model_leaf(leaf_name(p)) else x, params)


def append_model(params: Params, column: Mapping[str, Array]) -> Params:
    """`params` with one more model: column[name] [..., 1] appended to each model leaf.

    Raises:
      KeyError: `column` lacks a model leaf of `params` (or has one `params` lacks).
    """
    names = {leaf_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    model_leaves = {n for n in names if is_model_leaf(n)}
    if set(column) != model_leaves:
        raise KeyError(f"a column needs exactly the model leaves {sorted(model_leaves)}; got "
                       f"{sorted(column)}")
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.concatenate([jnp.asarray(x), jnp.asarray(column[leaf_name(p)],
                                                                  x.dtype)], axis=-1)
        if is_model_leaf(leaf_name(p)) else x, params)


# ------------------------------------------------------------------ fitting one column


def _scale(z: Array, weights: Array) -> tuple[Array, Array]:
    """(mean [H], scale [H]) of z [N, H] over the weighted rows: each unit's std, floored at the
    units' root-mean-square std. A unit that barely varies on these rows (a ReLU that fires on a
    few of them) is not blown up to unit variance: its weight, divided by a tiny std, made the
    head extrapolate wildly on queries where it fires (log-cost 130 on ordinary questions after
    200 labels; the held-out log-loss 2.5 instead of 0.60)."""
    total = jnp.maximum(weights.sum(), 1.0)
    mean = weights @ z / total
    std = jnp.sqrt(weights @ (z - mean) ** 2 / total)
    return mean, jnp.maximum(std, jnp.maximum(jnp.sqrt(jnp.mean(std ** 2)), 1e-6))


def _design(z: Array, weights: Array) -> Array:
    """z [N, H] centred and scaled (`_scale`), plus a ones column: [N, H+1]."""
    mean, scale = _scale(z, weights)
    x = (z - mean) / scale
    return jnp.concatenate([x, jnp.ones_like(x[:, :1])], axis=1)


def _unstandardise(z: Array, weights: Array, theta: Array) -> tuple[Array, Array]:
    """theta [H+1] on `_design(z, weights)` -> (kernel [H], bias []) on z itself."""
    mean, scale = _scale(z, weights)
    kernel = theta[:-1] / scale
    return kernel, theta[-1] - mean @ kernel


def fit_logistic(x: Array, score: Array, weights: Array, ridge: Array) -> Array:
    """Ridge logistic regression: x [N, K] (last column ones, not penalised), soft score [N] in
    [0, 1], weights [N], ridge [] -> theta [K] minimising the weighted mean BCE + ridge/2 |w|²."""
    k = x.shape[1]
    penalty = jnp.ones(k).at[-1].set(0.0) * ridge
    total = jnp.maximum(weights.sum(), 1.0)
    sizes = jnp.asarray(STEP_SIZES, jnp.float32)

    def objective(thetas):  # [S, K] -> [S]
        z = x @ thetas.T
        nll = -(score[:, None] * jax.nn.log_sigmoid(z)
                + (1 - score[:, None]) * jax.nn.log_sigmoid(-z))
        return weights @ nll / total + 0.5 * (penalty * thetas ** 2).sum(-1)

    def step(carry):
        theta, i, _ = carry
        p = jax.nn.sigmoid(x @ theta)
        grad = x.T @ (weights * (p - score)) / total + penalty * theta
        hess = (x.T * (weights * p * (1 - p))) @ x / total + jnp.diag(penalty + 1e-6)
        candidates = theta - sizes[:, None] * jnp.linalg.solve(hess, grad)[None, :]
        values = objective(candidates)  # the last candidate (size 0) is theta itself
        new = candidates[jnp.argmax(values <= values[-1])]
        return new, i + 1, jnp.max(jnp.abs(new - theta)) > NEWTON_TOL * (1 + jnp.max(jnp.abs(new)))

    # Stops once a step no longer moves theta (float noise): most fits need 4-8 steps, and
    # onboarding fits one column per cross-fitting fold besides the deployed one.
    theta, _, _ = jax.lax.while_loop(lambda c: (c[1] < NEWTON_STEPS) & c[2], step,
                                     (jnp.zeros(k), jnp.int32(0), jnp.bool_(True)))
    return theta


def fit_ridge(x: Array, target: Array, weights: Array, ridge: Array) -> Array:
    """Ridge least squares: x [N, K] (last column ones, not penalised), target [N], weights [N],
    ridge [] -> theta [K] minimising the weighted mean squared error + ridge/2 |w|²."""
    penalty = jnp.ones(x.shape[1]).at[-1].set(0.0) * ridge
    total = jnp.maximum(weights.sum(), 1.0)
    lhs = (x.T * weights) @ x / total + jnp.diag(penalty + 1e-6)
    return jnp.linalg.solve(lhs, x.T @ (weights * target) / total)


def bce_loss(logit: Array, score: Array, weights: Array) -> Array:
    """The weighted mean binary cross-entropy of logits [N] against soft scores [N]: []."""
    nll = -(score * jax.nn.log_sigmoid(logit) + (1 - score) * jax.nn.log_sigmoid(-logit))
    return weights @ nll / jnp.maximum(weights.sum(), 1.0)


def mse_loss(prediction: Array, target: Array, weights: Array) -> Array:
    """The weighted mean squared error of predictions [N] against targets [N]: []."""
    return weights @ (prediction - target) ** 2 / jnp.maximum(weights.sum(), 1.0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def fit_head(fit, loss, z: Array, target: Array, fold: Array, ridges: Array,
             keep: Array) -> tuple[Array, Array, Array, Array]:
    """One head column per fold predictor, its ridge chosen out of fold.

    Args:
      fit: `fit_logistic` or `fit_ridge`; loss: (prediction [N], target [N], weights [N]) -> [].
      z: [F, N, H] every fold predictor's trunk features of the rows; target: [N];
      fold: [N] int32 in [0, F); ridges: [R] candidate ridges; keep: [N] 1 for the rows to fit
        on, 0 for rows to ignore (one compiled fit serves every subset of the same rows).

    Returns:
      kernel [F, H], bias [F], the out-of-fold prediction [N] (row i by fold(i)'s predictor,
      fitted without it; ignored rows are predicted too), and the chosen ridge [].
    """
    n_folds = z.shape[0]
    weights = (fold[None, :] != jnp.arange(n_folds)[:, None]) * keep[None, :]  # [F, N]

    def per_fold(zf, w, ridge):
        kernel, bias = _unstandardise(zf, w, fit(_design(zf, w), target, w, ridge))
        return kernel, bias, zf @ kernel + bias  # [H], [], [N] (every row)

    kernels, biases, preds = jax.vmap(lambda r: jax.vmap(
        lambda zf, w: per_fold(zf, w, r))(z, weights))(ridges)  # [R, F, H], [R, F], [R, F, N]
    oof = preds[:, fold, jnp.arange(fold.shape[0])]  # [R, N]
    best = jnp.argmin(jax.vmap(lambda p: loss(p, target, keep))(oof))
    return kernels[best], biases[best], oof[best], ridges[best]


class Column(NamedTuple):
    """A fitted column: `leaves` for `append_model`, and what was chosen (for the lineage)."""

    leaves: dict[str, Array]
    perf_ridge: Array  # []
    cost_ridge: Array  # [] (NaN for a static cost)
    oof_logit: Array  # [N] out-of-fold performance logits of the rows (kept or not)


@functools.partial(jax.jit, static_argnums=0)
def fit_column(spec: RouterSpec, params: Params, features: Array, scores: Array,
               log_costs: Array | None, fold: Array, tasks: Array | None = None,
               static_log_cost: Array | None = None, keep: Array | None = None) -> Column:
    """A new model's column on the frozen trunks of `params` (the module docstring's three steps).

    Args:
      spec: the router's networks (spec.folds F > 1: cross-fitted fold predictors).
      params: its parameters (any model count; their trunks and stats are read).
      features: [N, D] the model's labelled training queries; scores: [N] in [0, 1];
      log_costs: [N] log USD of each call, or None with `static_log_cost` [] (a price estimate).
      fold: [N] int32 in [0, F) the fold each row is held out of.
      tasks: [N] int32 in [-1, T) (read only when spec.tasks > 0).
      keep: [N] 1 for the rows to fit on, 0 for rows to ignore (None: every row); fits on
        subsets of the same rows then share one compiled program.

    Returns:
      `Column` whose leaves carry a trailing model axis of size 1.
    """
    keep = jnp.ones(scores.shape, jnp.float32) if keep is None else keep.astype(jnp.float32)
    z, _, _ = crossfit.raw_outputs(spec, params, features)  # [F, N, H]
    ridges = jnp.asarray(RIDGES, jnp.float32)
    kernel, bias, oof_logit, perf_ridge = fit_head(fit_logistic, bce_loss, z, scores, fold,
                                                   ridges, keep)
    if log_costs is None:  # a static cost: the cost head outputs it for every query
        c_kernel, c_bias = jnp.zeros_like(kernel), jnp.full_like(bias, static_log_cost)
        cost_ridge, mean_cost = jnp.float32(jnp.nan), jnp.exp(static_log_cost)
    else:
        c_kernel, c_bias, _, cost_ridge = fit_head(fit_ridge, mse_loss, z, log_costs, fold,
                                                   ridges, keep)
        mean_cost = keep @ jnp.exp(log_costs) / jnp.maximum(keep.sum(), 1.0)
    one = scores[:, None]  # [N, 1]: the crossfit functions' [N, M] with M = 1
    prior_oof, prior = crossfit.oof_priors(spec, params, features, one, fold, keep)
    task_oof = None
    leaves = {}
    if spec.tasks:
        task_oof, leaves["calib/task_prior"] = crossfit.oof_task_priors(spec, one, tasks, fold,
                                                                        keep)
    stacking = crossfit.fit_stacking(oof_logit[:, None], prior_oof, one, keep, task_oof)
    head = "predictor/params/"
    leaves.update({f"calib/{k}": v for k, v in stacking.items()})
    leaves.update({"calib/prior": prior, "stats/mean_cost": mean_cost[None],
                   head + "perf_head/kernel": kernel[..., None],
                   head + "perf_head/bias": bias[:, None],
                   head + "cost_head/kernel": c_kernel[..., None],
                   head + "cost_head/bias": c_bias[:, None]})
    return Column(leaves, perf_ridge, cost_ridge, oof_logit)
