"""Tests for the Avengers-Pro-style cluster router and its k-means."""

import numpy as np
import pytest

from proteus.evaluation.baselines import ClusterRouter, RouterInputs, kmeans, make_router
from proteus.evaluation.baselines.cluster import nearest_centroid


def _blobs() -> RouterInputs:
    """Two well-separated directions, 4 queries each, and 3 models costing 1, 2 and 10.

    Cluster A (features near [1, 0]): model 0 right, model 1 wrong. Cluster B (near [0, 1]):
    model 0 wrong, model 1 right. Model 2 is right everywhere. With plain cluster means (prior
    0) and min-max normalisation, A always routes to model 0, and B switches from model 0 to
    model 1 when α·1 > (1 − α)·1/9, i.e. α > 0.1:
      α <= 0.1: accuracy 0.5, cost 1;   α > 0.1: accuracy 1.0, cost 1.5.
    """
    eps = np.array([0.0, 0.05, 0.1, 0.15])
    features = np.concatenate([np.stack([np.ones(4), eps], 1), np.stack([eps, np.ones(4)], 1)])
    a, b = [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]
    scores = np.array([a] * 4 + [b] * 4)
    costs = np.tile([1.0, 2.0, 10.0], (8, 1))
    return RouterInputs(scores, costs, features=features)


def test_kmeans_finds_separated_blobs_deterministically():
    x = _blobs().features
    centroids = kmeans(x, 2, seed=3)
    groups = nearest_centroid(x, centroids)
    assert len(set(groups[:4].tolist())) == 1 and len(set(groups[4:].tolist())) == 1
    assert groups[0] != groups[4]
    np.testing.assert_allclose(centroids[groups[0]], x[:4].mean(0))
    np.testing.assert_array_equal(kmeans(x, 2, seed=3), centroids)
    assert kmeans(x, 20).shape == (8, 2)  # k clipped to N
    np.testing.assert_array_equal(nearest_centroid(np.array([[0.0, 1.0]]), np.eye(2)), [1])


def test_cluster_router_sends_each_cluster_to_its_best_model():
    ref = _blobs()
    router = ClusterRouter(reference=ref, k=2, prior=0.0).fit(ref)
    test = RouterInputs(features=np.array([[0.02, 3.0], [2.0, 0.1]]))  # B then A; no labels
    d = router.route(test, [0.5, 0.75, 1.0, 1.01])
    np.testing.assert_array_equal(d.choices, [[0, 0], [1, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(d.feasible, [True, True, True, False])
    assert d.setting[0] == 0.0 and 0.1 < d.setting[1] < 0.12  # the cheapest α reaching τ
    assert d.setting[3] == d.setting[2]
    again = ClusterRouter(reference=ref, k=2, prior=0.0).fit(ref).route(test, [0.75])
    np.testing.assert_array_equal(again.choices[0], d.choices[1])


def test_cluster_prior_keeps_tiny_clusters_on_the_global_best():
    # At α = 1 (accuracy only) with plain means, each cluster picks its specialist (ties with
    # model 2 go to the cheaper one). With 40 pseudo-counts against 4 queries per cluster, the
    # specialist's accuracy is (4·1 + 40·0.5)/44 ≈ 0.55 < 1, so both clusters pick model 2.
    ref = _blobs()
    for prior, expected in [(0.0, [0, 1]), (40.0, [2, 2])]:
        router = ClusterRouter(reference=ref, k=2, prior=prior).fit(ref)
        assert router.alphas[-1] == 1.0
        top = router.policy.choice[-1][router.clusters(ref)]  # [8] model per query at α = 1
        np.testing.assert_array_equal(top, np.repeat(expected, 4))


def test_cluster_router_registered_and_needs_features(toy):
    router = make_router("cluster", reference=toy, k=2, prior=0.0).fit(toy)
    d = router.route(toy.without_labels(), [0.5, 1.0])
    np.testing.assert_array_equal(d.choices, [[0, 0, 0, 0], [0, 1, 1, 0]])
    with pytest.raises(ValueError, match="cluster needs RouterInputs.features"):
        router.route(RouterInputs(p_hat=np.zeros((1, 2))), [0.5])
    with pytest.raises(ValueError, match="call fit"):
        ClusterRouter(reference=toy).route(toy, [0.5])
