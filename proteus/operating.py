"""Which operating point serves a requested accuracy target τ (DESIGN.md section 4).

With a certification table (`proteus.calibrate.CertificationTable` plus the operating points'
τ'), τ maps to the cheapest operating point certified for it. Without one, τ is served as asked
within the range the training lanes reached on held-out labels: a τ below the lowest lane is
served at that lane (a stricter target), a τ above the lanes' best accuracy is infeasible.
Infeasible τ follow the fallback: "best_effort" serves them at the highest-quality point, flagged
infeasible; "refuse" raises `InfeasibleTauError`. Nothing silently misses its floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from proteus.calibrate import CertificationTable

FALLBACKS = ("best_effort", "refuse")


class InfeasibleTauError(ValueError):
    """τ is not feasible and the fallback policy is "refuse"; `.point` says why."""

    def __init__(self, point: OperatingPoint):
        super().__init__(f"τ={point.tau:.4f} is infeasible and refused: {point.reason}")
        self.point = point


class OperatingPoint(NamedTuple):
    """How one requested τ is served.

    tau: the requested target; operating_tau: the τ' the router is called with; point: index of
    the certified operating point (−1 without certification); feasible: False when τ is above what
    the artifact supports (served best effort); reason: a human-readable explanation.
    """

    tau: float
    operating_tau: float
    point: int
    feasible: bool
    reason: str


def check_tau(tau: Any) -> float:
    """`tau` as a float in [0, 1]; raises ValueError (never returns NaN).

    The one check for a requested τ (Python API, CLI and HTTP): strings ("0.9"), booleans,
    complex numbers, None, NaN and values outside [0, 1] are refused, never coerced.
    """
    if isinstance(tau, np.ndarray) and tau.ndim == 0:
        tau = tau[()]  # a 0-d array -> its numpy scalar (dtype kept, so bools stay bools)
    if isinstance(tau, bool | np.bool_) or not isinstance(
            tau, int | float | np.integer | np.floating):
        raise ValueError(f"tau must be a number in [0, 1], got {tau!r:.80}")
    value = float(tau)
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise ValueError(f"tau must be a number in [0, 1], got {value!r}")
    return value


def check_taus(tau: Any, n: int) -> np.ndarray:
    """One τ for all n queries, or one per query -> [n] float64, each checked by `check_tau`."""
    if np.ndim(tau) == 0 and not isinstance(tau, list | tuple):
        return np.full(n, check_tau(tau), np.float64)
    if isinstance(tau, np.ndarray) and tau.dtype.kind in "iuf":  # checked as one array
        values = tau.astype(np.float64).ravel()
        bad = ~((values >= 0.0) & (values <= 1.0))
        if tau.ndim == 1 and bad.any():
            check_tau(float(values[np.argmax(bad)]))  # raises, naming the first bad value
    else:
        values = np.asarray([check_tau(t) for t in tau] if np.ndim(tau) == 1 else [np.nan])
    if np.ndim(tau) != 1 or values.shape != (n,):
        raise ValueError(f"tau must be a number in [0, 1] or one number per query ({n}), got "
                         f"shape {np.shape(tau)}")
    return values


class OperatingPolicy:
    """Maps a requested τ to an `OperatingPoint` (see the module docstring).

    Args:
      lane_taus: [K] the training lanes' τ, increasing.
      lane_accuracy: [K] accuracy each lane reached on held-out labels.
      certification: a `CertificationTable.to_dict()` plus "operating_taus" [P], or None.
      fallback: "best_effort" (infeasible τ: the highest-quality point, flagged) or "refuse".
    """

    def __init__(self, lane_taus: Sequence[float], lane_accuracy: Sequence[float],
                 certification: dict | None, fallback: str):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.fallback = fallback
        self.lane_taus = [float(t) for t in lane_taus]
        self.table = self.operating_taus = None
        if certification is not None:
            self.table = CertificationTable.from_dict(certification)
            self.operating_taus = [float(t) for t in certification["operating_taus"]]
        self.tau_range = feasible_range(self.lane_taus, lane_accuracy, certification)

    @property
    def certified(self) -> bool:
        return self.table is not None

    def resolve(self, tau: Any) -> OperatingPoint:
        """Raises ValueError for τ outside [0, 1], InfeasibleTauError when refused."""
        tau = check_tau(tau)
        point = self._certified(tau) if self.certified else self._uncertified(tau)
        if not point.feasible and self.fallback == "refuse":
            raise InfeasibleTauError(point)
        return point

    def _certified(self, tau: float) -> OperatingPoint:
        route_to, feasible, reason = self.table.lookup(tau)
        if not feasible:
            route_to = 0  # the most conservative point (unused when refusing)
            if self.table.fallback != self.fallback:
                reason += f" (serving fallback: {self.fallback})"
        return OperatingPoint(tau, self.operating_taus[route_to], int(route_to), bool(feasible),
                              reason)

    def _uncertified(self, tau: float) -> OperatingPoint:
        lo, hi = self.tau_range
        if tau > hi:
            top = self.lane_taus[-1]
            action = f"best effort at the highest lane τ={top:.4f}"
            if self.fallback == "refuse":
                action = "refused"
            why = (f"infeasible (uncertified): τ={tau:.4f} is above the highest accuracy any "
                   f"training lane reached on held-out labels ({hi:.4f}); {action}")
            return OperatingPoint(tau, top, -1, False, why)
        if tau < lo:
            return OperatingPoint(tau, lo, -1, True,
                                  f"uncertified: τ={tau:.4f} is below the lowest trained τ; "
                                  f"routed at τ={lo:.4f} (a stricter target)")
        return OperatingPoint(tau, tau, -1, True,
                              f"uncertified: τ={tau:.4f} is within the trained range "
                              f"[{lo:.4f}, {hi:.4f}]")


def feasible_range(lane_taus: Sequence[float], lane_accuracy: Sequence[float],
                   certification: dict | None) -> tuple[float, float | None]:
    """(min, max) of the served τ: τ <= max is feasible, τ < min is routed at min's decision.

    Certified: min = the table's lowest τ, max = its highest certified τ (None: none is).
    Uncertified: [lowest lane τ, highest accuracy a lane reached on held-out labels].
    """
    if certification is None:
        return float(lane_taus[0]), float(np.max(lane_accuracy))
    taus = [float(t) for t in certification["taus"]]
    ok = [t for t, f in zip(taus, certification["feasible"], strict=True) if f]
    return taus[0], (max(ok) if ok else None)
