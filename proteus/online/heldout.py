"""A stream's static point measured on the artifact's held-out rows with models routed around.

The export stores the evaluation's held-out rows inside the artifact (`heldout/`: the `val` and
`calib` rows with every model's labels, never trained on; `proteus.training.reopen`). When the
drift test excludes a model (`proteus.online.watch`), the service asks what routing around it
leaves of the stream's static point: the point is routed on those rows as `adapter.serve` routes
it at rest, the excluded models replaced by the router's next choice (`adapter.choose`), and
their mean score is the answer. Read here with numpy and json only: serving never imports the
training side.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from proteus.online import adapter
from proteus.serving import Router, artifact


class HeldoutRows(NamedTuple):
    """The artifact's held-out rows: features [n, D] float32, scores [n, M], task ids [n]."""

    features: np.ndarray
    scores: np.ndarray
    task_ids: np.ndarray


def load_heldout(router: Router) -> HeldoutRows | None:
    """The `val` and `calib` rows of the (verified) artifact; None when it carries none."""
    stored = artifact.read_heldout_files(router.path, router.manifest)
    if stored is None:
        return None
    queries, arrays = stored
    features, scores = np.asarray(arrays["features"], np.float32), np.asarray(arrays["scores"])
    # data labels: one the router's task vocabulary does not hold is unknown (-1), not an error
    task_ids = (router.vocabulary.label_ids(queries["tasks"]) if router.tasks
                else np.full(len(features), -1, np.int32))
    return HeldoutRows(features, scores, np.asarray(task_ids, np.int32))


class HeldoutAccuracy:
    """Mean held-out score of static points with models routed around, cached per (operating
    point, set): the streams whose τ resolve to the same point share one measure."""

    def __init__(self, router: Router, knob: adapter.Knob, rows: HeldoutRows | None):
        self.router, self.knob, self.rows = router, knob, rows
        self._cache: dict[tuple[int, tuple[int, ...]], float] = {}

    def without(self, static: adapter.StaticPoint, excluded: tuple[int, ...]) -> float | None:
        """The held-out accuracy of `static` with the `excluded` models (sorted indices) routed
        around; None for an artifact without held-out rows."""
        if self.rows is None:
            return None
        key = (static.point.point, excluded)
        if key not in self._cache:
            self._cache[key] = self._measure(static, excluded)
        return self._cache[key]

    def _measure(self, static: adapter.StaticPoint, excluded: tuple[int, ...]) -> float:
        rows, model = self.rows, static.point.operating_model
        if 0 <= model not in excluded:  # a fixed model still served
            return float(rows.scores[:, model].mean())
        # the policy at the point's τ' (at the base's τ' for an excluded fixed model, as
        # `adapter.serve` routes it), the excluded models replaced by the next choice
        tau = (static.point.operating_tau if model < 0
               else float(self.knob.operating_tau(np.asarray([static.base]))[0]))
        n = len(rows.features)
        raw = self.router.run(rows.features, np.full(n, tau, np.float32), None, rows.task_ids)
        mask = np.zeros((n, len(self.router.models)), bool)
        mask[:, list(excluded)] = True
        chosen = adapter.choose(raw.mu, raw.p_hat, raw.c_hat, self.router.cost_scale, mask)
        return float(rows.scores[np.arange(n), chosen].mean())
