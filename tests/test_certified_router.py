"""End to end: the certified router's floors through the public evaluation path.

One tiny router is trained once for the module (tests/core_helpers: the separable 3-model
problem, `tiny_config`; the other core tests' shapes, so their compiled chunks). Its operating
points are measured on the fixed `val` split; the held-out rows (`calib` and `test`) come from a
fresh draw of the same generator, so they are exchangeable with each other and unseen by
training, and they are re-split between `calib` and `test` with many salts. Every decision goes
through `proteus.pipeline.routing.proteus_blocks`, the function the main job, the full evaluation
and the sweep call. It is trained by the library alone (`pipeline.train`, no workdir).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from proteus import operating, pipeline
from proteus.pipeline import routing
from tests import core_helpers

N_SALTS = 40
POOL = 12_000  # fresh held-out rows, split calib 25% / test 75% by each salt
# A fine grid where the policy's and the fixed models' accuracies sit, one τ the strong model
# (~0.9998) can reach, and 0.9995: even 3,000 of 3,000 calibration rows right leave a 9,000-row
# window more than 4 errors with probability well above δ, so no point can ever certify it.
TAUS = np.round(np.r_[np.arange(0.70, 0.905, 0.01), 0.95, 0.99, 0.9995], 4)


@pytest.fixture(scope="module")
def trained():
    """(config, splits, setup, state, pool): the tiny router trained once."""
    config = core_helpers.tiny_config()
    config.certify.tolerance = 0.0  # the strict promise: a test window below τ is a miss
    splits = core_helpers.tiny_splits(config)
    setup = core_helpers.tiny_setup(config, splits)
    run = pipeline.train(config, splits, setup=setup, progress=False)
    pool = core_helpers.separable_dataset(n=POOL, seed=1)
    return config, splits, run.setup, run.state, pool


def _held_out(trained, salt: str) -> dict:
    """The training splits with `calib` and `test` redrawn from the fresh pool by `salt`."""
    _, splits, _, _, pool = trained
    return {**splits, **pool.split({"calib": 0.25, "test": 0.75}, salt=salt)}


def _evaluate(trained, splits, config=None):
    config = config or trained[0]
    _, _, setup, state, _ = trained
    return routing.proteus_blocks(config, setup, state, 0, splits, TAUS)


def _accuracy_of_points(trained, table: dict, ds) -> np.ndarray:
    """[C] accuracy on `ds` of each table point, routed here without the evaluation module."""
    _, _, setup, state, _ = trained
    out = []
    for tau, model in zip(table["tau"], table["model"], strict=True):
        if model >= 0:
            out.append(ds.scores[:, model].mean())
        else:
            choice = np.asarray(routing.route_split(setup, state, 0, ds, np.array([tau])).model)
            out.append(ds.scores[np.arange(ds.n_queries), choice[0]].mean())
    return np.asarray(out)


@pytest.fixture(scope="module")
def salted(trained):
    """[(splits, blocks, points)] for N_SALTS calib/test redraws."""
    out = []
    for s in range(N_SALTS):
        splits = _held_out(trained, f"salt{s}")
        out.append((splits, *_evaluate(trained, splits)))
    return out


def test_certified_violation_rate_over_redrawn_splits(trained, salted):
    """Per τ, "certified but test accuracy < τ − ε" (the evaluation's promise about a window the
    size of the test split) happens in at most δ of the redraws plus 2 binomial standard errors
    over 40 redraws (0.069: at most 2 of 40), and the certificate is not vacuous."""
    config = trained[0]
    delta, tolerance = config.certify.delta, config.certify.tolerance
    cert = salted[0][2]["evaluation_certification"]
    assert cert["window"] == salted[0][0]["test"].n_queries and cert["tolerance"] == tolerance
    feasible = np.array([b["proteus_certified"]["feasible"] for _, b, _ in salted])  # [S, T]
    acc = np.array([[np.nan if a is None else a for a in b["proteus_certified"]["accuracy"]]
                    for _, b, _ in salted])
    violated = feasible & (acc < TAUS - tolerance - 1e-9)
    rate = violated.mean(axis=0)
    assert np.all(rate <= delta + 2 * math.sqrt(delta * (1 - delta) / N_SALTS)), rate
    # Not vacuous: the lower grid is always certified, the top τ never is.
    assert feasible[:, TAUS <= 0.8].all() and not feasible[:, -1].any()
    assert 0.0 < feasible.mean() < 1.0


def test_served_certificate_promises_the_configured_window(trained, salted):
    """The exported certificate ("certification") is about `certify.window` requests; the one
    results.json scores (on a test split of another size) is kept beside it."""
    _, _, points = salted[0]
    served, checked = points["certification"], points["evaluation_certification"]
    assert (served["window"], served["tolerance"]) == (1000, trained[0].certify.tolerance)
    assert served["accuracy"] == checked["accuracy"]  # the same points, the same calib rows
    assert "P(accuracy of 1000 requests" in served["reasons"][0]


def test_certificate_and_test_routes_index_the_right_points_and_rows(trained, salted):
    """Recomputed here: the certificate's accuracy of point j is point j's calib accuracy (testing
    order = the table's), points are in decreasing credited val accuracy, and each τ's test
    accuracy is that of the point the certificate chose."""
    for splits, blocks, points in salted[:2]:
        table, cert = points["operating"], points["evaluation_certification"]
        assert np.all(np.diff(table["accuracy"]) <= 1e-12)  # the testing order
        np.testing.assert_allclose(cert["accuracy"],
                                   _accuracy_of_points(trained, table, splits["calib"]),
                                   rtol=0, atol=1e-6)
        test_acc = _accuracy_of_points(trained, table, splits["test"])
        block = blocks["proteus_certified"]
        assert block["operating_point"] == [r if f else 0 for r, f in
                                            zip(cert["route_to"], cert["feasible"], strict=True)]
        np.testing.assert_allclose(block["accuracy"], test_acc[block["operating_point"]],
                                   rtol=0, atol=1e-6)
        assert cert["n_calibration"] == splits["calib"].n_queries


def _permuted_scores(ds, seed: int):
    """`ds` with its score rows shuffled: the same features, other rows' labels."""
    perm = np.random.default_rng(seed).permutation(ds.n_queries)
    return dataclasses.replace(ds, scores=ds.scores[perm])


def test_points_are_fixed_before_calib_and_test_labels_are_seen(trained, salted):
    """Permuting calib labels changes the certificate only; permuting test labels changes only
    the test metrics (never the table, the certificate or the chosen points)."""
    splits, blocks, points = salted[0]
    calib_perm = {**splits, "calib": _permuted_scores(splits["calib"], 0)}
    blocks_c, points_c = _evaluate(trained, calib_perm)
    assert points_c["operating"] == points["operating"]
    assert points_c["certification"]["accuracy"] != points["certification"]["accuracy"]

    test_perm = {**splits, "test": _permuted_scores(splits["test"], 1)}
    blocks_t, points_t = _evaluate(trained, test_perm)
    assert points_t == points
    for name in ("proteus", "proteus_certified"):
        for key in ("operating_point", "feasible", "reason"):
            assert blocks_t[name][key] == blocks[name][key], (name, key)
    assert blocks_t["proteus_certified"]["accuracy"] != blocks["proteus_certified"]["accuracy"]


def test_refuse_fallback_serves_nothing_for_infeasible_tau(trained, salted):
    """With fallback "refuse" an infeasible τ gets no route (None in results, −1 in the
    certificate, `InfeasibleTauError` from the policy); "best_effort" serves it at point 0,
    flagged infeasible."""
    splits, best_blocks, best_points = salted[0]
    config = trained[0].copy_and_resolve_references()
    config.certify.fallback = "refuse"
    blocks, points = _evaluate(trained, splits, config)
    cert = points["evaluation_certification"]
    infeasible = [i for i, f in enumerate(cert["feasible"]) if not f]
    assert infeasible and infeasible[-1] == len(TAUS) - 1
    block, best = blocks["proteus_certified"], best_blocks["proteus_certified"]
    for i in infeasible:
        assert cert["route_to"][i] == -1 and "refused" in cert["reasons"][i]
        assert block["accuracy"][i] is None and block["operating_point"][i] is None
        assert not block["feasible"][i] and not best["feasible"][i]
        assert best["operating_point"][i] == 0 and best["accuracy"][i] is not None
    feasible = [i for i, f in enumerate(cert["feasible"]) if f]
    assert [block["operating_point"][i] for i in feasible] == \
        [best["operating_point"][i] for i in feasible]
    policy = operating.OperatingPolicy(points["operating"], cert, "refuse")
    with pytest.raises(operating.InfeasibleTauError, match="refused"):
        policy.resolve(float(TAUS[-1]))
    assert best_points["operating"] == points["operating"]
