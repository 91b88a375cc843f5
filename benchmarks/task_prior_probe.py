"""Would a per-task prior help PROTEUS's predictor? A probe on a trained workdir that never reads
the test split.

    python benchmarks/task_prior_probe.py --workdir=runs/mmlu_pro

The shared predictor is calibrated per model as sigmoid(a·logit + b·group_prior + c)
(`proteus.training.crossfit`). The probe adds a third term t·task_prior (`crossfit.task_prior`:
the task's accuracy of the model, shrunk toward its pool-wide accuracy by `crossfit.PRIOR_COUNT`
pseudo-queries, as a logit minus the pool-wide one, so a task the pool has not seen contributes
0), the term `model.task_prior` puts in the trained calibration. It looks at the workdir's raw
fold predictors only (whatever its calibration) and prints, for the calibration without and
with the term, the AIQ of the plug-in curve (argmax λ·p̂ − ĉ/c_ref over a
fine λ grid, the hull taken with every single model):

- out of fold on the training pool: each row's predictor, group prior, task prior and
  calibration are all fitted without its fold's labels;
- on `val`: both calibrations fitted on the whole pool, applied to the fold ensemble as deployed.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runs
from proteus.data.dataset import task_index, task_vocabulary
from proteus.evaluation import metrics
from proteus.evaluation.baselines import plugin
from proteus.pipeline.setup import training_pool
from proteus.training import crossfit, networks

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 600), [np.inf]])


def plugin_aiq(p_hat: np.ndarray, c_hat: np.ndarray, scores: np.ndarray, costs: np.ndarray,
               c_ref: float) -> float:
    """AIQ of the plug-in rule's points over `LAMBDAS` and every single model, on these rows."""
    choices = plugin.plugin_choices(p_hat, c_hat, LAMBDAS, c_ref)
    acc, cost = metrics.realised(scores, costs, choices)
    means = costs.mean(axis=0)
    return metrics.aiq(np.concatenate([cost, means]), np.concatenate([acc, scores.mean(axis=0)]),
                       (float(means.min()), float(means.max())))


def calibrate(columns: jax.Array, theta: jax.Array) -> np.ndarray:
    """sigmoid(Σ_k theta[m, k]·columns[n, m, k]): columns [N, M, K], theta [M, K] -> [N, M]."""
    return np.asarray(jax.nn.sigmoid(jnp.einsum("nmk,mk->nm", columns, theta)))


def probe(workdir: str) -> dict[str, float]:
    """{"pool_without", "pool_with", "val_without", "val_with"}: plug-in AIQs (run 0)."""
    run = runs.load_trained(workdir)
    config, splits, setup = run.config, run.splits, run.setup
    spec, params = setup.static.spec, run.run(0).params
    pool, fold = training_pool(splits, config.train.folds, config.data.split_salt)
    names = task_vocabulary(pool.tasks)
    tasks = task_index(names, pool.tasks)
    features, scores = jnp.asarray(pool.features, jnp.float32), pool.scores.astype(np.float64)
    _, logits, log_cost = crossfit.out_of_fold(spec, params, features, jnp.asarray(fold))
    group_oof, group_table = crossfit.oof_priors(spec, params, features,
                                                 jnp.asarray(scores, jnp.float32),
                                                 jnp.asarray(fold))
    task_oof, task_table = crossfit.oof_task_priors(
        spec._replace(tasks=len(names)), jnp.asarray(scores, jnp.float32), jnp.asarray(tasks),
        jnp.asarray(fold))  # whatever the workdir's own model.task_prior
    ones = np.ones_like(scores)
    pool_cols = {"without": jnp.stack([logits, group_oof, ones], -1),  # [N, M, K]
                 "with": jnp.stack([logits, group_oof, task_oof, ones], -1)}
    target = jnp.asarray(scores, jnp.float32)
    c_ref = float(np.asarray(params["stats"]["c_ref"]))
    out = {}
    for name, cols in pool_cols.items():
        p_hat = np.zeros_like(scores)
        for f in range(config.train.folds):
            rows = fold == f
            theta = crossfit.fit_columns(cols, target, jnp.asarray(~rows, jnp.float32))
            p_hat[rows] = calibrate(cols, theta)[rows]
        out[f"pool_{name}"] = plugin_aiq(p_hat, np.exp(np.asarray(log_cost)), scores,
                                         pool.costs, c_ref)
    val = splits["val"]
    val_features = jnp.asarray(val.features, jnp.float32)
    _, val_logits, val_log_cost = crossfit.raw_outputs(spec, params, val_features)  # [F, N, M]
    group_val = np.asarray(group_table)[np.asarray(networks.query_groups(
        spec, params["stats"], val_features))]
    task_val = np.asarray(task_table)[np.asarray(networks.task_rows(
        spec._replace(tasks=len(names)), jnp.asarray(task_index(names, val.tasks))))]
    for name, cols in pool_cols.items():
        theta = crossfit.fit_columns(cols, target)
        extra = [task_val] if name == "with" else []
        per_fold = [calibrate(jnp.stack([lg, group_val, *extra, np.ones_like(group_val)], -1),
                              theta) for lg in val_logits]
        out[f"val_{name}"] = plugin_aiq(np.mean(per_fold, axis=0),
                                        np.exp(np.asarray(val_log_cost)).mean(axis=0),
                                        val.scores, val.costs, c_ref)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished, cross-fitted workdir")
    args = parser.parse_args()
    out = probe(args.workdir)
    print(f"plug-in AIQ without / with the task prior: out of fold on the pool "
          f"{out['pool_without']:.4f} / {out['pool_with']:.4f}; on val "
          f"{out['val_without']:.4f} / {out['val_with']:.4f}")


if __name__ == "__main__":
    main()
