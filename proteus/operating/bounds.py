"""Finite-sample bounds on an operating point's accuracy (DESIGN.md section 4).

p-values for H0: mean score < τ, with n held-out queries and mean score a:
  * "clopper_pearson" (binary scores; exact): P(Binomial(n, τ) >= n·a) = I_τ(n·a, n − n·a + 1),
    the regularised incomplete beta. Its inversion is the exact Clopper–Pearson lower bound.
  * "hoeffding_bentkus" ([0, 1] scores; Bates et al. 2021, RCPS): with losses 1 − score, mean
    R = 1 − a and α = 1 − τ: min(exp(−n·h(min(R, α), α)), e·P(Binomial(n, α) <= ceil(n·R))),
    h(x, y) = x log(x/y) + (1−x) log((1−x)/(1−y)). Valid for any [0, 1] scores, much tighter than
    Hoeffding for accuracies near 1.
  * "hoeffding": exp(−2n (a − τ)_+²).
  "auto" uses Clopper–Pearson when every score is 0 or 1, Hoeffding–Bentkus otherwise.

Lower confidence bounds (reported per point) invert the same p-value: LCB = sup{τ : p(τ) <= δ}.
Clopper–Pearson's is the δ-quantile of Beta(k, n − k + 1) and Hoeffding's is closed form; the
Hoeffding–Bentkus bound is found by 64-step bisection. Every bound is kept on the conservative
side (p(LCB) <= δ). All of it is float64 numpy and `scipy.special` (the regularised incomplete beta
and its inverse, the functions behind `scipy.stats.binom` and `scipy.stats.beta`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

METHODS = ("clopper_pearson", "hoeffding_bentkus", "hoeffding")


def _pvalue(method: str, mean: np.ndarray, n: int, tau: np.ndarray) -> np.ndarray:
    """p-values of H0: accuracy < τ; `mean` and `tau` broadcast together (float64)."""
    mean, tau = np.broadcast_arrays(np.asarray(mean, np.float64), np.asarray(tau, np.float64))
    if method == "clopper_pearson":
        k = np.round(mean * n)
        # P(Bin(n, τ) >= k) = I_τ(k, n − k + 1) (`scipy.stats.binom.sf(k − 1, n, τ)`, faster)
        p = special.betainc(np.maximum(k, 1.0), n - k + 1.0, np.clip(tau, 0.0, 1.0))
        return np.where(k <= 0, 1.0, p)
    if method == "hoeffding":
        gap = np.maximum(mean - tau, 0.0)
        return np.exp(-2.0 * n * gap * gap)
    if method == "hoeffding_bentkus":
        risk = np.clip(1.0 - mean, 0.0, 1.0)
        alpha = np.clip(1.0 - tau, 1e-15, 1.0 - 1e-15)
        x = np.minimum(risk, alpha)
        h = special.xlogy(x, x / alpha) + special.xlogy(1.0 - x, (1.0 - x) / (1.0 - alpha))
        m = np.ceil(n * risk - 1e-9)
        # P(Bin(n, α) <= m) = I_{1−α}(n − m, m + 1) (`scipy.stats.binom.cdf(m, n, α)`, faster)
        cdf = np.where(m >= n, 1.0, special.betainc(np.maximum(n - m, 1.0), m + 1.0, 1.0 - alpha))
        return np.minimum(np.minimum(np.exp(-n * h), math.e * cdf), 1.0)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _check_named(method: str) -> None:
    """`pvalues` and `lower_bounds` see only means: "auto" (which needs the scores) is refused."""
    if method not in METHODS:
        why = " ('auto' needs the per-query scores: use certify())" if method == "auto" else ""
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}{why}")


def resolve_method(method: str, scores: np.ndarray) -> str:
    """The p-value to use for `scores` [..., N]: "auto" -> Clopper-Pearson when every score is
    0 or 1, else Hoeffding-Bentkus; a named method is checked against the scores."""
    binary = bool(np.all((scores == 0.0) | (scores == 1.0)))
    if method == "auto":
        return "clopper_pearson" if binary else "hoeffding_bentkus"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected 'auto' or one of {METHODS}")
    if method == "clopper_pearson" and not binary:
        raise ValueError("clopper_pearson needs binary (0/1) scores; use hoeffding_bentkus")
    return method


def pvalues(means, n: int, taus, method: str) -> np.ndarray:
    """p-values of H0: acc_j < τ for every (τ, point).

    Args:
      means: [P] calibration mean scores.
      n: number of calibration queries.
      taus: [T] targets.
      method: one of `METHODS` ("auto" is resolved by `certify`, which sees the scores).

    Returns:
      [T, P] float64 p-values.
    """
    _check_named(method)
    means = np.atleast_1d(np.asarray(means, np.float64))
    taus = np.atleast_1d(np.asarray(taus, np.float64))
    return _pvalue(method, means[None, :], int(n), taus[:, None])


def lower_bounds(means, n: int, delta: float, method: str) -> np.ndarray:
    """One-sided (1 − δ) lower confidence bounds of accuracy: [P] means -> [P] float64.

    sup{τ : p(τ) <= δ}, returned on the side where p <= δ.
    """
    _check_named(method)
    means = np.atleast_1d(np.asarray(means, np.float64))
    if method == "hoeffding":
        lcb = np.maximum(means - math.sqrt(math.log(1.0 / delta) / (2.0 * n)), 0.0)
    elif method == "clopper_pearson":
        k = np.round(means * n)
        lcb = special.betaincinv(np.maximum(k, 1.0), n - k + 1.0, delta)  # Beta δ-quantile
        lcb = np.where(k <= 0, 0.0, lcb)
    else:  # hoeffding_bentkus: p <= δ where either part is, and each part is monotone in τ
        lcb = np.maximum(_hoeffding_kl_lower(means, n, delta), _bentkus_lower(means, n, delta))
    for i in range(64):  # a quantile or closed form can land a few ulps on the wrong side
        over = (lcb > 0) & (_pvalue(method, means, n, lcb) > delta)
        if not over.any():
            break
        lcb = np.where(over, np.maximum(lcb - np.spacing(lcb) * 2.0**i, 0.0), lcb)
    return lcb


def _hoeffding_kl_lower(means: np.ndarray, n: int, delta: float) -> np.ndarray:
    """[P] sup{τ : exp(−n·h(min(R, α), α)) <= δ}, with α = 1 − τ and R = 1 − mean.

    For τ >= mean (α <= R) h is 0 and p = 1; below the mean h(R, α) falls as τ rises, so the
    bound is found by bisection on [0, mean]; 56 halvings reach float64 resolution.
    """
    mean = np.clip(means, 0.0, 1.0)
    risk = 1.0 - mean
    need = math.log(1.0 / delta) / n  # exp(−n·h) <= δ  <=>  h >= log(1/δ)/n
    lo, hi = np.zeros_like(mean), mean.copy()
    with np.errstate(divide="ignore", invalid="ignore"):  # mean 0: no bound (0 below)
        for _ in range(56):
            mid = 0.5 * (lo + hi)  # τ in (0, mean]: α = 1 − τ in [R, 1), 1 − α = τ
            h = special.xlogy(risk, risk / (1.0 - mid)) + special.xlogy(mean, mean / mid)
            ok = h >= need
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(mean > 0.0, lo, 0.0)


def _bentkus_lower(means: np.ndarray, n: int, delta: float) -> np.ndarray:
    """[P] sup{τ : e·P(Bin(n, 1 − τ) <= m) <= δ}; P(Bin(n, 1 − τ) <= m) = I_τ(n − m, m + 1)."""
    m = np.ceil(n * np.clip(1.0 - means, 0.0, 1.0) - 1e-9)
    q = special.betaincinv(np.maximum(n - m, 1.0), m + 1.0, min(delta / math.e, 1.0))
    return np.where(m >= n, 0.0, q)


def clopper_pearson_lower(k, n: int, delta: float) -> np.ndarray:
    """Exact one-sided Clopper–Pearson lower bound: the δ-quantile of Beta(k, n − k + 1).

    Args:
      k: [P] successes (0 <= k <= n).
      n: trials.
      delta: one-sided error level.

    Returns:
      [P] float64 (0 where k = 0). E.g. n = k = 10, δ = 0.05: 0.05^(1/10) = 0.7411.
    """
    k = np.atleast_1d(np.asarray(k, np.float64))
    if np.any((k < 0) | (k > n)):
        raise ValueError(f"successes must be in [0, n={n}], got {k}")
    return lower_bounds(k / n, n, delta, "clopper_pearson")


# ------------------------------------------------------------------ a window of future requests

Q_GRID = 2048  # cells of the population-accuracy grid behind the [0, 1]-score window p-values


def window_need(taus, window: int, tolerance: float) -> np.ndarray:
    """[T] int: the fewest correct answers (binary scores) a window of `window` requests needs
    for accuracy >= τ − tolerance (up to 1e-9 of float rounding, as the evaluation counts a met
    floor)."""
    taus = np.atleast_1d(np.asarray(taus, np.float64))
    return np.ceil(window * (taus - tolerance - 1e-9)).astype(np.int64)


def window_pvalues(means, n: int, taus, method: str, window: int,
                   tolerance: float = 0.0) -> np.ndarray:
    """p-values of "the point passes and a window of N future requests misses τ − ε".

    For each (τ, point): an upper bound π on P(calibration mean >= the point's mean AND the mean
    score of the next N requests < τ − ε), for requests i.i.d. with the calibration queries.
    Certifying the points with π <= δ in fixed sequence (`certificate.certify`) gives, for every
    τ, P(τ certified and the chosen point's N-window accuracy < τ − ε) <= δ. Why: for any
    population accuracy q, fixed-sequence testing with the threshold test "calibration mean >= m*"
    admits a point with accuracy below q with probability at most β(q) = P(mean of n at q >= m*)
    (the first such point in the fixed order must pass), so the chosen point's accuracy p_J is
    stochastically above a law with CDF β, and the window, independent of the calibration,
    misses with probability F(p_J), F(p) = P(N-window mean at p < τ − ε), decreasing in p.
    Hence P(miss) <= E_{Q~β}[F(Q)]:

      * "clopper_pearson" (binary): β is the Beta(k, n − k + 1) CDF and the bound is exactly
        P(BetaBinomial(N, k, n − k + 1) < need) (k = n·mean, need = `window_need`). It equals
        the worst case over every union of the n calibration and N window rows of
        P(the calibration holds >= k of its successes) (a hypergeometric tail), so it holds for
        any exchangeable split too, e.g. a held-out pool re-cut at random.
      * "hoeffding_bentkus", "hoeffding" ([0, 1] scores): β and F are that method's tail bounds
        (`pvalues`, upper tail for the calibration, lower tail for the window) and E[F(Q)] is
        bounded on a grid of Q_GRID cells (F at each cell's left end: conservative).

    As N grows the bound tends to the population p-value at τ − ε; N = 0 is refused.

    Args:
      means: [P] calibration mean scores.
      n: calibration queries.
      taus: [T] targets.
      method: one of `METHODS`.
      window: N, requests in the window the promise is about (>= 1).
      tolerance: ε in [0, 1): the window promise is accuracy >= τ − ε.

    Returns:
      [T, P] float64 p-values.
    """
    _check_named(method)
    if int(window) < 1 or not 0.0 <= tolerance < 1.0:
        raise ValueError(f"window must be >= 1 and tolerance in [0, 1), got {window}, "
                         f"{tolerance}")
    means = np.atleast_1d(np.asarray(means, np.float64))
    taus = np.atleast_1d(np.asarray(taus, np.float64))
    need = window_need(taus, int(window), tolerance)  # [T]
    if method == "clopper_pearson":
        from scipy import stats  # noqa: PLC0415 (certification only; serving never calls this)

        k = np.clip(np.round(means * n), 0, n)[None, :]  # [1, P] calibration successes
        need_t = np.clip(need, 1, window)[:, None].astype(np.float64)  # [T, 1]
        # P(BetaBinomial(N, k, n − k + 1) < need) = P(Hypergeom(n + N, k + need − 1, n) >= k)
        p = stats.hypergeom.sf(k - 1.0, n + window, k + need_t - 1.0, n)
        p = np.where(k <= 0, 1.0, np.clip(p, 0.0, 1.0))  # no successes: no evidence
        return np.where(need[:, None] <= 0, 0.0, p)
    return _window_pvalues_graded(means, n, taus, method, int(window), tolerance)


def _window_pvalues_graded(means: np.ndarray, n: int, taus: np.ndarray, method: str,
                           window: int, tolerance: float) -> np.ndarray:
    """[T, P] E_{Q~β}[F(Q)] on the grid q_0 = 0 < ... < q_G = 1 (see `window_pvalues`).

    With G the CDF of Q (G <= β, G(1) <= 1) and F decreasing, summation by parts gives
    E[F(Q)] <= F(q_{G-1}) + Σ_{i=1}^{G-1} β(q_i)·(F(q_{i-1}) − F(q_i)), each term on the
    conservative side; β depends on the point only and F on τ only, so it is one matrix product.
    """
    means, where = np.unique(means, return_inverse=True)  # points often share a mean
    q = np.linspace(0.0, 1.0, Q_GRID + 1)  # [G + 1]
    beta = np.minimum(_pvalue(method, means[:, None], n, q[None, :]), 1.0)  # [P', G + 1]
    floor = np.clip(taus - tolerance, 0.0, 1.0)[:, None]  # [T, 1] the window's floor τ − ε
    # F(q) = P(window mean < τ − ε | mean q) <= P(window loss mean >= 1 − (τ − ε) | 1 − q)
    miss = np.where(q[None, :] <= floor, 1.0,
                    np.minimum(_pvalue(method, 1.0 - floor, window, 1.0 - q[None, :]), 1.0))
    miss = np.minimum.accumulate(miss, axis=1)  # monotone envelope (the bound is, up to ulps)
    steps = miss[:, :-2] - miss[:, 1:-1]  # [T, G − 1]: F(q_{i−1}) − F(q_i), i = 1..G − 1
    p = miss[:, -2][:, None] + steps @ beta[:, 1:-1].T  # [T, P']
    return np.where(floor <= 0.0, 0.0, np.clip(p, 0.0, 1.0))[:, where.reshape(-1)]
