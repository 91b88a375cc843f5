"""Which operating point serves a requested accuracy target τ (DESIGN.md sections 3-4).

An operating point is one way to route every query: the PROTEUS policy called at a target τ'
(`model` −1), or always one fixed model (`model` m). The candidates are fixed before any
held-out label is read: P policy targets spread over the lanes' range, and every model. Each has
an accuracy and a mean cost measured on held-out labels that neither the predictor nor the policy
trained on (`val`); the policy candidates' accuracies are made non-decreasing in τ' (isotonic
regression), which removes most of the noise that picking among many candidates would otherwise
turn into a bias.

Any advantage a candidate shows over the best single model is then discounted by z paired
standard errors, and only a clear one (more than `credit_z` of them) ranks it above that model
(`credited_accuracy`), so that the quality end is the best fixed model unless the held-out rows
show a real improvement on it.

The one rule that maps τ to a point (used by evaluation, export and serving alike):

- certified (a `proteus.evaluation.calibrate.CertificationTable` over the candidates in testing
  order): the cheapest point certified for τ; none certified → infeasible;
- uncertified: the cheapest point whose held-out accuracy is at least τ + z·sqrt(τ(1 − τ)/n)
  (n held-out queries, z = `margin_z`: a one-sided allowance for the held-out estimate's noise);
  none → infeasible.

Infeasible τ follow the fallback: "best_effort" serves them at the most accurate point (first in
testing order), flagged infeasible; "refuse" raises `InfeasibleTauError`. Because every fixed
model is a candidate, the router's quality end is at least the best single model on held-out
rows. Only the certified rule bounds misses (P(accuracy < τ) <= δ for each τ it declares
feasible); the uncertified rule's margin makes a miss less likely but guarantees nothing: a τ it
declares feasible can miss its floor on test, and its feasible range is read off `val`
accuracies, not certified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from proteus.evaluation.calibrate import CertificationTable

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
    (served best effort); reason: a human-readable explanation.
    """

    tau: float
    operating_tau: float
    point: int
    feasible: bool
    reason: str
    operating_model: int = -1


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


def candidates(policy_taus: Sequence[float], n_models: int,
               fixed_models: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The candidate points before ordering: (tau [P + M] with NaN for fixed, model [P + M])."""
    taus = np.asarray(policy_taus, np.float64)
    models = np.arange(n_models) if fixed_models else np.zeros(0, np.int64)
    return (np.concatenate([taus, np.full(models.shape, np.nan)]),
            np.concatenate([np.full(taus.shape, -1), models]).astype(np.int64))


def smoothed_accuracy(tau: np.ndarray, model: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Held-out accuracy with the policy candidates made non-decreasing in τ' (isotonic).

    tau, model, accuracy: [C] -> [C]; fixed-model entries are returned unchanged.
    """
    from scipy.optimize import isotonic_regression  # noqa: PLC0415 (evaluation/export only)

    out = np.asarray(accuracy, np.float64).copy()
    policy = np.flatnonzero(np.asarray(model) < 0)
    if policy.size > 1:
        order = policy[np.argsort(tau[policy], kind="stable")]
        out[order] = isotonic_regression(out[order]).x
    return out


def credited_accuracy(scores: np.ndarray, accuracy: np.ndarray, model: np.ndarray,
                      z: float, credit_z: float | None = None) -> np.ndarray:
    """Held-out accuracy with any advantage over the best fixed model discounted by its noise.

    The best single model on held-out rows is the incumbent. A candidate that matches or beats
    it is credited with its accuracy minus z paired standard errors of the advantage (the per-query
    differences of the two on the same rows): among dozens of candidates measured on a few
    hundred queries the apparent winner is often lucky (the winner's curse), and a router whose
    top is below always calling the best model has lost its quality end. A challenger may rank
    above the incumbent only if its advantage is clear, more than `credit_z` standard errors;
    one that is not clear is capped at the incumbent's accuracy (a tie, which the testing order
    gives to the fixed model). Candidates below the incumbent are unchanged.

    Args:
      scores: [C, N] per-query held-out scores of each candidate.
      accuracy: [C] their (smoothed) held-out accuracy.
      model: [C] fixed model index or −1 (policy).
      z: standard errors to discount.
      credit_z: standard errors a challenger must clear to rank above the incumbent (None: z;
        then every challenger is simply discounted by z).

    Returns:
      [C] credited accuracy.
    """
    accuracy = np.asarray(accuracy, np.float64)
    fixed = np.flatnonzero(np.asarray(model) >= 0)
    if fixed.size == 0 or scores.shape[1] < 2:
        return accuracy
    ref = fixed[np.argmax(accuracy[fixed])]
    diff = np.asarray(scores, np.float64) - np.asarray(scores, np.float64)[ref]
    se = diff.std(axis=1, ddof=1) / math.sqrt(scores.shape[1])
    challenger = (accuracy >= accuracy[ref]) & (np.arange(accuracy.size) != ref)
    clear = accuracy - (z if credit_z is None else credit_z) * se > accuracy[ref]
    discounted = accuracy - z * se
    credited = np.where(clear, discounted, np.minimum(discounted, accuracy[ref]))
    return np.where(challenger, credited, accuracy)


def testing_order(accuracy: np.ndarray, cost: np.ndarray, model: np.ndarray) -> np.ndarray:
    """[C] candidate indices, most accurate first; the certification's fixed sequence and the
    best-effort point (the first) both come from it.

    Ties go to fixed models first (a tie is no evidence for the learned route; in particular a
    challenger credited exactly at the incumbent's accuracy has shown no real improvement), then
    to the cheaper point.
    """
    return np.lexsort((np.asarray(cost), np.asarray(model) < 0, -np.asarray(accuracy)))


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
      table: {"tau": [C] (None/NaN for fixed), "model": [C], "accuracy": [C], "cost": [C],
        "n_heldout": n, "margin_z": z}, the candidates in testing order.
      certification: a `CertificationTable.to_dict()` over the same candidates, or None.
      fallback: "best_effort" or "refuse".
      models: [M] model names, for the reasons.
    """

    def __init__(self, table: dict[str, Any], certification: dict | None, fallback: str,
                 models: Sequence[str] = ()):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.fallback = fallback
        self.taus = np.asarray([np.nan if t is None else t for t in table["tau"]], np.float64)
        self.models = np.asarray(table["model"], np.int64)
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
        return OperatingPoint(tau, float(self.taus[j]), int(j), bool(feasible), reason,
                              int(self.models[j]))

    def describe(self, j: int) -> str:
        """'policy at τ'=0.9123' or 'fixed model gpt-4'."""
        m = int(self.models[j])
        if m < 0:
            return f"policy at τ'={self.taus[j]:.4f}"
        return f"fixed model {self.names[m] if self.names else m}"

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
