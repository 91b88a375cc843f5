"""Paired bootstrap of AIQ differences (proteus.evaluation.paired_aiq), with hand-checked
expectations."""

import numpy as np
import pytest

from proteus.evaluation import metrics
from proteus.evaluation.paired_aiq import (
    crossfit_aiq,
    crossfit_markdown,
    paired_aiq,
    paired_markdown,
    weighted_points,
)

SCORES = np.array([[1.0, 0.0], [0.0, 1.0]])
COSTS = np.array([[1.0, 2.0], [1.0, 2.0]])


def test_weighted_points_by_hand():
    choices = np.array([[0, 0], [0, 1], [-1, -1]])  # τ0: model 0; τ1: the right model; τ2 refused
    weights = np.array([[1.0, 1.0], [2.0, 0.0]])
    acc, cost = weighted_points(SCORES, COSTS, choices, weights)
    np.testing.assert_allclose(acc[:, :2], [[0.5, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(cost[:, :2], [[1.0, 1.5], [1.0, 1.0]])
    assert np.isnan(acc[:, 2]).all() and np.isnan(cost[:, 2]).all()


def test_identical_routers_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 2, (200, 3)).astype(float)
    costs = np.tile([1.0, 2.0, 4.0], (200, 1))
    ch = rng.integers(0, 3, (5, 200))
    out = paired_aiq(scores, costs, {"a": ch, "b": ch.copy()}, "a", (1.0, 4.0), n_boot=50)
    assert out == {"b": {"diff": 0.0, "lo": 0.0, "hi": 0.0}}


def test_a_dominating_router_is_told_apart_and_the_point_estimate_is_the_split_itself():
    rng = np.random.default_rng(1)
    n = 400
    scores = np.stack([rng.random(n) < 0.5, rng.random(n) < 0.6], axis=1).astype(float)
    costs = np.tile([1.0, 3.0], (n, 1))
    oracle = np.argmax(scores - 1e-3 * costs, axis=1)  # right model, cheaper on ties
    good = np.stack([np.zeros(n, int), oracle])  # [2, N]: cheap model, then the oracle
    bad = np.stack([np.zeros(n, int), np.ones(n, int)])  # cheap model, then the dear one
    out = paired_aiq(scores, costs, {"good": good, "bad": bad}, "good", (1.0, 3.0), n_boot=200)
    expected = (metrics.aiq(*_points(scores, costs, good), (1.0, 3.0))
                - metrics.aiq(*_points(scores, costs, bad), (1.0, 3.0)))
    assert abs(out["bad"]["diff"] - expected) < 1e-12
    assert 0 < out["bad"]["lo"] < out["bad"]["diff"] < out["bad"]["hi"]
    text = paired_markdown({"reference": "good", "n_boot": 200, "alpha": 0.05, "routers": out})
    assert "| bad | " in text and text.rstrip().endswith("| yes |")


def _points(scores, costs, choices):
    acc, cost = metrics.realised(scores, costs, choices)
    return cost, acc


def test_crossfit_aiq_removes_the_luck_of_many_settings():
    rng = np.random.default_rng(0)
    n = 400
    scores = np.stack([rng.random(n) < 0.5, rng.random(n) < 0.7], axis=1).astype(float)
    costs = np.tile([1.0, 3.0], (n, 1))
    steady = np.stack([np.zeros(n, int), np.ones(n, int)])  # the cheap model, then the dear one
    # 200 more settings that each send a random half of the queries to the dear model: every one
    # lies on the chord in expectation, some above it on this sample by luck
    lucky = np.concatenate([steady, (rng.random((200, n)) < 0.5).astype(int)])
    cr = (1.0, 3.0)
    plain = {name: metrics.aiq(*_points(scores, costs, ch), cr)
             for name, ch in (("steady", steady), ("lucky", lucky))}
    cv = crossfit_aiq(scores, costs, {"steady": steady, "lucky": lucky}, cr, repeats=20)
    # Two settings at x = 0 and 1: AIQ = (a0 + a1) / 2 on each half, and equal halves average
    # to the whole split's, by hand 0.5 * (mean score of model 0 + mean score of model 1).
    assert cv["steady"] == pytest.approx(plain["steady"], abs=1e-12)
    assert plain["steady"] == pytest.approx(0.5 * scores.mean(axis=0).sum())
    assert plain["lucky"] > plain["steady"] + 0.015  # the luck the plain hull collects (0.020)
    assert abs(cv["lucky"] - cv["steady"]) < 0.005  # gone once the hull is chosen elsewhere


def test_polyline_area_keeps_a_point_under_the_chord():
    # (0, 0.5), (0.5, 0.6), (1, 0.9): the hull skips the middle point (under the chord, 0.7), the
    # polyline does not: 0.5 * 0.55 + 0.5 * 0.75 = 0.65 against the hull's 0.7.
    cost, acc = [1.0, 2.0, 3.0], [0.5, 0.6, 0.9]
    assert metrics.aiq(cost, acc, (1.0, 3.0)) == pytest.approx(0.7)
    assert metrics.polyline_area(cost, acc, (1.0, 3.0)) == pytest.approx(0.65)
    assert metrics.polyline_area([2.0], [0.8], (1.0, 3.0)) == pytest.approx(0.4)  # R = 0 below
    np.testing.assert_array_equal(metrics.aiq_hull(cost + [np.nan], acc + [0.99], (1.0, 3.0))[0],
                                  [0, 2])


def test_crossfit_markdown_highest_first_to_four_decimals():
    text = crossfit_markdown({"repeats": 4, "seed": 0,
                              "routers": {"a": 0.5, "b": 0.71234, "c": 0.6, "d": 0.6}})
    assert text == (
        "\n## Cross-fitted AIQ (each router's hull chosen on one half of the test split, "
        "measured on the other; 4 random halvings)\n\n"
        "| router | cross-fitted AIQ |\n|---|---|\n"
        "| b | 0.7123 |\n| c | 0.6000 |\n| d | 0.6000 |\n| a | 0.5000 |\n")  # ties keep order

