"""Which operating point serves a requested accuracy target τ (DESIGN.md sections 3-4).

An operating point is one way to route every query: the PROTEUS policy called at a target τ'
(`model` −1), or always one fixed model (`model` m). The table of candidate points, in testing
order with their held-out accuracy and cost, is built by `proteus.operating.table`; the
certificate over them by `proteus.operating.certificate`.

The one rule that maps τ to a point (used by evaluation, export and serving alike):

- certified (a `CertificationTable` over the candidates in testing order): the cheapest point
  certified for τ; none certified → infeasible;
- uncertified: the cheapest point whose held-out accuracy is at least τ + z·sqrt(τ(1 − τ)/n)
  (n held-out queries, z = `margin_z`: a one-sided allowance for the held-out estimate's noise);
  none → infeasible.

Infeasible τ follow the fallback: "best_effort" serves them at the most accurate point (first in
testing order), flagged infeasible; "refuse" raises `InfeasibleTauError`. Because every fixed
model is a candidate, the router's quality end is at least the best single model on held-out
rows. Only the certified rule bounds misses; the uncertified rule's margin makes a miss less
likely but guarantees nothing: a τ it declares feasible can miss its floor on test, and its
feasible range is read off `val` accuracies, not certified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from proteus.operating.certificate import CertificationTable
from proteus.operating.exclusion import table_excluded
from proteus.operating.table import table_taus

FALLBACKS = ("best_effort", "refuse")
MEMO_SIZE = 4096  # resolved τ values kept per policy (tenants repeat a few τ; the rule is pure)


class InfeasibleTauError(ValueError):
    """τ is not feasible and the fallback policy is "refuse"; `.point` says why."""

    def __init__(self, point: OperatingPoint):
        super().__init__(f"τ={point.tau:.4f} is infeasible and refused: {point.reason}")
        self.point = point


class OperatingPoint(NamedTuple):
    """How one requested τ is served.

    tau: the requested target; operating_tau: the τ' the policy is called with (NaN for a fixed
    model); operating_model: the fixed model's index, or −1 for the policy; point: the index of
    the candidate in testing order; feasible: False when τ is above what the artifact supports
    (served best effort); reason: a human-readable explanation; excluded: the models a policy
    point routes around (`proteus.operating.exclusion`; () for none).
    """

    tau: float
    operating_tau: float
    point: int
    feasible: bool
    reason: str
    operating_model: int = -1
    excluded: tuple[int, ...] = ()


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


def margin(tau: float, n: int, z: float) -> float:
    """The uncertified rule's allowance z·sqrt(τ(1 − τ)/n) for n held-out queries."""
    return z * math.sqrt(max(tau * (1.0 - tau), 0.0) / max(n, 1))


def uncertified_choice(accuracy: Sequence[float], cost: Sequence[float], tau: float, n: int,
                       z: float) -> tuple[int, bool]:
    """(index, feasible): the cheapest point with accuracy >= τ + margin, else the most accurate.

    accuracy, cost: [C] held-out accuracy and mean cost of the points in testing order.
    """
    acc, cost = np.asarray(accuracy, np.float64), np.asarray(cost, np.float64)
    ok = acc >= tau + margin(tau, n, z) - 1e-12
    if not ok.any():
        return 0, False
    return int(np.argmin(np.where(ok, cost, np.inf))), True


class OperatingPolicy:
    """Maps a requested τ to an `OperatingPoint` (see the module docstring).

    Args:
      table: {"tau": [C] (None/NaN for fixed), "model": [C], "accuracy": [C], "cost": [C],
        "n_heldout": n, "margin_z": z, optionally "excluded": [C] lists of model indices}, the
        candidates in testing order.
      certification: a `CertificationTable.to_dict()` over the same candidates, or None.
      fallback: "best_effort" or "refuse".
      models: [M] model names, for the reasons.
    """

    def __init__(self, table: dict[str, Any], certification: dict | None, fallback: str,
                 models: Sequence[str] = ()):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.fallback = fallback
        self.taus = table_taus(table)
        self.models = np.asarray(table["model"], np.int64)
        self.excluded = table_excluded(table)
        self.accuracy = np.asarray(table["accuracy"], np.float64)
        self.cost = np.asarray(table["cost"], np.float64)
        self.n_heldout, self.margin_z = int(table["n_heldout"]), float(table["margin_z"])
        self.names = list(models)
        self.table = None if certification is None else CertificationTable.from_dict(
            certification)
        self.tau_range = feasible_range(table, certification)
        self._memo: dict[float, OperatingPoint] = {}

    @property
    def certified(self) -> bool:
        return self.table is not None

    def resolve(self, tau: Any) -> OperatingPoint:
        """Raises ValueError for τ outside [0, 1], InfeasibleTauError when refused.

        The table is fixed, so each τ's point is computed once and remembered (a serving hot
        path: the rule and its reason cost ~35 µs a request; a lookup ~1 µs).
        """
        tau = check_tau(tau)
        point = self._memo.get(tau)
        if point is None:
            point = self._resolve(tau)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[tau] = point
        if not point.feasible and self.fallback == "refuse":
            raise InfeasibleTauError(point)
        return point

    def _resolve(self, tau: float) -> OperatingPoint:
        """The operating point of a checked τ (feasible or not; the fallback is the caller's)."""
        if self.certified:
            j, feasible, reason = self.table.lookup(tau)
            j = j if feasible else 0
            if not feasible and self.table.fallback != self.fallback:
                reason += f" (serving fallback: {self.fallback})"
        else:
            j, feasible = uncertified_choice(self.accuracy, self.cost, tau, self.n_heldout,
                                             self.margin_z)
            reason = self._uncertified_reason(tau, j, feasible)
        if self.certified and self.excluded[j]:  # the certificate's words name no models
            reason += f"; served as {self.describe(j)}"
        return OperatingPoint(tau, float(self.taus[j]), int(j), bool(feasible), reason,
                              int(self.models[j]), self.excluded[j])

    def describe(self, j: int) -> str:
        """'policy at τ'=0.9123' (with ' without gpt-4' when the point routes around it) or
        'fixed model gpt-4'."""
        name = lambda m: self.names[m] if self.names else str(m)
        m = int(self.models[j])
        if m >= 0:
            return f"fixed model {name(m)}"
        around = ", ".join(name(e) for e in self.excluded[j])
        return f"policy at τ'={self.taus[j]:.4f}" + (f" without {around}" if around else "")

    def _uncertified_reason(self, tau: float, j: int, feasible: bool) -> str:
        need = tau + margin(tau, self.n_heldout, self.margin_z)
        if feasible:
            return (f"uncertified: {self.describe(j)}, the cheapest point with validation "
                    f"accuracy {self.accuracy[j]:.4f} >= {need:.4f} (τ={tau:.4f} plus "
                    f"{self.margin_z:g} standard errors on n={self.n_heldout})")
        action = "refused" if self.fallback == "refuse" else f"best effort: {self.describe(j)}"
        return (f"infeasible (uncertified): no point reaches validation accuracy {need:.4f} for "
                f"τ={tau:.4f} (best {self.accuracy[0]:.4f}); {action}")


def feasible_range(table: dict[str, Any], certification: dict | None
                   ) -> tuple[float, float | None]:
    """(min, max) of the feasible τ; max None when nothing is feasible.

    Certified: the certification grid's lowest τ and highest certified τ. Uncertified: 0 and the
    largest τ the uncertified rule accepts (solved on the `val` accuracy of the best point; an
    estimate, not a guarantee).
    """
    if certification is not None:
        taus = [float(t) for t in certification["taus"]]
        ok = [t for t, f in zip(taus, certification["feasible"], strict=True) if f]
        return taus[0], (max(ok) if ok else None)
    best, n, z = max(table["accuracy"]), int(table["n_heldout"]), float(table["margin_z"])
    # τ + z·sqrt(τ(1 − τ)/n) <= best  <=>  (1 + a)τ² − (2·best + a)τ + best² >= 0 for τ <= best,
    # with a = z²/n: the feasible τ end at the smaller root of that quadratic.
    a = z * z / max(n, 1)
    b = 2.0 * best + a
    return 0.0, float((b - math.sqrt(max(b * b - 4.0 * (1.0 + a) * best * best, 0.0)))
                      / (2.0 * (1.0 + a)))
