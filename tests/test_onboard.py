"""Onboarding and removing a model without retraining (issue 30; `proteus.training.columns`,
`proteus.training.reopen`, `proteus.pipeline.onboarding`).

Hand-checked pieces (the column fits on known trunk features, the per-model leaves, the manifest
lineage, removal) and one end-to-end smoke: a router trained on synthetic data without a model
(`data.exclude_models`), exported with its held-out rows, the model onboarded from its labels,
the new artifact loaded and routed.
"""

import dataclasses
import datetime
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import quickstart
from proteus import pipeline
from proteus.data.dataset import concatenate
from proteus.data.labels import ModelLabels, labels_from_records, read_labels, write_jsonl
from proteus.pipeline import onboarding, routing, transfer
from proteus.serving import Router, finite_rows
from proteus.training import columns, networks, reopen

LEFT_OUT = "gpt-4-1106-preview"


# ------------------------------------------------------------------ the column fits, by hand


def test_logistic_and_ridge_with_only_a_bias_fit_the_mean():
    score = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.5])
    ones = jnp.ones((5, 1))
    theta = columns.fit_logistic(ones, score, jnp.ones(5), jnp.float32(10.0))  # bias unpenalised
    assert float(theta[0]) == pytest.approx(np.log(0.7 / 0.3), abs=1e-4)
    assert float(columns.fit_ridge(ones, score, jnp.ones(5), jnp.float32(1.0))[0]) == (
        pytest.approx(0.7, abs=1e-5))


def test_logistic_fit_is_a_stationary_point_of_its_objective():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(300, 3)), np.ones((300, 1))], axis=1)
    score = (rng.uniform(size=300) < 1 / (1 + np.exp(-x @ [2.0, -1.0, 0.0, 0.5]))).astype(float)
    w, ridge = rng.uniform(0.5, 1.5, 300), 0.01
    theta = np.asarray(columns.fit_logistic(jnp.asarray(x, jnp.float32), jnp.asarray(score),
                                            jnp.asarray(w, jnp.float32), jnp.float32(ridge)))
    p = 1 / (1 + np.exp(-x @ theta))
    grad = x.T @ (w * (p - score)) / w.sum() + ridge * np.append(theta[:-1], 0.0)
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    assert theta[0] > 1.0 and theta[1] < -0.5  # the signs of the true weights


def test_head_column_on_known_trunk_features_is_fitted_out_of_fold():
    """z [F, N, H] known: each fold's column recovers the logistic weights, and a row's
    out-of-fold logit does not move when its own fold's labels change."""
    rng = np.random.default_rng(1)
    n_folds, n, h = 3, 1200, 4
    z = rng.normal(size=(n_folds, n, h)).astype(np.float32)  # every fold predictor's trunk
    truth = np.asarray([1.5, -1.0, 0.0, 0.5], np.float32)
    score = (rng.uniform(size=n) < 1 / (1 + np.exp(-(z[0] @ truth - 0.3)))).astype(np.float32)
    fold = (np.arange(n) % n_folds).astype(np.int32)
    ridge = jnp.asarray([1e-3])
    every = np.ones(n)
    fit = lambda s, keep=every: columns.fit_head(
        columns.fit_logistic, columns.bce_loss, jnp.asarray(z), jnp.asarray(s), jnp.asarray(fold),
        ridge, jnp.asarray(keep, jnp.float32))
    kernel, bias, oof, _ = fit(score)
    # fold 0's column is fitted on folds 1 and 2, where z[0] carries the signal
    np.testing.assert_allclose(kernel[0], truth, atol=0.25)
    assert float(bias[0]) == pytest.approx(-0.3, abs=0.2)
    np.testing.assert_allclose(oof, np.einsum("nh,nh->n", z[fold, np.arange(n)],
                                              np.asarray(kernel)[fold]) + np.asarray(bias)[fold],
                               rtol=1e-4, atol=1e-4)
    flipped = np.where(fold == 0, 1.0 - score, score)
    _, _, oof2, _ = fit(flipped)
    np.testing.assert_allclose(oof2[fold == 0], oof[fold == 0], atol=1e-5)  # its own fold
    assert not np.allclose(oof2[fold == 1], oof[fold == 1])  # the others saw the change
    # rows weighted 0 are not fitted on: the same fit as on the other rows alone
    keep = np.arange(n) >= 300
    subset = columns.fit_head(columns.fit_logistic, columns.bce_loss, jnp.asarray(z[:, keep]),
                              jnp.asarray(score[keep]), jnp.asarray(fold[keep]), ridge,
                              jnp.ones(int(keep.sum()), jnp.float32))
    weighted = fit(np.where(keep, score, 1.0 - score), keep)  # the dropped rows' labels flipped
    np.testing.assert_allclose(weighted[0], subset[0], atol=1e-4)
    np.testing.assert_allclose(weighted[2][keep], subset[2], atol=1e-4)


def test_a_unit_that_barely_varies_does_not_blow_up_the_head():
    """A trunk unit that fires faintly on one training row (a rare ReLU) is scaled like the
    others, not to unit variance: its weight stays small, so a query where it fires does not get
    an extreme prediction (before, 200 labels gave ordinary questions a log-cost of 130)."""
    rng = np.random.default_rng(2)
    n_folds, n, h = 2, 200, 8
    z = np.abs(rng.normal(size=(n_folds, n, h))).astype(np.float32)
    z[:, :, -1] = 0.0
    z[:, 0, -1] = 1e-3
    target = rng.normal(size=n).astype(np.float32)
    fold = (np.arange(n) % n_folds).astype(np.int32)
    kernel, _, _, _ = columns.fit_head(columns.fit_ridge, columns.mse_loss, jnp.asarray(z),
                                       jnp.asarray(target), jnp.asarray(fold),
                                       jnp.asarray([1e-4]), jnp.ones(n, jnp.float32))
    assert np.all(np.abs(np.asarray(kernel)[:, -1]) < 1.0)
    assert np.all(np.abs(np.asarray(kernel)[:, :-1]) < 1.0)  # the others: noise, ~0


def test_model_leaves_are_exactly_the_leaves_with_a_model_axis():
    m = 7  # no other dimension of this spec is 7
    spec = networks.RouterSpec(n_models=m, feature_dim=5, hidden=6, policy_hidden=4,
                               use_tau_input=True, use_lambda_input=True, static_cost=False,
                               folds=3, groups=2, tasks=3)
    stats = networks.data_stats(np.ones((4, 5)), np.ones((4, m)))
    stats["centroids"] = jnp.ones((2, 5))
    params = jax.jit(networks.init_params, static_argnums=0)(spec, jax.random.key(0), stats)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in leaves:
        name = columns.leaf_name(path)
        assert columns.is_model_leaf(name) == (np.ndim(leaf) > 0 and np.shape(leaf)[-1] == m), name
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: rng.normal(size=np.shape(x)).astype(np.float32), params)
    column = {columns.leaf_name(p): np.full(np.shape(x)[:-1] + (1,), 9.0, np.float32)
              for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
              if columns.is_model_leaf(columns.leaf_name(p))}
    grown = jax.jit(columns.append_model)(params, column)  # one compile, not one per leaf
    assert grown["calib"]["prior"].shape == (2, m + 1)
    assert float(grown["predictor"]["params"]["perf_head"]["kernel"][1, 2, m]) == 9.0
    back = jax.jit(columns.take_models, static_argnums=1)(grown, tuple(range(m)))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), back, params))
    with pytest.raises(KeyError, match="model leaves"):
        columns.append_model(params, {k: v for k, v in column.items() if k != "calib/scale"})


def test_labels_from_records_checks_lines():
    labels = labels_from_records([{"id": "a", "score": 1, "query": "x?", "cost": 0.1},
                                  {"id": "b", "score": 0.5, "cost": 0.2, "task": "law"}])
    assert labels.texts.tolist() == ["x?", ""] and labels.tasks.tolist() == ["", "law"]
    with pytest.raises(ValueError, match="line 2 has no cost"):
        labels_from_records([{"id": "a", "score": 1, "cost": 0.1}, {"id": "b", "score": 0}])
    with pytest.raises(ValueError, match=r"^labels: line 1: score 2 is not in \[0, 1\]$"):
        labels_from_records([{"id": "a", "score": 2}])
    with pytest.raises(ValueError, match=r"^f.jsonl: line 7: score nan is not in"):
        labels_from_records([{"id": "a", "score": float("nan")}], "f.jsonl", [7])
    with pytest.raises(ValueError, match=r"^labels: line 2: cost -0.1 is not a finite number"):
        labels_from_records([{"id": "a", "score": 1, "cost": 0.1},
                             {"id": "b", "score": 1, "cost": -0.1}])
    with pytest.raises(ValueError, match="^labels: line 3 repeats the id 'a' of line 1$"):
        labels_from_records([{"id": "a", "score": 1}, {"id": "b", "score": 1},
                             {"id": "a", "score": 0}])
    with pytest.raises(ValueError, match="line 1: 'features' must be a list of finite numbers"):
        labels_from_records([{"id": "a", "score": 1, "features": [0.5, "x"]}])


def test_read_labels_names_the_file_and_its_line(tmp_path):
    path = tmp_path / "labels.jsonl"  # the blank line 2 is skipped but counted
    path.write_text('{"id": "a", "score": 1}\n\n{"id": "b", "score": 1.5}\n')
    with pytest.raises(ValueError, match=rf"^{path}: line 3: score 1.5 is not in \[0, 1\]$"):
        read_labels(str(path))
    path.write_text('{"id": "a", "score": 1}\n\n{"id": "b", "score": 0.5}\n')
    assert read_labels(str(path)).scores.tolist() == [1.0, 0.5]


def test_only_the_top_run_of_capped_lanes_is_reopened():
    # 99.5 >= 0.99 * 100 counts as capped; the ramp is 100 * 1000^(j/3), j = 1..3
    lams = onboarding.reopen_capped_lanes([0.0, 5.0, 100.0, 99.5, 100.0], 100.0, reach=1000.0)
    np.testing.assert_allclose(lams, [0.0, 5.0, 1e3, 1e4, 1e5], rtol=1e-6)
    assert lams.dtype == np.float32
    # a capped lane below an uncapped one is kept as trained; only the top one is re-opened
    np.testing.assert_allclose(onboarding.reopen_capped_lanes([100.0, 5.0, 100.0], 100.0, 10.0),
                               [100.0, 5.0, 1000.0])
    untouched = np.asarray([0.1, 3.0, 50.0], np.float32)
    np.testing.assert_array_equal(onboarding.reopen_capped_lanes(untouched, 100.0), untouched)
    np.testing.assert_allclose(onboarding.reopen_capped_lanes([100.0, 100.0], 100.0, 100.0),
                               [1e3, 1e4])


# ------------------------------------------------------------------ the end-to-end smoke


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A smoke router trained without LEFT_OUT, exported with its held-out rows, and the full
    data's splits (LEFT_OUT's labels)."""
    root = tmp_path_factory.mktemp("onboard")
    config = quickstart.get_config("smoke")
    config.data.source = "synthetic:routerbench?n=2000&seed=0&signal=0.9"
    config.data.encoder = "hashing:dim=64"
    config.data.cache_dir = str(root / "cache")
    config.train.lam_max = 3.0  # the top lanes' duals end at the bound (re-opened on onboarding)
    full = pipeline.load_splits(config)
    config.data.exclude_models = LEFT_OUT
    splits = pipeline.load_splits(config)
    assert LEFT_OUT not in splits["pred"].models
    for name, part in splits.items():  # the same rows: only the model columns differ
        np.testing.assert_array_equal(part.query_ids, full[name].query_ids)
    trained = pipeline.train(config, splits, progress=False)
    evaluation = pipeline.evaluate(trained, baselines=False)
    without = str(root / "without")
    pipeline.export(trained, evaluation, without, platforms=("cpu",))
    return root, without, full


def labels_for(splits, model: str, n_train: int) -> ModelLabels:
    """The model's labels on every held-out row and on n_train training-pool rows."""
    parts = [splits["val"], splits["calib"], splits["pred"], splits["policy"]]
    cat = lambda f: np.concatenate([getattr(p, f) for p in parts])
    rows = np.arange(splits["val"].n_queries + splits["calib"].n_queries + n_train)
    m = splits["pred"].models.index(model)
    return ModelLabels(query_ids=cat("query_ids")[rows], scores=cat("scores")[rows, m],
                       costs=cat("costs")[rows, m], features=cat("features")[rows],
                       tasks=cat("tasks")[rows])


@pytest.fixture(scope="module")
def onboarded(smoke):
    root, without, full = smoke
    out = str(root / "onboarded")
    manifest = pipeline.onboard(without, LEFT_OUT, labels_for(full, LEFT_OUT, 600), out,
                                price=(1e-5, 3e-5), platforms=("cpu",))
    return out, manifest


def test_heldout_rows_travel_in_the_artifact(smoke):
    _, without, full = smoke
    manifest = json.load(open(os.path.join(without, "manifest.json")))
    assert {"heldout/queries.json", "heldout/arrays.npz"} <= set(manifest["files"])  # hashed
    _, rows, _ = reopen.read_bundle(without)
    np.testing.assert_array_equal(rows.val.query_ids, full["val"].query_ids)
    np.testing.assert_array_equal(rows.calib.scores, full["calib"].without_models(
        [LEFT_OUT]).scores)
    assert len(rows.pool_ids) == full["pred"].n_queries + full["policy"].n_queries
    listed = pipeline.heldout_queries(without)
    assert len(listed) == rows.val.n_queries + rows.calib.n_queries
    assert listed[0]["split"] == "val" and listed[0]["query"] == str(full["val"].texts[0])


def test_onboarded_manifest_records_its_lineage(smoke, onboarded):
    _, without, full = smoke
    out, manifest = onboarded
    parent = json.load(open(os.path.join(without, "manifest.json")))
    assert manifest["models"] == [*parent["models"], LEFT_OUT]
    (step,) = manifest["lineage"]
    assert step["parent"] == parent["manifest_sha256"]
    assert step["parent_models"] == parent["models"]
    assert (step["added"], step["removed"], step["n_train"]) == (LEFT_OUT, None, 600)
    assert (step["n_val_fitted"], step["val_measured"]) == (full["val"].n_queries,
                                                            "out of fold")
    lams = np.asarray(parent["lambda"]["lams"], np.float32)
    reopened = onboarding.reopen_capped_lanes(lams, float(parent["training"]["config"]["train"][
        "lam_max"]))
    np.testing.assert_allclose(manifest["lambda"]["lams"], reopened, rtol=1e-6)
    assert step["lanes_reopened"] == int(np.sum(reopened != lams))
    assert step["lanes_reopened"] >= 1  # the smoke's top lanes end at its low lam_max
    assert step["heldout"] == {"val": full["val"].n_queries, "calib": full["calib"].n_queries}
    assert datetime.datetime.fromisoformat(step["at"]).tzinfo is not None
    assert manifest["prices"][LEFT_OUT] == {"usd_per_input_token": 1e-5,
                                            "usd_per_output_token": 3e-5}
    # the held-out rows now carry the new model's labels
    _, rows, _ = reopen.read_bundle(out)
    m = full["val"].models.index(LEFT_OUT)
    np.testing.assert_array_equal(rows.val.scores[:, -1], full["val"].scores[:, m])
    # re-measured with the new model as a fixed point, re-certified over every point
    assert len(manifest["lineage"]) == 1 and len(manifest["models"]) - 1 in manifest[
        "operating"]["model"]
    assert len(manifest["certification"]["table"]["accuracy"]) == len(
        manifest["operating"]["model"])


def test_onboarded_artifact_loads_and_routes(smoke, onboarded):
    _, _, full = smoke
    out, _ = onboarded
    router = Router.load(out)
    test = full["test"]
    for tau in (0.3, 0.6, 0.75, 0.9):
        decisions = router.decide(test.features[:256], tau)
        assert finite_rows(decisions).all()
    records = router.route(["Which gas do plants absorb?"], 0.7)
    assert set(records[0]["p_hat"]) == set(full["test"].models)
    # the new model is a fixed operating point, and the reused policy chooses it at high τ'
    new = len(router.models) - 1
    assert new in router.policy.models.tolist()
    policy_taus = router.policy.taus[router.policy.models < 0]
    x = np.tile(test.features[:200], (len(policy_taus), 1))
    chosen = router.run(x, np.repeat(policy_taus, 200).astype(np.float32)).model
    assert new in chosen.tolist()


def test_points_around_the_new_model_serve_as_they_were_measured(onboarded):
    """Every policy τ' is measured twice, with the new model and around it; served, a point
    around it never chooses it, and serving routes each point's rows exactly as the
    re-measurement (`routing.point_routes`) did, the rows whose choice was another model
    untouched."""
    out, manifest = onboarded
    new = len(manifest["models"]) - 1
    table = manifest["operating"]
    around = [j for j, e in enumerate(table["excluded"]) if e]
    assert all(table["excluded"][j] == [new] and table["model"][j] == -1 for j in around)
    plain_taus = sorted(t for t, e in zip(table["tau"], table["excluded"], strict=True)
                        if t is not None and not e)
    assert sorted(table["tau"][j] for j in around) == plain_taus
    router = Router.load(out, warmup=0)
    bundle, rows, _ = reopen.read_bundle(out)
    measured = routing.point_routes(routing.RunRouter.of_bundle(bundle), rows.calib, table)[0]
    x, n = rows.calib.features, rows.calib.n_queries
    points = [router.policy.resolve(0.0)._replace(point=j, operating_tau=table["tau"][j],
                                                  operating_model=-1,
                                                  excluded=tuple(table["excluded"][j]))
              for j in range(len(table["model"])) if table["model"][j] < 0]
    policy_rows = [j for j in range(len(table["model"])) if table["model"][j] < 0]
    served = router.run_points(np.tile(x, (len(points), 1)), points,
                               np.repeat(np.arange(len(points)), n))  # row k·n + i: point k
    chosen = served.model.reshape(len(points), n)
    np.testing.assert_array_equal(chosen, measured[policy_rows])
    masked = [k for k, j in enumerate(policy_rows) if j in around]
    assert not (chosen[masked] == new).any()
    plain = router.run(np.tile(x, (len(masked), 1)), np.repeat(
        np.asarray([table["tau"][policy_rows[k]] for k in masked], np.float32), n)).model
    plain = plain.reshape(len(masked), n)
    assert (plain == new).any()  # the new model is chosen somewhere without the exclusion
    np.testing.assert_array_equal(chosen[masked][plain != new], plain[plain != new])
    # a certified τ served around it says so in its reason (the certificate names no models)
    cert = manifest["certification"]["table"]
    around_taus = [t for t, j, ok in zip(cert["taus"], cert["route_to"], cert["feasible"],
                                         strict=True) if ok and table["excluded"][j]]
    assert around_taus  # this fixture's val prefers the points around it at 4 certified τ
    point = router.resolve(around_taus[0])
    assert point.excluded == (new,) and f"without {LEFT_OUT}" in point.reason


def test_val_rows_are_measured_by_columns_that_never_saw_their_labels(smoke, onboarded):
    """The column is fitted on the training labels and the `val` rows' (they are given anyway),
    and each `val` row is routed for the measurement by a column fitted without it: flipping the
    labels of one fold's `val` rows leaves the column that routes those rows as it was (not the
    other folds' columns, nor the deployed one), and the artifact's table is the one those
    routes measure."""
    _, without, full = smoke
    out, manifest = onboarded
    bundle, rows, _ = reopen.read_bundle(without)
    config = onboarding.training_config(without, bundle)
    held, train = onboarding._split_labels(without, rows, labels_for(full, LEFT_OUT, 600))
    fit = onboarding._FitRows.of(bundle, config, rows, train, held["val"], None)
    k = fit.fold[fit.is_val][0]
    part = fit.fold[fit.is_val] == k
    flip = held["val"].scores.copy()
    flip[part] = 1.0 - flip[part]
    flipped = onboarding._FitRows.of(bundle, config, rows, train,
                                     dataclasses.replace(held["val"], scores=flip), None)
    np.testing.assert_array_equal(flipped.fold, fit.fold)
    lams = np.asarray(manifest["lambda"]["lams"], np.float32)
    grow = lambda column: onboarding.with_column(bundle, LEFT_OUT, column, lams, {})
    onboarded_bundle, new_rows, _ = reopen.read_bundle(out)
    table = manifest["operating"]
    without_k = ~fit.is_val | (fit.fold != k)  # the column that routes fold k's val rows
    for name, leaf in fit.column(bundle, without_k).leaves.items():
        np.testing.assert_allclose(flipped.column(bundle, without_k).leaves[name], leaf,
                                   rtol=1e-5, atol=1e-6)
    other = ~fit.is_val | (fit.fold != (k + 1) % config.train.folds)  # saw the flipped labels
    everything = np.ones(fit.n, bool)  # the deployed column
    for keep in (other, everything):
        assert not np.allclose(fit.column(bundle, keep).oof_logit,
                               flipped.column(bundle, keep).oof_logit)
    measured = routing.measure_points(config, routing.RunRouter.of_bundle(onboarded_bundle),
                                      new_rows.val, (len(bundle.models),),
                                      lambda raw: fit.route_val_out_of_fold(
                                          bundle, grow, new_rows.val, raw))
    assert measured["raw_accuracy"] == table["raw_accuracy"]


def test_onboarding_measures_val_with_the_out_of_fold_routes(smoke, monkeypatch, tmp_path):
    """The table `onboard` writes is measured from `route_val_out_of_fold`'s choices, not the
    deployed router's: with those choices all model 0, every point measures model 0."""
    _, without, full = smoke
    monkeypatch.setattr(onboarding._FitRows, "route_val_out_of_fold",
                        lambda self, bundle, grow, val, raw: np.zeros(
                            (len(raw["model"]), val.n_queries), np.int64))
    manifest = pipeline.onboard(without, LEFT_OUT, labels_for(full, LEFT_OUT, 600),
                                str(tmp_path / "zero"), price=(1e-5, 3e-5), platforms=("cpu",))
    val_accuracy = float(np.mean(full["val"].scores[:, full["val"].models.index(
        manifest["models"][0])]))
    np.testing.assert_allclose(manifest["operating"]["raw_accuracy"], val_accuracy)


def test_online_heldout_rows_of_an_onboarded_artifact_are_calib_alone(smoke, onboarded):
    from proteus.online import heldout  # noqa: PLC0415

    _, _, full = smoke
    out, _ = onboarded
    rows = heldout.load_heldout(Router.load(out, warmup=0))
    assert len(rows.features) == full["calib"].n_queries
    np.testing.assert_array_equal(rows.features, full["calib"].features)


def test_top_of_curve_routes_calib_at_the_top_lanes_and_at_fixed_mu(onboarded):
    """benchmarks/onboard_top.py: on `calib`, the best model's mean score, the top lanes as the
    router routes them, and at μ = 1 every query at its argmax p̂ (here by hand)."""
    from benchmarks import onboard_top  # noqa: PLC0415 (a benchmark script)
    out, _ = onboarded
    bundle, rows, _ = reopen.read_bundle(out)
    calib = rows.calib
    got = onboard_top.top_of_curve(out, lanes=2, mus=(1.0,))
    assert [r[0] for r in got][:1] == ["best single model"] and len(got) == 4
    assert got[0][2] == pytest.approx(calib.scores.mean(axis=0).max())
    router = Router.load(out, warmup=0)
    top = float(np.asarray(bundle.lane_taus)[-1])
    chosen = router.run(np.asarray(calib.features, np.float32),
                        np.full(calib.n_queries, top, np.float32)).model
    assert got[2][0] == f"lane {top:.3f}"
    assert got[2][2] == pytest.approx(calib.scores[np.arange(calib.n_queries), chosen].mean())
    p_hat = np.asarray(routing.routes(routing.RunRouter.of_bundle(bundle), calib,
                                      np.asarray([top])).p_hat)
    argmax = np.argmax(p_hat, axis=1)
    assert got[3][:2] == ("mu=1", 1.0)
    assert got[3][2] == pytest.approx(calib.scores[np.arange(calib.n_queries), argmax].mean())
    assert got[3][3] == pytest.approx(calib.costs[np.arange(calib.n_queries), argmax].mean())


def test_certified_around_counts_the_certified_tau_served_around_a_model():
    # points 0 (around model 3), 1 and 2; grid τ 1-4 certified at points 0, 1, 0, none
    manifest = {"operating": {"model": [-1, -1, 0], "excluded": [[3], [], []]},
                "certification": {"table": {"route_to": [0, 1, 0, 0],
                                            "feasible": [True, True, True, False]}}}
    assert onboarding.certified_around(manifest) == (2, 3)
    assert onboarding.certified_around({**manifest, "operating": {"model": [-1, -1, 0]}}) is None
    assert onboarding.certified_around({**manifest, "certification": {"table": None}}) is None


def test_onboarding_with_the_pool_fits_its_transferred_labels(smoke, tmp_path):
    """`pool=`: the pool `training_pool` rebuilds is the training data's pred and policy rows
    without the new model; onboarding with it writes the artifact that onboarding the training
    labels followed by the pool's soft ones (`transfer.with_transferred`) writes, and says so."""
    _, without, full = smoke
    bundle = reopen.read_bundle(without)[0]
    pool = pipeline.training_pool(without)
    expected = concatenate([full["pred"], full["policy"]]).without_models([LEFT_OUT])
    np.testing.assert_array_equal(pool.query_ids, expected.query_ids)
    np.testing.assert_array_equal(pool.scores, expected.scores)
    labels = labels_for(full, LEFT_OUT, 600)
    manifest = pipeline.onboard(without, LEFT_OUT, labels, str(tmp_path / "moved"), pool=pool,
                                price=(1e-5, 3e-5), platforms=("cpu",))
    step = manifest["lineage"][-1]
    assert (step["n_train"], step["n_transferred"]) == (600, pool.n_queries - 600)
    assert step["transfer"]["fitted_on"] == 600
    assert step["n_val_fitted"] == full["val"].n_queries
    _, rows, _ = reopen.read_bundle(without)
    held = {q for ds in rows.splits().values() for q in ds.query_ids.astype(str).tolist()}
    train = labels.subset(np.asarray([i for i, q in enumerate(labels.query_ids.tolist())
                                      if q not in held]))
    both, _ = transfer.with_transferred(pool, bundle.models, rows.pool_ids, rows.pool_folds,
                                        train, train.features, bundle.spec.folds)
    given = labels.subset(np.asarray([i for i, q in enumerate(labels.query_ids.tolist())
                                      if q in held]))
    explicit = dataclasses.replace(
        both, query_ids=np.concatenate([given.query_ids, both.query_ids]),
        scores=np.concatenate([given.scores, both.scores]),
        costs=np.concatenate([given.costs, both.costs]),
        features=np.concatenate([given.features, both.features]),
        tasks=np.concatenate([given.tasks.astype(str), both.tasks]))
    same = pipeline.onboard(without, LEFT_OUT, explicit, str(tmp_path / "explicit"),
                            price=(1e-5, 3e-5), platforms=("cpu",))
    assert same["operating"] == manifest["operating"]
    assert same["certification"] == manifest["certification"]
    with pytest.raises(onboarding.OnboardError, match="the pool's models"):
        pipeline.onboard(without, LEFT_OUT, labels, str(tmp_path / "x"),
                         pool=pool.without_models([pool.models[0]]))
    with pytest.raises(ValueError, match=f"has no labels of \\['{LEFT_OUT}'\\]"):
        transfer.pool_of(onboarding.training_config(without, bundle), (*bundle.models, LEFT_OUT))


def test_removal_repoints_and_recertifies(smoke, onboarded, tmp_path):
    _, _, full = smoke
    out, parent = onboarded
    gone = "claude-v2"
    removed = str(tmp_path / "removed")
    manifest = pipeline.remove_model(out, gone, removed, platforms=("cpu",))
    assert gone not in manifest["models"] and len(manifest["models"]) == len(parent["models"]) - 1
    assert manifest["lineage"][-1]["removed"] == gone and len(manifest["lineage"]) == 2
    assert manifest["lineage"][-1]["parent"] == parent["manifest_sha256"]
    assert manifest["lambda"]["lams"] == parent["lambda"]["lams"]  # a removal re-opens nothing
    router = Router.load(removed)
    test = full["test"]
    taus = np.repeat(np.nan_to_num(router.policy.taus, nan=0.0), 200).astype(np.float32)
    fixed = np.repeat(router.policy.models, 200).astype(np.int32)
    chosen = router.run(np.tile(test.features[:200], (len(router.policy.taus), 1)), taus,
                        fixed).model
    assert set(chosen.tolist()) <= set(range(len(manifest["models"])))  # never the removed one
    # the certificate is recomputed on the held-out rows without it: one fixed point fewer, and
    # none of the parent's points that routed around the model it had added
    bundle, rows, _ = reopen.read_bundle(removed)
    assert gone not in rows.models
    config = onboarding.training_config(removed, bundle)
    table, cert = onboarding.remeasure(bundle, rows, config, manifest["certification"]["table"])
    assert json.loads(json.dumps(cert)) == manifest["certification"]["table"]
    around = sum(map(bool, parent["operating"]["excluded"]))
    assert around == sum(m < 0 for m in parent["operating"]["model"]) // 2 > 0
    assert len(cert["accuracy"]) == len(parent["certification"]["table"]["accuracy"]) - 1 - around
    assert "excluded" not in manifest["operating"]


def test_onboarding_refuses_bad_requests(smoke, onboarded, tmp_path):
    _, without, full = smoke
    labels = labels_for(full, LEFT_OUT, 600)
    with pytest.raises(onboarding.OnboardError, match="already routes to"):
        pipeline.onboard(onboarded[0], LEFT_OUT, labels, str(tmp_path / "x"))
    some = labels.subset(np.arange(5, labels.n))  # 5 held-out rows unlabelled
    with pytest.raises(onboarding.OnboardError, match="miss 5 of the"):
        pipeline.onboard(without, LEFT_OUT, some, str(tmp_path / "x"))
    no_cost = dataclasses.replace(labels, costs=None)
    with pytest.raises(onboarding.OnboardError, match="no cost"):
        pipeline.onboard(without, LEFT_OUT, no_cost, str(tmp_path / "x"))
    with pytest.raises(onboarding.OnboardError, match="no model 'nope'"):
        pipeline.remove_model(without, "nope", str(tmp_path / "x"))
    for price in ((-1e-6, 1e-6), (1e-6, float("nan")), (1e-6,)):
        with pytest.raises(onboarding.OnboardError, match=r"price must be .* got \("):
            pipeline.onboard(without, LEFT_OUT, labels, str(tmp_path / "x"), price=price)
    with pytest.raises(ValueError, match=r"platforms \['gpu'\]: give one or more of"):
        pipeline.onboard(without, LEFT_OUT, labels, str(tmp_path / "x"), platforms=("gpu",))
    # an existing --out is refused first, before anything is fitted (even with bad labels)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="taken exists; pass overwrite=True"):
        pipeline.onboard(without, LEFT_OUT, some, str(tmp_path / "taken"))
    with pytest.raises(FileExistsError, match="taken exists and is not a router artifact"):
        pipeline.remove_model(without, "nope", str(tmp_path / "taken"), overwrite=True)


def test_command_line_lists_the_heldout_queries_and_adds_a_model(smoke, tmp_path):
    _, without, full = smoke
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # the suite's XLA flags (tests/conftest.py)
    listed = tmp_path / "heldout.jsonl"
    run = lambda *flags: subprocess.run([sys.executable, "-m", "launch.onboard",
                                         f"--artifact={without}", *flags], env=env,
                                        capture_output=True, text=True, check=True).stdout
    run(f"--list_heldout={listed}")
    queries = [json.loads(line) for line in listed.read_text().splitlines()]
    assert [q["id"] for q in queries] == [*full["val"].query_ids, *full["calib"].query_ids]
    labels = labels_for(full, LEFT_OUT, 300)
    path = tmp_path / "labels.jsonl"
    write_jsonl(({"id": q, "score": float(s), "cost": float(c), "features": x.tolist()}
                 for q, s, c, x in zip(labels.query_ids, labels.scores, labels.costs,
                                       labels.features, strict=True)), str(path))
    out = run(f"--add={LEFT_OUT}", f"--labels={path}", f"--out={tmp_path / 'added'}",
              "--platforms=cpu", "--price_in=1e-5", "--price_out=3e-5", "--transfer")
    val, pool = full["val"].n_queries, full["pred"].n_queries + full["policy"].n_queries
    assert (f"added {LEFT_OUT} (300 training queries + {val} val rows + {pool - 300} pool "
            "queries with transferred labels), 11 models") in out
    manifest = json.load(open(tmp_path / "added" / "manifest.json"))
    k, n = onboarding.certified_around(manifest)
    assert f"; {k} of the {n} certified τ are served around {LEFT_OUT}" in out
    assert Router.load(str(tmp_path / "added")).models[-1] == LEFT_OUT
