"""Per-model AUC and calibration error of the shared predictor, by hand."""

import numpy as np
import pytest

from proteus.evaluation.predictor_quality import (
    auc,
    average_ranks,
    calibration_error,
    predictor_quality,
    quality_markdown,
)


def test_auc_by_hand():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 pairs ordered right
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # a tie counts half
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_average_ranks_by_hand():
    # 0.1 is first; 0.2 second; the two 0.3s share ranks 3 and 4; the three 0.7s ranks 5-7
    values = np.array([0.3, 0.1, 0.7, 0.3, 0.2, 0.7, 0.7])
    np.testing.assert_array_equal(average_ranks(values), [3.5, 1, 6, 3.5, 2, 6, 6])
    np.testing.assert_array_equal(average_ranks(np.array([2.0])), [1.0])


def test_calibration_error_by_hand():
    # two bins: {0.15, 0.15} vs scores {0, 1} -> |0.15 − 0.5|; {0.95, 0.95} vs {1, 1} -> 0.05
    p = np.array([0.15, 0.15, 0.95, 0.95])
    assert calibration_error(p, np.array([0, 1, 1, 1])) == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)
    assert calibration_error(np.full(4, 0.5), np.array([0, 1, 0, 1])) == 0.0


def test_predictor_quality_per_model_and_means():
    p_hat = np.array([[0.9, 0.5], [0.1, 0.5], [0.8, 0.5], [0.2, 0.5]])
    scores = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], float)
    q = predictor_quality(p_hat, scores, ["a", "b"])
    assert q["auc"] == {"a": 1.0, "b": 0.5}
    assert q["ece"]["b"] == 0.0 and q["mean_auc"] == 0.75
    text = quality_markdown(q)
    assert "| a | 1.000 | " in text and "| b | 0.500 | 0.000 |" in text and "0.750" in text
    assert "task prior" not in text
    text = quality_markdown({**q, "task_prior": ["law", "math"]})
    assert "Calibrated with a task prior over 2 tasks" in text and "| a | 1.000 | " in text
