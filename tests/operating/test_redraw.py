"""The redraw evaluation (proteus.operating.redraw): hand-checked shares on a tiny pool, and a
check with power: the window certificate holds over many re-cuts of a held-out pool, and the same
certificate made optimistic by 0.01 fails it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proteus.operating import bounds, certificate, redraw

SETTINGS = {"margin_z": 1.0, "credit_z": 2.0, "delta": 0.05, "method": "auto",
            "fallback": "best_effort"}


def _nested_pool(h: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-model candidates whose correct rows are nested (row i is solved by every candidate
    whose accuracy exceeds its difficulty u_i), like policy points at nearby τ': accuracies
    0.50..0.95 every 0.005, cost rising with accuracy. Returns (scores [C, H], costs [C, H],
    cand_tau [C] NaN, cand_model [C])."""
    acc = np.round(np.arange(0.50, 0.9501, 0.005), 3)
    u = np.random.default_rng(seed).random(h)
    scores = (u[None, :] < acc[:, None]).astype(np.float64)
    costs = np.broadcast_to(np.exp(8 * acc)[:, None], scores.shape).copy()
    return scores, costs, np.full(acc.size, np.nan), np.arange(acc.size)


def test_redraw_counts_misses_and_costs_by_hand():
    """Two fixed models on 6 rows, one draw of 2/2/2 rows: each share is 0 or 1 and the cost
    ratio is the certified cost over the uncertified one on the τ both serve."""
    scores = np.array([[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0]], float)
    costs = np.array([[4.0] * 6, [1.0] * 6])
    out = redraw.redraw(scores, costs, [np.nan, np.nan], [0, 1], {"val": 2, "calib": 2,
                        "test": 2}, [0.3], {"proteus_certified": {"window": 2}},
                        SETTINGS | {"margin_z": 0.0}, tolerance=0.0, redraws=1, seed=0)
    r = out["routers"]
    assert out["taus"] == [0.3] and out["redraws"] == 1
    assert r["proteus"]["served_share"] == [1.0]
    # 2 calibration rows certify nothing at δ = 0.05 (the first point's p-value is >= 1/3)
    assert r["proteus_certified"]["served_share"] == [0.0]
    assert r["proteus_certified"]["miss_share"] == [0.0]
    assert r["proteus_certified"]["cost_vs_uncertified"] is None  # no τ served by both
    assert out["limit"] == pytest.approx(0.05 + 2 * math.sqrt(0.05 * 0.95))
    with pytest.raises(ValueError, match="exceed"):
        redraw.redraw(scores, costs, [np.nan] * 2, [0, 1], {"val": 3, "calib": 3, "test": 3},
                      [0.3], {}, SETTINGS, 0.0)


def _optimistic(shift: float):
    """`bounds.window_pvalues` computed at τ − shift: a bound optimistic by `shift`."""
    exact = bounds.window_pvalues

    def shifted(means, n, taus, method, window, tolerance=0.0):
        return exact(means, n, np.asarray(taus) - shift, method, window, tolerance)
    return shifted


@pytest.mark.parametrize("shift", [0.0, 0.01])
def test_window_certificate_holds_over_redraws_and_fails_when_optimistic(shift, monkeypatch):
    """300 re-cuts of a 3,400-row pool into val 400 / calib 1,500 / test 1,500: with the exact
    bound every τ's certified-and-missed share is within δ + 2 Monte Carlo standard errors; with
    the bound shifted by 0.01 in the optimistic direction some τ breaks it."""
    if shift:
        monkeypatch.setattr(certificate.bounds, "window_pvalues", _optimistic(shift))
    scores, costs, cand_tau, cand_model = _nested_pool(3400)
    sizes = {"val": 400, "calib": 1500, "test": 1500}
    out = redraw.redraw(scores, costs, cand_tau, cand_model, sizes, [0.6, 0.7, 0.8, 0.9],
                        {"proteus_certified": {"window": 1500}}, SETTINGS, tolerance=0.0,
                        redraws=300, seed=1)
    cert = out["routers"]["proteus_certified"]
    assert min(cert["served_share"]) > 0.99  # not vacuous: every τ is certified
    assert cert["holds"] is (shift == 0.0), cert["miss_share"]
    if not shift:  # the exact promise costs more than the uncertified rule's val margin here
        assert cert["cost_vs_uncertified"] > 1.0


def test_one_draw_by_hand():
    """Two fixed models on 6 rows, val [0, 1], calib [2, 4], test [3, 5]. On val model 0 scores
    1.0 at cost 4 and model 1 scores 0.5 at cost 1: the table is [model 0, model 1]. With z = 0
    the uncertified rule serves τ=0.3 at model 1 (cheapest with accuracy >= 0.3; on test [0, 0]:
    0.0; over all 6 rows 0.5) and τ=0.8 at model 0 (1.0 everywhere, cost 4). Two calibration
    rows certify nothing (p >= 0.3^2 > δ), so the certified router serves no τ: NaN."""
    scores = np.array([[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0]], float)
    costs = np.array([[4.0] * 6, [1.0] * 6])
    rows = {"val": np.array([0, 1]), "calib": np.array([2, 4]), "test": np.array([3, 5])}
    out = redraw.one_draw(scores, costs, np.array([np.nan, np.nan]), np.array([0, 1]), rows,
                          np.array([0.3, 0.8]), {"cert": {"window": 2}},
                          SETTINGS | {"margin_z": 0.0})
    assert set(out) == {"proteus", "cert"}
    unc = out["proteus"]
    assert unc["feasible"].tolist() == [True, True]
    np.testing.assert_array_equal(unc["accuracy"], [0.0, 1.0])
    np.testing.assert_array_equal(unc["cost"], [1.0, 4.0])
    np.testing.assert_array_equal(unc["pool_accuracy"], [0.5, 1.0])
    cert = out["cert"]
    assert cert["feasible"].tolist() == [False, False]
    for key in ("accuracy", "cost", "pool_accuracy"):
        assert np.isnan(cert[key]).all()
