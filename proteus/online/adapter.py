"""The only coupling between the online controller and the router's notion of operating point.

The controller moves one scalar knob in accuracy units (`proteus.online.controller`). Everything
it needs from the router goes through this module: `knob` (the mapping between knob positions
and operating τ'), `static_point` (where τ sits on the knob without feedback) and `serve` (route
at knob positions). The artifact's operating table also holds fixed-model points; the knob moves
only the policy (continuous in τ'), and a fixed-model static point is placed on it by its
accuracy (`static_point`). The knob's positions are the lanes' training accuracy
(`lambda.lane_accuracy`, measured on the `policy` split the duals trained on, not held out).

Routing around a model (`serve`, when the drift test has excluded models or a stream's static
point routes around some) re-applies the routing rule to the exported function's own μ, p̂ and
ĉ with the excluded models left out (`proteus.operating.exclusion`); rows whose choice is not
excluded keep the exported function's choice itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from proteus.operating import OperatingPoint, exclusion
from proteus.serving import Decisions, Router

# Every step up the lanes moves the knob by at least this fraction of its τ' step: lanes whose
# training accuracy is flat would otherwise collapse a τ' range into one knob position. 0.5 (not
# 0.25): a step in realised accuracy hidden in flat lanes (a regressed model dropped between two
# of them) is then spread over a wider knob range, and the integral does not cycle across it.
MIN_SLOPE = 0.5


class Knob(NamedTuple):
    """Knob position of each lane: taus [K] τ' increasing, positions [K] increasing."""

    taus: np.ndarray
    positions: np.ndarray

    def position(self, operating_tau: float) -> float:
        """τ' -> knob position (linear between lanes, clipped to the lane range)."""
        return float(np.interp(operating_tau, self.taus, self.positions))

    def operating_tau(self, positions: np.ndarray) -> np.ndarray:
        """[B] knob positions -> [B] τ'."""
        return np.interp(positions, self.positions, self.taus)


def knob(router: Router, min_slope: float = MIN_SLOPE) -> Knob:
    """The lanes' training accuracy (on `policy`) made strictly increasing: position_k >=
    position_{k-1} + min_slope (τ'_k − τ'_{k-1}). So a shortfall of 0.01 moves the router by
    about 0.01 of accuracy wherever the lanes are informative, and through flat lanes quickly."""
    lam = router.manifest["lambda"]
    taus = np.asarray(lam["taus"], np.float64)
    acc = np.asarray(lam["lane_accuracy"], np.float64)
    pos = acc.copy()
    for k in range(1, len(pos)):
        pos[k] = max(acc[k], pos[k - 1] + min_slope * (taus[k] - taus[k - 1]))
    return Knob(taus, pos)


class StaticPoint(NamedTuple):
    """Where τ is served without feedback, and the range the knob may move in."""

    base: float  # knob position of the static (certified when the artifact is) point
    lo: float  # position of the lowest lane: the cheapest the router can be
    hi: float  # position of the highest lane: the most quality the router can buy
    point: OperatingPoint  # the static resolution (feasibility, reason, certified point)


def static_point(router: Router, k: Knob, tau: float) -> StaticPoint:
    """The static operating point of τ on the knob.

    The knob moves the policy only. A policy point sits at its τ'; a fixed-model point (the
    artifact's operating table also holds every single model) sits where the lanes' training
    accuracy equals that point's `val` accuracy, so the online router starts from about the same
    quality (the two are measured on different splits) and then
    follows feedback along the policy's lanes.
    """
    point = router.resolve(tau)
    lo, hi = float(k.positions[0]), float(k.positions[-1])
    if point.operating_model >= 0:
        base = float(np.clip(router.policy.accuracy[point.point], lo, hi))
    else:
        base = k.position(point.operating_tau)
    return StaticPoint(base, lo, hi, point)


class Served(NamedTuple):
    """`serve`'s answer: the decisions, and per row [B] the model the router chose before the
    drift test's exclusions (int32; the static point's own applied) and whether the row is a
    probe (bool: kept on an excluded model)."""

    decisions: Decisions
    unmasked: np.ndarray
    probed: np.ndarray


def serve(router: Router, k: Knob, features: np.ndarray, positions: np.ndarray,
          statics: list[StaticPoint], inverse: np.ndarray,
          task_ids: np.ndarray | None = None, excluded: np.ndarray | None = None,
          probe: Callable[[int, int], bool] | None = None) -> Served:
    """Route [B, D] float32 features at knob positions [B]; row i's static point is
    statics[inverse[i]]. `excluded` [B, M] bool: models row i must not go to (None: none);
    `probe(i, m)`, asked for each row whose choice m is excluded: True keeps m for that row.

    A row at rest (its position is its static point's `base`) is routed at the static point
    itself: a fixed model (unless that model is excluded for it), or the policy at its τ' around
    the models the point itself excludes (never probed: they are the point's, not the drift
    test's), so that a stream no feedback has moved routes exactly as the static certified
    router. The decisions keep the static point's τ, point and feasibility and report the τ'
    used (NaN for a fixed model).
    """
    positions = np.asarray(positions, np.float64)
    taus = k.operating_tau(positions)
    fixed = np.full(len(positions), -1, np.int32)
    own: list[tuple[int, ...]] = [()] * len(positions)  # what a static point routes around
    for i, j in enumerate(np.asarray(inverse).tolist()):
        static = statics[j]
        if positions[i] != static.base:
            continue
        model = static.point.operating_model
        if model < 0:
            taus[i], own[i] = static.point.operating_tau, static.point.excluded
        elif excluded is None or not excluded[i, model]:
            fixed[i], taus[i] = model, np.nan
    raw = router.run(features, taus.astype(np.float32), fixed, task_ids)
    rows, scale = np.arange(len(raw.model)), router.cost_scale
    own_mask = exclusion.rows_mask(own, len(router.models))
    unmasked = exclusion.route_around(raw.model, raw.mu, raw.p_hat, raw.c_hat, scale, own_mask)
    probed = np.zeros(len(unmasked), bool)
    model = unmasked
    if excluded is not None:
        hit = excluded[rows, unmasked]
        for i in np.flatnonzero(hit) if probe is not None else ():
            probed[i] = probe(int(i), int(unmasked[i]))
        # only the rows whose choice is excluded (and not kept as a probe) are chosen again
        model = exclusion.route_around(unmasked, raw.mu, raw.p_hat, raw.c_hat, scale,
                                       own_mask | (excluded & ~probed[:, None]))
    raw = raw._replace(model=model)
    decisions = router.assemble(raw, [s.point for s in statics], inverse)
    return Served(decisions._replace(operating_tau=taus), unmasked, probed)
