"""Hand-checked unit tests of small proteus.training helpers that have no natural test module."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.serving import artifact
from proteus.training import columns, predictor_phase, reopen, train
from tests import core_helpers

MODELS = ("small", "large")
PRICES = {"small": (1e-7, 2e-7), "large": (3e-6, 6e-6)}


def _rows(split: str, n: int, start: int) -> RoutingDataset:
    """n rows of 2 models, every number distinct, so a row read back out of place shows."""
    ids = np.arange(start, start + n)
    return RoutingDataset(
        name=f"toy:{split}", models=MODELS,
        scores=np.stack([ids % 2, 1 - ids % 2], axis=1).astype(np.float32),
        costs=np.stack([ids * 1e-4, ids * 1e-3], axis=1).astype(np.float32),
        query_ids=np.array([f"q{i}" for i in ids]), tasks=np.array(["math", ""] * n)[:n],
        texts=np.array([f"prompt {i} é" for i in ids], object),
        features=np.stack([ids, -ids], axis=1).astype(np.float32), prices=PRICES)


def _heldout() -> reopen.HeldoutRows:
    return reopen.HeldoutRows(val=_rows("val", 2, 0), calib=_rows("calib", 1, 2),
                              pool_ids=np.array(["p0", "p1", "p2"]),
                              pool_folds=np.array([1, 0, 1]))


def _manifest(rows: reopen.HeldoutRows, **changes) -> dict:
    """The parts of an artifact manifest `read_heldout` reads."""
    manifest = {"models": list(MODELS), "heldout": rows.summary(),
                "prices": {m: {"usd_per_input_token": i, "usd_per_output_token": o}
                           for m, (i, o) in PRICES.items()},
                "training": {"dataset": "toy"}}
    manifest.update(changes)
    return manifest


def test_write_heldout_stores_val_then_calib_in_two_files(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    folder = tmp_path / artifact.HELDOUT_DIR
    queries = json.loads((folder / artifact.HELDOUT_QUERIES).read_text(encoding="utf-8"))
    assert queries == {"models": ["small", "large"], "split": ["val", "val", "calib"],
                       "query_ids": ["q0", "q1", "q2"], "tasks": ["math", "", "math"],
                       "texts": ["prompt 0 é", "prompt 1 é", "prompt 2 é"],
                       "pool_ids": ["p0", "p1", "p2"]}
    with np.load(folder / artifact.HELDOUT_ARRAYS) as arrays:
        np.testing.assert_array_equal(arrays["features"], [[0, 0], [1, -1], [2, -2]])
        np.testing.assert_array_equal(arrays["scores"], [[0, 1], [1, 0], [0, 1]])
        np.testing.assert_allclose(arrays["costs"], [[0, 0], [1e-4, 1e-3], [2e-4, 2e-3]])
        assert arrays["pool_folds"].dtype == np.int32
        np.testing.assert_array_equal(arrays["pool_folds"], [1, 0, 1])
    with pytest.raises(FileExistsError):  # never written over
        reopen.write_heldout(rows, str(tmp_path))


def test_heldout_rows_round_trip(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    back = reopen.read_heldout(str(tmp_path), _manifest(rows))
    for name in ("val", "calib"):
        want, got = getattr(rows, name), getattr(back, name)
        assert got.name == f"toy:{name}" and got.models == MODELS
        for field in ("scores", "costs", "query_ids", "tasks", "texts", "features"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field),
                                          err_msg=f"{name}.{field}")
        assert dict(got.prices) == PRICES
    np.testing.assert_array_equal(back.pool_ids, ["p0", "p1", "p2"])
    np.testing.assert_array_equal(back.pool_folds, [1, 0, 1])


def test_heldout_rows_without_texts_come_back_without_texts(tmp_path):
    rows = _heldout()
    rows = dataclasses.replace(rows, calib=dataclasses.replace(rows.calib, texts=None))
    reopen.write_heldout(rows, str(tmp_path))  # one split without texts: none are stored
    back = reopen.read_heldout(str(tmp_path), _manifest(rows))
    assert back.val.texts is None and back.calib.texts is None


def test_read_heldout_checks_the_manifest(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    assert reopen.read_heldout(str(tmp_path), _manifest(rows, heldout=None)) is None
    with pytest.raises(artifact.ArtifactError,
                       match=r"held-out rows' models \['small', 'large'\] are not the "
                             r"manifest's \['large', 'small'\]"):
        reopen.read_heldout(str(tmp_path), _manifest(rows, models=["large", "small"]))
    with pytest.raises(artifact.ArtifactError,
                       match="1 held-out calib rows, the manifest records 2"):
        reopen.read_heldout(str(tmp_path),
                            _manifest(rows, heldout={**rows.summary(), "calib": 2}))


# ------------------------------------------------- predictors whose heads output their biases


def _flat_predictors(n_folds: int, perf_bias, cost_bias, d: int = 2, h: int = 3,
                     m: int = 2) -> dict:
    """n_folds stacked predictors with every kernel 0 (so z = relu(0) = 0 on any row, and each
    head outputs its bias): perf_bias, cost_bias [F, M]; trunk biases 0."""
    dense = lambda i, o, bias: {"kernel": np.zeros((n_folds, i, o), np.float32),
                                "bias": np.asarray(bias, np.float32).reshape(n_folds, o)}
    return {"params": {"trunk_0": dense(d, h, np.zeros((n_folds, h))),
                       "trunk_1": dense(h, h, np.zeros((n_folds, h))),
                       "perf_head": dense(h, m, perf_bias), "cost_head": dense(h, m, cost_bias)}}


def _unstack(tree: dict) -> dict:
    return jax.tree.map(lambda x: x[0], tree)


_STATS = {"mean": np.zeros(2, np.float32), "scale": np.ones(2, np.float32)}


def test_held_out_loss_scores_each_fold_predictor_on_its_own_fold():
    # 4 rows of 2 models; every call costs e^1, e^2, e^3, e^0 on rows 0..3; folds 0, 1, 0, 1.
    # Perf bias 0: BCE log 2 on every cell, whatever the score. Cost head: predictor 0 predicts
    # log cost 0, predictor 1 log cost 1. cost_weight 2.
    #   predictor 0 on fold 0 (rows 0, 2): MSE (1² + 3²)/2 = 5 -> log 2 + 10
    #   predictor 1 on fold 1 (rows 1, 3): ((2 − 1)² + (0 − 1)²)/2 = 1 -> log 2 + 2
    #   (swapped folds would give (0² + 2²)/2 = 2 and (2² + 0²)/2 = 2)
    # One predictor (log cost 0) on all rows: (1 + 4 + 9 + 0)/4 = 3.5 -> log 2 + 7.
    costs = np.exp(np.array([[1.0] * 2, [2.0] * 2, [3.0] * 2, [0.0] * 2], np.float32))
    batch = train.Batch(jnp.ones((4, 2)), jnp.asarray([[1, 0], [0, 1], [1, 1], [0, 0]],
                                                      jnp.float32), jnp.asarray(costs),
                        fold=jnp.asarray([0, 1, 0, 1], jnp.int32))
    spec = core_helpers.spec_for(2, 2, hidden=3, folds=2, groups=0)
    params = {"predictor": _flat_predictors(2, np.zeros((2, 2)), [[0, 0], [1, 1]]),
              "stats": _STATS}
    held_out_loss = jax.jit(predictor_phase.held_out_loss, static_argnums=0)  # eager: 3x slower
    loss = held_out_loss(core_helpers.static_for(spec, cost_weight=2.0), params, batch)
    np.testing.assert_allclose(loss, [math.log(2) + 10, math.log(2) + 2], rtol=1e-6)
    one = {"predictor": _unstack(_flat_predictors(1, np.zeros((1, 2)), np.zeros((1, 2)))),
           "stats": _STATS}
    loss = held_out_loss(core_helpers.static_for(spec._replace(folds=1), cost_weight=2.0), one,
                         batch)
    assert loss.shape == () and float(loss) == pytest.approx(math.log(2) + 7, rel=1e-6)


def test_fit_column_fits_each_fold_predictors_head_without_its_fold():
    # The trunks output z = 0 on every row, so each head is a bias fitted to the rows outside
    # its fold: fold ids 0, 0, 1, 1, scores 0.9, 0.9, 0.5, 0.5, log costs −1, −1, −3, −3.
    #   predictor 0 (fits rows 2, 3): perf bias logit(0.5) = 0, cost bias −3;
    #   predictor 1 (fits rows 0, 1): perf bias logit(0.9) = log 9, cost bias −1.
    # Out of fold, rows 0, 1 are scored by predictor 0 (0) and rows 2, 3 by predictor 1 (log 9).
    # mean cost (2e^-1 + 2e^-3)/4; the group prior (one group) of all 4 rows: the pool's 0.7
    # shrunk to itself, logit(0.7) = log(7/3).
    spec = core_helpers.spec_for(1, 2, hidden=3, folds=2, groups=0)
    params = {"predictor": _flat_predictors(2, np.zeros((2, 1)), np.zeros((2, 1)), m=1),
              "stats": _STATS}
    features = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)), jnp.float32)
    column = columns.fit_column(spec, params, features, jnp.asarray([0.9, 0.9, 0.5, 0.5]),
                                jnp.asarray([-1.0, -1.0, -3.0, -3.0]),
                                jnp.asarray([0, 0, 1, 1], jnp.int32))
    head = "predictor/params/"
    leaves = column.leaves
    assert set(leaves) == {"calib/scale", "calib/prior_weight", "calib/shift", "calib/prior",
                           "stats/mean_cost", head + "perf_head/kernel", head + "perf_head/bias",
                           head + "cost_head/kernel", head + "cost_head/bias"}
    np.testing.assert_allclose(leaves[head + "perf_head/bias"], [[0.0], [math.log(9)]],
                               atol=1e-4)
    np.testing.assert_allclose(leaves[head + "cost_head/bias"], [[-3.0], [-1.0]], atol=1e-4)
    for name in ("perf_head/kernel", "cost_head/kernel"):
        assert leaves[head + name].shape == (2, 3, 1)
        np.testing.assert_allclose(leaves[head + name], 0.0, atol=1e-6)
    np.testing.assert_allclose(column.oof_logit, [0, 0, math.log(9), math.log(9)], atol=1e-4)
    np.testing.assert_allclose(leaves["stats/mean_cost"], [(math.exp(-1) + math.exp(-3)) / 2],
                               rtol=1e-6)
    np.testing.assert_allclose(leaves["calib/prior"], [[math.log(7 / 3)]], rtol=1e-5)
    for name in ("scale", "prior_weight", "shift"):
        assert leaves[f"calib/{name}"].shape == (1,)
    # z = 0: every ridge fits the same bias, and on a tie the first candidate is chosen
    assert float(column.perf_ridge) == float(column.cost_ridge) == pytest.approx(columns.RIDGES[0])
