"""The only coupling between the online controller and the router's notion of operating point.

The controller acts on one scalar knob, the operating τ' passed to `Router.run`. Everything it
needs from the router goes through the two functions below, so if an operating point becomes
something else (e.g. an index into a table that also holds the fixed models), only this module
changes: `static_point` must return a scalar position and its range, `serve` must route at a
position.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from proteus.operating import OperatingPoint
from proteus.serving import Decisions, Router


class StaticPoint(NamedTuple):
    """Where τ is served without feedback, and the range the knob may move in (τ' units)."""

    base: float  # τ'_0 of the static (certified when the artifact is) operating point
    lo: float  # lowest lane τ': the cheapest the router can be
    hi: float  # highest lane τ': the highest quality the router can buy
    point: OperatingPoint  # the static resolution (feasibility, reason, certified point)


def static_point(router: Router, tau: float) -> StaticPoint:
    """The static operating point of τ and the artifact's lane range."""
    point = router.resolve(tau)
    lanes = [float(t) for t in router.manifest["lambda"]["taus"]]
    return StaticPoint(float(point.operating_tau), min(lanes), max(lanes), point)


def serve(router: Router, features: np.ndarray, positions: np.ndarray,
          statics: list[StaticPoint], inverse: np.ndarray) -> Decisions:
    """Route [B, D] float32 features at knob positions [B] (τ' here); rows use statics[inverse].

    The decisions keep the static point's τ, point and feasibility and report the τ' actually
    used; the reason says the operating point was moved online.
    """
    raw = router.run(features, np.asarray(positions, np.float32))
    decisions = router.assemble(raw, [s.point for s in statics], inverse)
    return decisions._replace(operating_tau=np.asarray(positions, np.float64))
