"""Held-out evidence on the training pool: what a router of these fold predictors would do on
queries whose labels none of its parts fitted, measured without `val`, `calib` or `test`.

The policy phase trains on out-of-fold (OOF) calibrated predictions (`crossfit.calibrate_and_
predict`): row i's p̂ comes from the fold predictor that never fitted it, with group (and task)
priors and a calibration fitted without its fold. `oof_evidence` measures exactly those
predictions on the pool's own labels:

- the plug-in AIQ (`plugin_aiq`): the AIQ of argmax_m λ·p̂_m − ĉ_m/c_ref over a fine λ grid,
  the hull taken with every single model, the criterion of `benchmarks/task_prior_probe.py`;
- the per-model AUC and the log loss of p̂;
- the accuracy range the plug-in rule and the single models reach (`reach`).

`proteus.pipeline.auto` decides the automatic settings from these numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from proteus.data.dataset import RoutingDataset
from proteus.evaluation import metrics
from proteus.evaluation.baselines import plugin
from proteus.evaluation.predictor_quality import predictor_quality
from proteus.training import crossfit
from proteus.training.networks import RouterSpec
from proteus.types import Params

# λ of the plug-in rule: 0 (cheapest by prediction), 600 log-spaced values, ∞ (argmax p̂)
LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 600), [np.inf]])
_EPS = 1e-6  # p̂ is clipped to [eps, 1 − eps] in the log loss


class Evidence(NamedTuple):
    """One calibration's OOF numbers on the pool (floats, so they go into JSON as they are)."""

    plugin_aiq: float  # AIQ of the plug-in points and every single model
    mean_auc: float  # mean per-model AUC of p̂ (scores >= 0.5 as positives)
    log_loss: float  # mean binary cross-entropy of p̂ against the soft scores
    reach_lo: float  # accuracy of the cheapest single model (the router's τ = 0 end)
    reach_hi: float  # highest accuracy of a plug-in point or a single model


def plugin_points(p_hat: np.ndarray, c_hat: np.ndarray, scores: np.ndarray, costs: np.ndarray,
                  c_ref: float) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy [P], cost [P]) of the plug-in rule at every λ of `LAMBDAS`, then of every single
    model, realised on these rows. p_hat, c_hat, scores, costs: [N, M]."""
    choices = plugin.plugin_choices(p_hat, c_hat, LAMBDAS, c_ref)
    acc, cost = metrics.realised(scores, costs, choices)
    return (np.concatenate([acc, scores.mean(axis=0, dtype=np.float64)]),
            np.concatenate([cost, costs.mean(axis=0, dtype=np.float64)]))


def plugin_aiq(p_hat: np.ndarray, c_hat: np.ndarray, scores: np.ndarray, costs: np.ndarray,
               c_ref: float) -> float:
    """AIQ of `plugin_points`, costs normalised between the cheapest and dearest single model on
    these rows (as the evaluation does on test)."""
    acc, cost = plugin_points(p_hat, c_hat, scores, costs, c_ref)
    means = costs.mean(axis=0, dtype=np.float64)
    return metrics.aiq(cost, acc, (float(means.min()), float(means.max())))


def log_loss(p_hat: np.ndarray, scores: np.ndarray) -> float:
    """Mean binary cross-entropy of p_hat [N, M] against soft scores [N, M] in [0, 1]."""
    p = np.clip(np.asarray(p_hat, np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(scores, np.float64)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def oof_evidence(spec: RouterSpec, params: Params, pool: RoutingDataset, fold: np.ndarray,
                 tasks: np.ndarray | None = None) -> Evidence:
    """The OOF evidence of one run's fold predictors on the training pool.

    Args:
      spec: the run's networks; `spec.tasks` > 0 adds the task term to the calibration (then
        `tasks` is needed).
      params: one run's parameters (F stacked fold predictors, the phase's frozen best).
      pool: the training pool (`setup.training_pool`), features encoded; fold: [N] int32.
      tasks: [N] int32 task indices in [-1, T) (`dataset.task_index`), or None.

    Returns:
      `Evidence` of the calibrated OOF predictions the policy phase would train on.
    """
    scores = np.asarray(pool.scores, np.float64)
    _, (_, p_hat, c_hat) = crossfit.calibrate_and_predict(
        spec, params, jnp.asarray(pool.features, jnp.float32), jnp.asarray(scores, jnp.float32),
        jnp.asarray(fold, jnp.int32), None if tasks is None else jnp.asarray(tasks, jnp.int32))
    p_hat, c_hat = np.asarray(p_hat, np.float64), np.asarray(c_hat, np.float64)
    c_ref = float(np.asarray(params["stats"]["c_ref"]))
    acc, _ = plugin_points(p_hat, c_hat, scores, pool.costs, c_ref)
    cheapest = int(np.argmin(pool.costs.mean(axis=0, dtype=np.float64)))
    return Evidence(
        plugin_aiq=plugin_aiq(p_hat, c_hat, scores, pool.costs, c_ref),
        mean_auc=float(predictor_quality(p_hat, scores, pool.models)["mean_auc"]),
        log_loss=log_loss(p_hat, scores),
        reach_lo=float(scores[:, cheapest].mean()), reach_hi=float(acc.max()))
