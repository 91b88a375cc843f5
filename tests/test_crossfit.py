"""Cross-fitting: no row's label reaches its own out-of-fold prediction; the calibration maths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.training import crossfit, networks, predictor_phase, train
from tests import core_helpers

F, N, D, M = 3, 48, 6, 4


def _setup(groups: int = 2):
    spec = core_helpers.spec_for(M, D, hidden=16, policy_hidden=8, folds=F, groups=groups)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(N, D)).astype(np.float32)
    scores = (rng.uniform(size=(N, M)) < 0.6).astype(np.float32)
    costs = rng.uniform(1e-4, 1e-3, (N, M)).astype(np.float32)
    fold = np.arange(N, dtype=np.int32) % F
    stats = networks.data_stats(features, costs)
    stats["centroids"] = jnp.asarray(features[:groups] / np.linalg.norm(features[:groups], axis=1,
                                                                        keepdims=True))
    params = networks.init_params(spec, jax.random.key(0), stats)
    static = core_helpers.static_for(spec, batch_size=N)
    state = train.init_state(static, params, jnp.float32([0.5, 0.8]), jnp.float32(1.0))
    return static, state, features, scores, costs, fold


def _train(static, state, features, scores, costs, fold, steps=3):
    hp = train.HParams(*(jnp.float32(v) for v in (1e-2, 1e-3, 1e-3, 0.5, 0.0)))
    batch = train.Batch(jnp.asarray(features), jnp.asarray(scores), jnp.asarray(costs),
                        jnp.asarray(fold))
    step = jax.jit(predictor_phase.predictor_step, static_argnums=0)
    for _ in range(steps):
        state, _ = step(static, state, jax.random.key(1), batch, hp)
    return state


def test_a_fold_predictor_never_fits_its_own_fold():
    static, state, features, scores, costs, fold = _setup()
    flipped = scores.copy()
    flipped[fold == 1] = 1.0 - flipped[fold == 1]  # change every label of fold 1
    a = _train(static, state, features, scores, costs, fold)
    b = _train(static, state, features, flipped, costs, fold)
    leaves = lambda s: jax.tree.leaves(s.params["predictor"])
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x[1], y[1])  # fold 1's predictor never saw them
        assert not np.array_equal(x[0], y[0]) or x.ndim == 1  # the others did
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(leaves(a), leaves(b), strict=True))


def test_out_of_fold_inputs_ignore_the_rows_own_label():
    static, state, features, scores, costs, fold = _setup()
    row = 7  # in fold 1
    flipped = scores.copy()
    flipped[row] = 1.0 - flipped[row]
    trained = [_train(static, state, features, s, costs, fold) for s in (scores, flipped)]
    x, f = jnp.asarray(features), jnp.asarray(fold)
    (z_a, logit_a, c_a), (z_b, logit_b, c_b) = (
        crossfit.out_of_fold(static.spec, t.params, x, f) for t in trained)
    np.testing.assert_array_equal(logit_a[row], logit_b[row])  # its predictor never fitted it
    np.testing.assert_array_equal(z_a[row], z_b[row])
    np.testing.assert_array_equal(c_a[row], c_b[row])
    assert not np.array_equal(logit_a[fold != 1], logit_b[fold != 1])  # the others' did
    (prior_a, table_a), (prior_b, table_b) = (
        crossfit.oof_priors(static.spec, state.params, x, jnp.asarray(s), f)
        for s in (scores, flipped))
    np.testing.assert_array_equal(prior_a[row], prior_b[row])  # its group prior excludes it
    assert not np.array_equal(prior_a, prior_b) and not np.array_equal(table_a, table_b)


def test_group_prior_by_hand():
    scores = jnp.float32([[1, 0], [1, 1], [0, 0], [1, 0]])
    groups = jnp.int32([0, 0, 1, 1])
    weights = jnp.float32([1, 1, 1, 0])  # row 3 held out
    logits = crossfit.group_prior(scores, groups, weights, 2)
    # overall over rows 0-2: [2/3, 1/3]; group 0: (2 + 10·2/3) / 12, (1 + 10/3) / 12;
    # group 1 (row 2 only): (0 + 10·2/3) / 11, (0 + 10/3) / 11
    want = np.array([[(2 + 20 / 3) / 12, (1 + 10 / 3) / 12], [(20 / 3) / 11, (10 / 3) / 11]])
    np.testing.assert_allclose(jax.nn.sigmoid(logits), want, rtol=1e-5)


def test_fit_stacking_recovers_a_known_map():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20000, 2)).astype(np.float32)
    prior = rng.normal(size=(20000, 2)).astype(np.float32)
    truth = np.array([[0.5, 1.5], [0.8, 0.0], [-0.2, 0.3]])  # rows: scale, prior_weight, shift
    p = 1 / (1 + np.exp(-(truth[0] * logits + truth[1] * prior + truth[2])))
    scores = (rng.uniform(size=p.shape) < p).astype(np.float32)
    fit = crossfit.fit_stacking(jnp.asarray(logits), jnp.asarray(prior), jnp.asarray(scores))
    got = np.stack([fit["scale"], fit["prior_weight"], fit["shift"]])
    np.testing.assert_allclose(got, truth, atol=0.06)


def test_fit_columns_recovers_four_columns_and_weights_rows():
    # K = 4 columns (logit, two priors, intercept) on model 0; rows of weight 0 are ignored: half
    # the rows follow another map and are weighted out.
    rng = np.random.default_rng(1)
    cols = rng.normal(size=(20000, 1, 4)).astype(np.float32)
    cols[..., 3] = 1.0
    truth = np.array([0.7, 0.4, -0.9, 0.2])
    other = np.array([-1.0, 2.0, 1.0, -1.0])
    mix = np.where(np.arange(20000)[:, None] < 10000, cols @ truth, cols @ other)[:, 0]
    scores = (rng.uniform(size=(20000, 1)) < 1 / (1 + np.exp(-mix[:, None]))).astype(np.float32)
    weights = (np.arange(20000) < 10000).astype(np.float32)
    theta = crossfit.fit_columns(jnp.asarray(cols), jnp.asarray(scores), jnp.asarray(weights))
    assert theta.shape == (1, 4)
    np.testing.assert_allclose(theta[0], truth, atol=0.07)
    # the 3-column stacking is fit_columns on (logit, prior, 1)
    fit = crossfit.fit_stacking(jnp.asarray(cols[..., 0]), jnp.asarray(cols[..., 1]),
                                jnp.asarray(scores), jnp.asarray(weights))
    three = crossfit.fit_columns(jnp.asarray(cols[..., [0, 1, 3]]), jnp.asarray(scores),
                                 jnp.asarray(weights))
    np.testing.assert_array_equal(np.asarray(three[:, 0]), np.asarray(fit["scale"]))


def test_ensemble_prediction_averages_the_folds():
    static, state, features, scores, costs, fold = _setup(groups=0)
    spec, params = static.spec, state.params
    z, p_hat, c_hat = networks.predicted(spec, params, jnp.asarray(features))
    assert z.shape == (F, N, 16) and p_hat.shape == (N, M)
    _, logits, log_cost = crossfit.raw_outputs(spec, params, jnp.asarray(features))
    np.testing.assert_allclose(p_hat, jax.nn.sigmoid(logits).mean(0), rtol=1e-5)
    np.testing.assert_allclose(c_hat, jnp.exp(log_cost).mean(0), rtol=1e-5)
    mu = networks.policy_mean(spec, params["policy"], z, jnp.float32(0.7), jnp.float32(2.0))
    one = [networks.policy_mean(spec, params["policy"], z[f], jnp.float32(0.7),
                                jnp.float32(2.0)) for f in range(F)]
    np.testing.assert_allclose(mu, np.mean(one, axis=0), rtol=1e-5)


@pytest.mark.parametrize("groups", [0, 3])
def test_query_groups_are_nearest_centroids(groups):
    spec = core_helpers.spec_for(2, 2, folds=1, groups=groups)
    centroids = jnp.float32([[1, 0], [0, 1], [-1, 0]])
    x = jnp.float32([[2, 0.1], [0.1, 3], [-5, 1], [0, -1]])
    got = networks.query_groups(spec, {"centroids": centroids}, x)
    assert got.tolist() == ([0, 1, 2, 0] if groups else [0, 0, 0, 0])


def test_task_prior_by_hand():
    scores = jnp.float32([[1, 0], [1, 1], [0, 0], [1, 0], [0, 1]])
    tasks = jnp.int32([0, 0, 1, -1, 1])  # row 3: an unknown task, outside every table
    weights = jnp.float32([1, 1, 1, 1, 0])  # row 4 held out
    dev = crossfit.task_prior(scores, tasks, weights, 2)
    assert dev.shape == (3, 2)
    # known rows 0-2: overall [2/3, 1/3]; task 0 (rows 0, 1): (2 + 20/3) / 12, (1 + 10/3) / 12;
    # task 1 (row 2): (20/3) / 11, (10/3) / 11; deviations are logit(task) - logit(overall)
    logit = lambda p: np.log(p / (1 - p))
    overall = np.array([2 / 3, 1 / 3])
    want = logit(np.array([[(2 + 20 / 3) / 12, (1 + 10 / 3) / 12],
                           [(20 / 3) / 11, (10 / 3) / 11]])) - logit(overall)
    np.testing.assert_allclose(dev[:2], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(dev[2], [0.0, 0.0])  # unknown task: no deviation


def test_task_priors_are_out_of_fold_and_reach_the_prediction():
    static, state, features, scores, costs, fold = _setup()
    spec = static.spec._replace(tasks=2)
    params = networks.init_params(spec, jax.random.key(0), state.params["stats"])
    tasks = np.arange(N, dtype=np.int32) % 2
    tasks[:4] = -1  # unknown tasks calibrate without the term
    row = 7  # fold 1, task 1
    flipped = scores.copy()
    flipped[row] = 1.0 - flipped[row]
    f, t = jnp.asarray(fold), jnp.asarray(tasks)
    (oof_a, table_a), (oof_b, table_b) = (crossfit.oof_task_priors(spec, jnp.asarray(s), t, f)
                                          for s in (scores, flipped))
    np.testing.assert_array_equal(oof_a[row], oof_b[row])  # its own label is not in its prior
    assert not np.array_equal(table_a, table_b)  # the deployed table uses every row
    np.testing.assert_array_equal(oof_a[:4], 0.0)
    calib, (_, p_hat, _) = crossfit.calibrate_and_predict(
        spec, params, jnp.asarray(features), jnp.asarray(scores), f, t)
    assert calib["task_weight"].shape == (M,) and calib["task_prior"].shape == (3, M)
    np.testing.assert_array_equal(calib["task_prior"], table_a)
    # deployed: a query of task 1 gets its task term, an unknown one (-1 or None) does not
    deployed = {**params, "calib": calib}
    x = jnp.asarray(features[:2])
    _, p1, _ = networks.predicted(spec, deployed, x, jnp.int32([1, 1]))
    _, p_unknown, _ = networks.predicted(spec, deployed, x, jnp.int32([-1, -1]))
    _, p_none, _ = networks.predicted(spec, deployed, x)
    np.testing.assert_array_equal(p_unknown, p_none)
    _, logits, _ = crossfit.raw_outputs(spec, params, x)
    prior = calib["prior"][networks.query_groups(spec, params["stats"], x)]
    base = calib["scale"] * logits + calib["prior_weight"] * prior + calib["shift"]
    np.testing.assert_allclose(p1, jax.nn.sigmoid(base + calib["task_weight"] * table_a[1])
                               .mean(0), rtol=1e-5)
    np.testing.assert_allclose(p_none, jax.nn.sigmoid(base).mean(0), rtol=1e-5)


def test_task_prior_shrinks_toward_the_pool_by_hand():
    # One model; task 0: 2 right of 2, task 1: 0 of 2; the pool-wide accuracy is 1/2 (logit 0).
    # Shrunk by k = PRIOR_COUNT pseudo-queries at 1/2: (2 + k/2)/(2 + k) and (k/2)/(2 + k).
    scores = np.array([[1.0], [1.0], [0.0], [0.0]])
    table = np.asarray(crossfit.task_prior(jnp.float32(scores), jnp.int32([0, 0, 1, 1]),
                                           jnp.ones(4), 2))
    k = crossfit.PRIOR_COUNT
    p = np.array([(2 + k / 2) / (2 + k), (k / 2) / (2 + k)])
    np.testing.assert_allclose(table[:2, 0], np.log(p / (1 - p)), rtol=1e-5)
    assert table[-1, 0] == 0.0  # an unknown task moves nothing


def test_the_stacking_fit_never_raises_its_objective_on_weak_large_logits(monkeypatch):
    """Logits of ±20 that say nothing about 50/50 scores: the Hessian at the start is ~0 and a
    full Newton step overshoots to a huge scale (the old fit: the objective rose). With the line
    search the fit's log-loss is at most the start's and the scale shrinks toward 0, the
    calibration of an uninformative logit; full, unbounded steps (the old fit) fail."""
    rng = np.random.default_rng(0)
    logits = 20.0 * rng.choice([-1.0, 1.0], size=(400, 1))
    scores = rng.integers(0, 2, size=(400, 1)).astype(np.float32)
    columns = jnp.stack([jnp.asarray(logits, jnp.float32), jnp.ones((400, 1))], axis=-1)

    def log_loss(theta):
        z = np.asarray(columns[:, 0] @ theta[0])
        return float(np.mean(np.logaddexp(0, z) - scores[:, 0] * z))
    start = log_loss(np.array([[1.0, 0.0]]))
    theta = np.asarray(crossfit.fit_columns(columns, jnp.asarray(scores)))
    assert np.all(np.isfinite(theta)) and abs(theta[0, 0]) < 0.05
    assert log_loss(theta) <= min(start, np.log(2) + 1e-3)
    monkeypatch.setattr(crossfit, "STEP_SIZES", (1.0,))
    monkeypatch.setattr(crossfit, "MAX_STEP", float("inf"))
    old = np.asarray(crossfit._fit_one(columns[:, 0], jnp.asarray(scores[:, 0]),
                                       jnp.ones(400, jnp.float32))[None])
    assert not (np.all(np.isfinite(old)) and log_loss(old) <= np.log(2) + 1e-3)
