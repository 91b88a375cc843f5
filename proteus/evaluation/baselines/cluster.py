"""Cluster router in the style of Avengers-Pro (Zhang et al. 2025; DESIGN.md section 5).

Training-free: k-means on the reference (training) split's query features, a per-cluster table of
each model's mean score and mean cost on those queries, and one trade-off knob α (see `tables`):
a query goes to its nearest centroid's cluster, and the cluster routes it to
argmax_m α·acc_n − (1 − α)·cost_n with Avengers-Pro's per-cluster min-max normalisation. α per τ
is the cheapest α whose realised accuracy on the labelled `fit` split reaches τ.

Simplifications against Avengers-Pro, all deliberate: one nearest cluster instead of summing the
top-p clusters' scores; k is a constructor argument (default 16: ~400 training queries per cluster
on MMLU-Pro's 6k training rows), not tuned; small clusters' per-model accuracy is shrunk toward the
model's global mean (`prior` pseudo-counts). Features are L2-normalised first, so k-means works in
the cosine geometry the kNN baseline uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation.baselines.base import Decisions, RouterInputs
from proteus.evaluation.baselines.knn import _unit_rows as unit_rows
from proteus.evaluation.baselines.tables import GroupPolicy, default_alphas, fit_policy


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[N] index of each row's nearest centroid (squared Euclidean; ties to the lower index).

    Args:
      x: [N, D] points.
      centroids: [K, D] centroids.
    """
    # |x − c|² = |x|² − 2 x·c + |c|²; |x|² does not change the argmin over c
    d2 = (centroids**2).sum(axis=1)[None, :] - 2.0 * (x @ centroids.T)
    return np.argmin(d2, axis=1)


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[k, D] k-means++ seeds: each next seed drawn with probability ∝ squared distance."""
    centres = [x[rng.integers(x.shape[0])]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        # all points on existing seeds (duplicate rows): any point is as good as another
        p = d2 / total if total > 0 else np.full(x.shape[0], 1.0 / x.shape[0])
        centres.append(x[rng.choice(x.shape[0], p=p)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(axis=1))
    return np.stack(centres)


def kmeans(x: np.ndarray, k: int, n_iter: int = 50, seed: int = 0) -> np.ndarray:
    """Deterministic k-means (k-means++ seeding, then at most `n_iter` Lloyd steps).

    Args:
      x: [N, D] float points.
      k: clusters (clipped to N).
      n_iter: Lloyd iterations; stops early once assignments no longer change.
      seed: seeds the numpy Generator of the k-means++ draws (the only randomness).

    Returns:
      [min(k, N), D] float64 centroids. A cluster that loses all its points keeps its previous
      centroid (it can win points back; no re-seeding, so the result depends on `seed` only).
    """
    x = np.asarray(x, np.float64)
    k = min(k, x.shape[0])
    centroids = _kmeans_pp_init(x, k, np.random.default_rng(seed))
    assign = None
    for _ in range(n_iter):
        new = nearest_centroid(x, centroids)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        # a per-cluster loop over k, not a [k, N] one-hot matmul: k is small and this is 3-4x
        # faster on [6k, 1024] features
        centroids = np.stack([x[assign == j].mean(axis=0) if np.any(assign == j) else centroids[j]
                              for j in range(k)])
    return centroids


@dataclasses.dataclass(frozen=True, eq=False)
class ClusterRouter:
    """Avengers-Pro-style cluster router; see the module docstring.

    Attributes:
      reference: labelled reference split (needs features, scores, costs): the training split.
      k: number of k-means clusters.
      alphas: [A] candidate α (1: accuracy only, 0: cost only).
      prior: pseudo-counts shrinking each cluster's per-model means toward the global means.
      normalise: "minmax" (Avengers-Pro, per cluster) or "global" (cost / c_ref; see `tables`).
      n_iter: Lloyd iterations.
      seed: k-means++ seed.
      centroids: set by `fit`: [K, D] centroids of the unit-normalised reference features.
      policy: set by `fit`: the per-cluster tables and each α's tuning accuracy and cost.
    """

    reference: RouterInputs
    k: int = 16
    alphas: np.ndarray = dataclasses.field(default_factory=default_alphas)
    prior: float = 5.0
    normalise: str = "minmax"
    n_iter: int = 50
    seed: int = 0
    centroids: np.ndarray | None = None
    policy: GroupPolicy | None = None
    name: str = "cluster"

    def fit(self, tune: RouterInputs) -> ClusterRouter:
        ref_f, ref_s, ref_c = self.reference.need(self.name, "features", "scores", "costs")
        tune_f, tune_s, tune_c = tune.need(self.name, "features", "scores", "costs")
        ref_x = unit_rows(ref_f)
        centroids = kmeans(ref_x, self.k, self.n_iter, self.seed)
        policy = fit_policy(
            (nearest_centroid(ref_x, centroids), ref_s, ref_c),
            (nearest_centroid(unit_rows(tune_f), centroids), tune_s, tune_c),
            centroids.shape[0],
            self.alphas,
            self.prior,
            self.normalise,
        )
        return dataclasses.replace(self, centroids=centroids, policy=policy)

    def clusters(self, inputs: RouterInputs) -> np.ndarray:
        """[N] cluster of each query of `inputs` (needs features and `fit`)."""
        if self.centroids is None or self.policy is None:
            raise ValueError(f"{self.name}: call fit first")
        (feats,) = inputs.need(self.name, "features")
        return nearest_centroid(unit_rows(feats), self.centroids)

    def route(self, test: RouterInputs, taus) -> Decisions:
        groups = self.clusters(test)
        return self.policy.route(groups, taus)
