"""The predictor phase: supervised steps of trunk + heads and per-fold early stopping.

Pure functions of one run, like `proteus.training.train` (whose state, batch and hyperparameter
types they use): `predictor_step(static, state, key, batch, hp) -> (state, metrics)`. With
cross-fitting (`spec.folds` F > 1) the F stacked predictors take one step each on the same batch,
predictor f with the rows of fold f weighted 0; each early-stops on its own held-out fold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proteus.training import losses, train
from proteus.types import Array, Params


def predictor_objective(static: train.StaticConfig, params: Params, batch: train.Batch,
                        weights: Array | None = None):
    """Loss of ONE predictor (params["predictor"] unstacked) on a batch; (loss, {"bce", ...}).

    weights: [B] row weights (None: all 1), e.g. 0 for rows of the predictor's held-out fold.
    """
    stats = params["stats"]
    x = (batch.features - stats["mean"]) / stats["scale"]
    _, logits, log_cost = static.spec.predictor().apply(params["predictor"], x)
    return losses.predictor_loss(logits, log_cost, batch.scores, batch.costs, static.cost_weight,
                                 weights)


def fold_weights(fold: Array, n_folds: int, held_out: bool = False) -> Array:
    """[B] fold ids -> [F, B] weights: 1 where predictor f may fit the row (or, with held_out,
    where the row is in f's held-out fold)."""
    member = fold[None, :] == jnp.arange(n_folds)[:, None]
    return (member if held_out else ~member).astype(jnp.float32)


def predictor_step(static: train.StaticConfig, state: train.TrainState, key: Array,
                   batch: train.Batch, hp: train.HParams
                   ) -> tuple[train.TrainState, dict[str, Array]]:
    """One supervised update of trunk + heads. `key` is unused (kept for the common signature).

    Cross-fitting (`spec.folds` F > 1): the F stacked predictors take one step each on the same
    batch, predictor f with the rows of fold f weighted 0, so no predictor ever fits a label of
    its own held-out fold.
    """
    del key
    tx = train.make_optimizer(static)

    def one(pred_params, opt_state, weights):
        def loss_fn(p):
            return predictor_objective(static, {**state.params, "predictor": p}, batch, weights)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(pred_params)
        new, opt_state = train.apply_updates(tx, grads, opt_state, pred_params, hp.pred_lr)
        return new, opt_state, {"pred_loss": loss, **parts}

    if static.spec.folds > 1:
        weights = fold_weights(batch.fold, static.spec.folds)
        new_pred, pred_opt, metrics = jax.vmap(one)(state.params["predictor"], state.pred_opt,
                                                    weights)
        metrics = jax.tree.map(lambda m: m.mean(), metrics)
    else:
        new_pred, pred_opt, metrics = one(state.params["predictor"], state.pred_opt, None)
    state = state.replace(step=state.step + 1, params={**state.params, "predictor": new_pred},
                          pred_opt=pred_opt)
    return state, metrics


def held_out_loss(static: train.StaticConfig, params: Params, batch: train.Batch) -> Array:
    """Validation loss: [] for one predictor; [F] for cross-fitted ones, each on its own fold."""
    if static.spec.folds == 1:
        return predictor_objective(static, params, batch)[0]
    weights = fold_weights(batch.fold, static.spec.folds, held_out=True)
    return jax.vmap(lambda p, w: predictor_objective(
        static, {**params, "predictor": p}, batch, w)[0])(params["predictor"], weights)


def track_best_predictor(state: train.TrainState, val_loss: Array,
                         patience: int) -> train.TrainState:
    """Keep the predictor with the lowest validation loss (pure, vmappable early stopping).

    val_loss: [] or, cross-fitting, [F] (each fold predictor stops on its own held-out fold).
    """
    improved = val_loss < state.best_val
    pick = lambda new, old: jnp.where(
        improved.reshape(improved.shape + (1,) * (new.ndim - improved.ndim)), new, old)
    best = jax.tree.map(pick, state.params["predictor"], state.best_predictor)
    bad = jnp.where(improved, 0, jnp.minimum(state.bad_evals + 1, patience))
    return state.replace(best_predictor=best, best_val=jnp.minimum(val_loss, state.best_val),
                         bad_evals=bad.astype(jnp.int32))


def freeze_best_predictor(state: train.TrainState) -> train.TrainState:
    """End of the predictor phase: the policy phase runs on the best validated predictor."""
    return state.replace(params={**state.params, "predictor": state.best_predictor})
