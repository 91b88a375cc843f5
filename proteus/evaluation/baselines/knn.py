"""kNN router (RouterBench / CARROT baseline; DESIGN.md section 5).

For each routed query, the k most similar queries of a reference split (the training split) by
cosine similarity of their features give p̂_knn = the mean of their realised scores and ĉ_knn = the
mean of their realised costs ([N, M] each). Routing is then the plug-in rule of
`plugin.PluginRouter` on (p̂_knn, ĉ_knn), with λ per τ tuned on the labelled `fit` split.
It does not use the shared predictor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation.baselines.base import Decisions, RouterInputs
from proteus.evaluation.baselines.plugin import PluginRouter


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def knn_predict(
    ref_features: np.ndarray,
    ref_scores: np.ndarray,
    ref_costs: np.ndarray,
    features: np.ndarray,
    k: int,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean scores and costs of each query's k nearest reference queries (cosine similarity).

    Args:
      ref_features: [R, D] reference features.
      ref_scores: [R, M] reference realised scores.
      ref_costs: [R, M] reference realised costs.
      features: [N, D] query features.
      k: neighbours (clipped to R).
      chunk: queries per similarity block ([chunk, R] floats in memory).

    Returns:
      (p_knn [N, M], c_knn [N, M]) float64. Ties in similarity go to the lower reference index.
    """
    ref = _unit_rows(np.asarray(ref_features, np.float64))
    q = _unit_rows(np.asarray(features, np.float64))
    k = min(k, ref.shape[0])
    p_out = np.empty((q.shape[0], ref_scores.shape[1]))
    c_out = np.empty_like(p_out)
    for start in range(0, q.shape[0], chunk):
        sim = q[start : start + chunk] @ ref.T
        # stable sort of −sim: exact ties keep reference order, so results are deterministic
        nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        p_out[start : start + chunk] = ref_scores[nn].mean(axis=1)
        c_out[start : start + chunk] = ref_costs[nn].mean(axis=1)
    return p_out, c_out


@dataclasses.dataclass(frozen=True, eq=False)
class KnnRouter:
    """kNN estimates plus a λ-tuned plug-in rule.

    Attributes:
      reference: labelled reference split (needs features, scores, costs): the training split.
      k: neighbours.
      plugin: the plug-in router tuned on the `fit` split; its c_ref defaults to the reference
        split's highest per-model mean cost.
    """

    reference: RouterInputs
    k: int = 10
    plugin: PluginRouter = dataclasses.field(default_factory=lambda: PluginRouter(name="knn"))
    name: str = "knn"

    def predict(self, inputs: RouterInputs) -> RouterInputs:
        """`inputs` with p_hat and c_hat replaced by the kNN estimates (needs features)."""
        ref_f, ref_s, ref_c = self.reference.need(self.name, "features", "scores", "costs")
        (feats,) = inputs.need(self.name, "features")
        p_knn, c_knn = knn_predict(ref_f, ref_s, ref_c, feats, self.k)
        return dataclasses.replace(inputs, p_hat=p_knn, c_hat=c_knn)

    def fit(self, tune: RouterInputs) -> KnnRouter:
        plugin = self.plugin
        if plugin.c_ref is None:
            (ref_c,) = self.reference.need(self.name, "costs")
            plugin = dataclasses.replace(plugin, c_ref=float(ref_c.mean(0).max()))
        return dataclasses.replace(self, plugin=plugin.fit(self.predict(tune)))

    def route(self, test: RouterInputs, taus) -> Decisions:
        return self.plugin.route(self.predict(test), taus)
