"""A stream's static point measured on the artifact's held-out rows with models routed around.

The export stores the evaluation's held-out rows inside the artifact (`heldout/`: the `val` and
`calib` rows with every model's labels, never trained on; `proteus.training.reopen`). When the
drift test excludes a model (`proteus.online.watch`), the service asks what routing around it
leaves of the stream's static point: the point is routed on those rows as `adapter.serve` routes
it at rest, the excluded models replaced by the router's next choice
(`proteus.operating.exclusion`), and their mean score is the answer. Read here with numpy and
json only: serving never imports the training side.

`HeldoutAccuracy.hull` measures more of the same: the stream's knob positions from its static
point up, each routed around the excluded models, as (cost, accuracy) points on those rows, and
keeps the upper concave envelope (`Hull`). A stream off its point is then served as a mix of
the two envelope vertices around its position, request by request (`Hull.draw`): where routing
around a model leaves a jump in the router's accuracy (the slice without Yi-34B, on these rows:
0.756 to 0.763 from the static point up to the lane at knob 0.823, then 0.830 at 6.3x that cost
one lane higher), no single position holds the setpoint and the integral cycles across the
jump, blocks of requests far below it; on the envelope the accuracy the stream buys is
continuous in its position and costs what the cheapest mix of the router's own points costs
(docs/online.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from proteus.online import adapter
from proteus.operating import exclusion
from proteus.serving import Router, artifact


class HeldoutRows(NamedTuple):
    """The artifact's held-out rows: features [n, D] float32, scores [n, M], costs [n, M] (USD),
    task ids [n]."""

    features: np.ndarray
    scores: np.ndarray
    costs: np.ndarray
    task_ids: np.ndarray


class Hull(NamedTuple):
    """The upper concave envelope of (cost, accuracy) over a static point's knob positions
    routed around some models: per vertex [V], the knob position it is served at (`served`; the
    first is the static point's `base`), its mean held-out score (increasing) and cost (USD per
    request; increasing after the first vertex, which stays first even where a point above it
    is cheaper)."""

    served: np.ndarray
    accuracy: np.ndarray
    cost: np.ndarray

    def axis(self, start: float) -> np.ndarray:
        """[V] where the vertices sit on the controller's knob: the first at `base`, the others
        at base + start + (their accuracy − the first's). One unit of knob per unit of held-out
        accuracy, the knob's own scale (`adapter.knob`), from `start` above the point (the dead
        band, where the stream is served at its point: one that leaves it starts from what it
        had and buys accuracy as its integral asks, instead of a jump's share at once)."""
        gain = self.accuracy[1:] - self.accuracy[0]
        return self.served[0] + np.concatenate([[0.0], start + gain])

    def draw(self, position: float, unit: float, start: float) -> float:
        """The knob position one request of a stream at `position` is served at, `unit` in
        [0, 1) drawn from the request: between vertices a < b on `axis(start)`, b with
        probability (position − a) / (b − a), so the expected accuracy and cost are linear in
        the position along each segment; outside the vertices' range, the nearest vertex."""
        v = self.axis(start)
        j = int(np.searchsorted(v, position, side="right"))
        if j == 0:
            return float(self.served[0])
        if j == len(v):
            return float(self.served[-1])
        share = (position - v[j - 1]) / (v[j] - v[j - 1])
        return float(self.served[j] if unit < share else self.served[j - 1])


def upper_envelope(served: np.ndarray, cost: np.ndarray, accuracy: np.ndarray) -> Hull:
    """The upper concave envelope of accuracy against cost over [K] points, from the first (the
    static point: always kept) to the most accurate one: each later vertex is dearer and more
    accurate than the one before it, and no point lies above a segment between two vertices."""
    keep = [0]
    for i in sorted(range(1, len(served)), key=lambda i: (cost[i], -accuracy[i])):
        if accuracy[i] <= accuracy[keep[-1]]:
            continue  # no more accurate than a vertex at most as dear
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]  # b under the segment a -> i: not a vertex
            if ((accuracy[b] - accuracy[a]) * (cost[i] - cost[a])
                    > (accuracy[i] - accuracy[a]) * (cost[b] - cost[a])):
                break
            keep.pop()
        keep.append(i)
    return Hull(*(np.asarray(x, np.float64)[keep] for x in (served, accuracy, cost)))


def load_heldout(router: Router) -> HeldoutRows | None:
    """The `val` and `calib` rows of the (verified) artifact, or `calib` alone when a model's
    column was fitted on `val` (`artifact.fitted_on_val`: an onboarded model); None when it
    carries none."""
    stored = artifact.read_heldout_files(router.path, router.manifest)
    if stored is None:
        return None
    queries, arrays = stored
    keep = (np.asarray(queries["split"]) == "calib" if artifact.fitted_on_val(router.manifest)
            else np.ones(len(queries["split"]), bool))
    features = np.asarray(arrays["features"], np.float32)[keep]
    scores = np.asarray(arrays["scores"])[keep]
    costs = np.asarray(arrays["costs"], np.float64)[keep]
    tasks = [t for t, k in zip(queries["tasks"], keep, strict=True) if k]
    # data labels: one the router's task vocabulary does not hold is unknown (-1), not an error
    task_ids = (router.vocabulary.label_ids(tasks) if router.tasks
                else np.full(len(features), -1, np.int32))
    return HeldoutRows(features, scores, costs, np.asarray(task_ids, np.int32))


class HeldoutAccuracy:
    """Mean held-out score of static points with models routed around, and their envelopes,
    cached per (operating point, set): the streams whose τ resolve to the same point share one
    measure."""

    def __init__(self, router: Router, knob: adapter.Knob, rows: HeldoutRows | None):
        self.router, self.knob, self.rows = router, knob, rows
        self._cache: dict[tuple[int, tuple[int, ...]], float] = {}
        self._hulls: dict[tuple[int, tuple[int, ...]], Hull] = {}

    def without(self, static: adapter.StaticPoint, excluded: tuple[int, ...]) -> float | None:
        """The held-out accuracy of `static` with the `excluded` models (sorted indices) routed
        around; None for an artifact without held-out rows."""
        if self.rows is None:
            return None
        key = (static.point.point, excluded)
        if key not in self._cache:
            self._cache[key] = self._measure(static, excluded)
        return self._cache[key]

    def hull(self, static: adapter.StaticPoint, excluded: tuple[int, ...]) -> Hull | None:
        """The envelope of `static`'s knob positions from its base up (the base and every lane
        above it), each routed around the `excluded` models (sorted indices); None for an
        artifact without held-out rows."""
        if self.rows is None:
            return None
        key = (static.point.point, excluded)
        if key not in self._hulls:
            lanes = self.knob.positions[self.knob.positions > static.base]
            positions = np.concatenate([[static.base], lanes])
            chosen = [self._chosen(static, excluded, None)]
            chosen += [self._chosen(static, excluded, float(p)) for p in lanes]
            n = np.arange(len(self.rows.features))
            accuracy = [self.rows.scores[n, c].mean() for c in chosen]
            cost = [self.rows.costs[n, c].mean() for c in chosen]
            self._hulls[key] = upper_envelope(positions, np.asarray(cost), np.asarray(accuracy))
        return self._hulls[key]

    def _measure(self, static: adapter.StaticPoint, excluded: tuple[int, ...]) -> float:
        chosen = self._chosen(static, excluded, None)
        return float(self.rows.scores[np.arange(len(chosen)), chosen].mean())

    def _chosen(self, static: adapter.StaticPoint, excluded: tuple[int, ...],
                position: float | None) -> np.ndarray:
        """[n] the model each held-out row goes to at knob `position` (None: the static point
        itself, as `adapter.serve` routes a stream at rest), the excluded models replaced by
        the router's next choice."""
        rows, model, n = self.rows, static.point.operating_model, len(self.rows.features)
        if position is None and 0 <= model not in excluded:  # a fixed model still served
            return np.full(n, model, np.int32)
        if position is None:
            # the policy at the point's τ' (at the base's τ' for an excluded fixed model, as
            # `adapter.serve` routes it)
            tau = (static.point.operating_tau if model < 0
                   else float(self.knob.operating_tau(np.asarray([static.base]))[0]))
        else:
            tau = float(self.knob.operating_tau(np.asarray([position]))[0])
        raw = self.router.run(rows.features, np.full(n, tau, np.float32), None, rows.task_ids)
        if position is None and model < 0:  # at rest: around the point's own exclusions too
            excluded = (*excluded, *static.point.excluded)
        mask = exclusion.rows_mask([excluded] * n, len(self.router.models))
        return exclusion.choose(raw.mu, raw.p_hat, raw.c_hat, self.router.cost_scale, mask)
