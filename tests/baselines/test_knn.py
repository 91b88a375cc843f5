"""Tests for the kNN router."""

import numpy as np
import pytest

from proteus.evaluation.baselines import KnnRouter, RouterInputs, knn_predict


def test_knn_predict_hand_checked():
    ref_f = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    ref_s = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    ref_c = np.array([[1.0, 10.0], [3.0, 10.0], [1.0, 10.0], [1.0, 20.0]])
    # cosine ignores scale: [5, 0.2] is nearest refs 0 and 1; [0, 1] is nearest refs 2 and 3.
    p, c = knn_predict(ref_f, ref_s, ref_c, np.array([[5.0, 0.2], [0.0, 1.0]]), k=2, chunk=1)
    np.testing.assert_allclose(p, [[1.0, 0.5], [0.0, 1.0]])
    np.testing.assert_allclose(c, [[2.0, 10.0], [1.0, 15.0]])
    p_all, _ = knn_predict(ref_f, ref_s, ref_c, np.array([[1.0, 1.0]]), k=10)
    np.testing.assert_allclose(p_all, [[0.5, 0.75]])  # k clipped to the 4 references


def test_knn_router_routes_by_neighbourhood(toy):
    # Reference: the toy queries themselves; q0/q3 form the "easy" cluster, q1/q2 the "hard" one.
    router = KnnRouter(reference=toy, k=2).fit(toy)
    assert router.plugin.c_ref == pytest.approx(10.0)
    test = RouterInputs(features=np.array([[1.0, 0.05], [0.05, 1.0]]))
    d = router.route(test, [0.5, 1.0])
    np.testing.assert_array_equal(d.choices, [[0, 0], [0, 1]])
    np.testing.assert_array_equal(d.feasible, [True, True])
    with pytest.raises(ValueError, match="knn needs RouterInputs.features"):
        router.route(RouterInputs(p_hat=np.zeros((1, 2))), [0.5])
