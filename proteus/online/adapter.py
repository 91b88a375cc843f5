"""The only coupling between the online controller and the router's notion of operating point.

The controller moves one scalar knob in accuracy units (`proteus.online.controller`). Everything
it needs from the router goes through this module: `knob` (the mapping between knob positions
and operating τ'), `static_point` (where τ sits on the knob without feedback) and `serve` (route
at knob positions). The artifact's operating table also holds fixed-model points; the knob moves
only the policy (continuous in τ'), and a fixed-model static point is placed on it by its
accuracy (`static_point`). The knob's positions are the lanes' training accuracy
(`lambda.lane_accuracy`, measured on the `policy` split the duals trained on, not held out).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from proteus.operating import OperatingPoint
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


def serve(router: Router, k: Knob, features: np.ndarray, positions: np.ndarray,
          statics: list[StaticPoint], inverse: np.ndarray,
          task_ids: np.ndarray | None = None) -> Decisions:
    """Route [B, D] float32 features at knob positions [B]; row i's static point is
    statics[inverse[i]]. The decisions keep the static point's τ, point and feasibility and
    report the τ' actually used."""
    taus = k.operating_tau(np.asarray(positions, np.float64))
    raw = router.run(features, taus.astype(np.float32), None, task_ids)
    decisions = router.assemble(raw, [s.point for s in statics], inverse)
    return decisions._replace(operating_tau=taus)
