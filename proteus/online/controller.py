"""The online floor controller: one per (tenant, τ bucket), driven by delayed, partial feedback.

The controller moves ONE scalar knob, the position p of the operating point on the artifact's
lane axis, in accuracy units; `proteus.online.adapter` turns p into the operating τ' that
`Router.run(features, operating_tau)` takes (p is τ' re-read through the lanes' training
accuracy on the `policy` split, see there). The request's τ first resolves to its static
operating point τ'_0 (the cheapest certified point, or τ itself uncertified), at position p_0,
and the stream is served at

    p = clip(p_0 + u, p_lo, p_hi)        (the artifact's lane range)

Why τ' and not log λ: the error the controller sees (τ minus a realised score) is in accuracy
units, and τ' is in the same units: the lanes were trained so that the accuracy at τ' is about
τ', so the plant's gain d accuracy / d τ' is of order 1 where the router is feasible and the
integral gain has a natural scale (gain k: a shortfall of 0.01 per feedback moves the knob by
0.01 k). λ spans orders of magnitude between cheap and near-oracle lanes, is 0 at the bottom lane
(log λ undefined there) and its gain varies by lane. The lane range is a hard, known actuator
range, which is exactly what anti-windup needs. The certificate is indexed by τ' too, so "u >= 0"
reads directly as "at least as conservative as the certified point". Where the trained policy
saturates (higher τ' lanes that buy no more accuracy) d accuracy / d τ' falls to ~0.1
and a τ' integrator becomes 10x slower; reading τ' through the lanes' training accuracy keeps
the gain near 1 there too, at no cost elsewhere (`adapter.knob`).

Control law, on each feedback score s in [0, 1] (setpoint r = τ + margin):

    e   = r − s                                    (per-feedback error; ACI, Gibbs & Candès 2021)
    k   = k_i · (boost if r − â > z · se(â) else 1) (a significant shortfall integrates faster)
    I  <- clip(I + k e, u_min, u_max)               (integral; clamped: anti-windup; e is
                                                     corrected for the knob's move since the
                                                     decision: `predicted_error`)
    â  <- ρ â + (1 − ρ) s                           (forgetting window of ~1/(1 − ρ) feedbacks)
    u   = clip(I + k_p (r − â) + k_d (â_prev − â), u_min, u_max)

The integral is not leaky on purpose: as long as it is not clamped, I_n − I_0 = k_i Σ (r − s_j),
so the mean feedback score is r − (I_n − I_0) / (k_i n): the long-run accuracy is held at the
setpoint whatever the drift (the adaptive-conformal argument). Clamping (the actuator is at a
lane bound) is the only way it can be lost, and then the stream is infeasible or over-served and
`state.saturated` says so. The P and D terms act on the forgetting-window estimate â; they are
off by default. The boost is gain scheduling on evidence: the plain gain must be small for the
integral's own noise (each Bernoulli score moves it) to stay well inside the window tolerance,
which makes it slow to climb out of a sudden shortfall (a regressed model); while â is more
than z standard errors below the setpoint (se of a Bernoulli at r under the forgetting window)
the step is `boost` times larger. The boost is decided on â before the feedback it scales (so
the gain does not depend on that score: E[step] = gain x E[error], and the long-run argument
holds for the boosted sum); boosting only shortfalls keeps it conservative: boosted steps have a
positive mean error, so the plain steps must carry a negative one, and the mean score ends at or
above r.

Certificate interplay (default, `allow_below_certified=False`): u >= 0 forever, the certified
point is a floor and the controller only buys quality; and while |u| < `dead_band` the stream is
served at the static point itself (`adapter.serve`), so a stream that no sustained shortfall has
moved routes exactly as the static certified router. The integral alone crosses the dead band on
noise now and then (a few unlucky scores, boosted): a reflected random walk does, however
strong its drift down. So leaving the point also needs a slow estimate â_slow (forgetting factor
`confirm_forget`, ~200 feedbacks) below τ itself when the integral crosses: noise that moved the
integral hardly moves â_slow, a regressed model moves both. Below τ, not the setpoint: the
certificate already promises τ over windows at the point, and a stream between τ and
τ + margin is within it (chosen on val and `calib` replays, docs/online_settings.md). Once off
its point, the stream steers to the setpoint as before and stays off until |u| < dead_band
(â_slow recovers exactly because the stream is served higher: no chatter). The certified point
a floor and the dead band were chosen on val replays (docs/online_settings.md): the slice's
lanes just below its certified point fall off a cliff (0.78 -> 0.69 realised accuracy between
τ' 0.698 and 0.675), and small moves above it on noise cost up to 1.6x. With
`allow_below_certified=True`, after `trust_after` feedbacks the controller may go below the
certified point down to the lowest lane (the realised feedback of this very stream then carries
the floor: the certificate is a calibration-time bound for exchangeable traffic).

Budget: an optional cost cap B (USD per request) has its own dual ν >= 0, in knob units,

    ν <- clip(ν + k_b (c / B − 1), 0, p_hi − p_lo)       (c: realised cost of a fed-back request)

and bounds the knob from above: u_budget = (p_hi − p_0) − ν. With one monotone knob the two
constraints leave an interval [u_floor, u_budget] of admissible offsets, and the cheapest point
of it is u_floor, the floor controller's own output (an integral controller settles where the
floor just holds). So the knob is u_floor while the interval is not empty; when it is (the
budget cannot pay for the floor), `priority` decides: "floor" (default) keeps u_floor and
reports `budget_binding`, "budget" serves at u_budget and the stream's accuracy is allowed below
τ (it shows in the state, never silently).

Re-pointing (`repoint`): when the per-model drift test (`proteus.online.drift`) excludes a model
or readmits it, the stream's routing changes under the controller. Its integral is then set back
to what it was before the drift began (the service passes the value it held when the test's
statistic was last 0: its climb since compensated a shortfall that routing around the model
removes), the estimate â restarts at the setpoint, and feedback on decisions made before the
change (`repointed`) only counts (`record`): it describes routing that is no longer served.

Everything here is plain Python on floats: the service keeps one `ControllerState` per stream,
the store persists it as JSON.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Gains and limits of every controller of a service (the same for all streams)."""

    k_i: float = 0.003  # integral gain (knob units per unit error per feedback)
    k_p: float = 0.0  # proportional gain on the forgetting-window shortfall (r − â)
    k_d: float = 0.0  # derivative gain on the measurement (â_prev − â)
    margin: float = 0.02  # setpoint r = τ + margin: window noise needs headroom
    forget: float = 0.95  # ρ: the estimate â forgets with an effective window 1/(1 − ρ)
    boost: float = 4.0  # integral gain multiplier while the shortfall is significant (1: off)
    boost_z: float = 1.0  # ... significant: r − â > boost_z standard errors of â
    smith: float = 1.0  # delay compensation: weight of the knob's move since the decision
    # |u| below this serves the static point itself (knob units): a stream leaves its certified
    # point on a sustained shortfall, not on a few unlucky scores (docs/online_settings.md)
    dead_band: float = 0.05
    # > 0: the stream leaves its static point only while a slow estimate (this forgetting
    # factor: ~200 feedbacks at 0.995) is below τ too; once left, the dead band alone
    # brings it back. 0: the dead band alone (docs/online_settings.md, val replays)
    confirm_forget: float = 0.995
    trust_after: int = 100  # feedbacks before the knob may go below the static point
    # True: after trust_after feedbacks the knob may go below the static (certified) point; off
    # by default: below it the slice's lanes fall off a cliff (docs/online_settings.md, val replays)
    allow_below_certified: bool = False
    budget: float | None = None  # USD per request; None: no cost constraint
    k_b: float = 0.002  # budget dual step (knob units per unit relative overspend)
    priority: str = "floor"  # when floor and budget conflict: "floor" | "budget"

    def __post_init__(self):
        if self.priority not in ("floor", "budget"):
            raise ValueError(f"priority must be 'floor' or 'budget', got {self.priority!r}")
        if not self.boost >= 1.0:
            raise ValueError(f"boost must be >= 1, got {self.boost!r}")
        for name in ("k_i", "k_p", "k_d", "k_b", "boost_z", "smith", "dead_band"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("forget", "confirm_forget"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.budget is not None and not self.budget > 0.0:
            raise ValueError(f"budget must be > 0 USD per request, got {self.budget!r}")
        if self.trust_after < 0:
            raise ValueError(f"trust_after must be >= 0, got {self.trust_after!r}")


@dataclasses.dataclass
class ControllerState:
    """One stream's controller (JSON-able via `to_dict` / `from_dict`).

    tau: the bucket's target; base: p_0, the static operating point's knob position; lo, hi: the
    knob's range; integral: I; nu: the budget dual; acc_est: â (None before any feedback);
    n_feedback: feedbacks applied (n_cost of them with a cost); score_sum, cost_sum: their sums;
    n_decisions: decisions served; saturated: "", "hi" or "lo" when the last update was clamped;
    repointed: clock of the last re-pointing (None: never; see the module docstring);
    slow_est: â_slow (None before any feedback); left: the stream has left its static point.
    """

    tau: float
    base: float
    lo: float
    hi: float
    integral: float = 0.0
    nu: float = 0.0
    acc_est: float | None = None
    prev_est: float | None = None
    n_feedback: int = 0
    n_cost: int = 0
    n_decisions: int = 0
    score_sum: float = 0.0
    cost_sum: float = 0.0
    cost_est: float | None = None
    saturated: str = ""
    repointed: float | None = None
    slow_est: float | None = None
    left: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ControllerState:
        return cls(**d)


def new_state(tau: float, base: float, lo: float, hi: float) -> ControllerState:
    """A fresh controller at the static operating point's position `base` in [lo, hi]."""
    if not lo <= hi:
        raise ValueError(f"empty knob range [{lo}, {hi}]")
    return ControllerState(tau=float(tau), base=float(min(max(base, lo), hi)), lo=float(lo),
                           hi=float(hi))


def offset_bounds(state: ControllerState, cfg: ControllerConfig) -> tuple[float, float]:
    """(u_min, u_max): the lane range around the base, and u >= 0 until the floor is trusted."""
    u_min, u_max = state.lo - state.base, state.hi - state.base
    if not cfg.allow_below_certified or state.n_feedback < cfg.trust_after:
        u_min = 0.0
    return u_min, max(u_max, u_min)


def floor_offset(state: ControllerState, cfg: ControllerConfig) -> float:
    """u_floor = I + P + D, clipped to `offset_bounds`."""
    u_min, u_max = offset_bounds(state, cfg)
    u = state.integral
    if state.acc_est is not None:
        u += cfg.k_p * (setpoint(state, cfg) - state.acc_est)
        if state.prev_est is not None:
            u += cfg.k_d * (state.prev_est - state.acc_est)
    return min(max(u, u_min), u_max)


def budget_offset(state: ControllerState) -> float:
    """u_budget = (p_hi − p_0) − ν: the highest offset the budget pays for."""
    return state.hi - state.base - state.nu


def offset(state: ControllerState, cfg: ControllerConfig) -> float:
    """The knob: u_floor, unless the budget binds and has priority (module docstring); 0 (the
    static point itself) while |u| < dead_band."""
    u = floor_offset(state, cfg)
    if cfg.budget is not None and cfg.priority == "budget":
        u = max(min(u, budget_offset(state)), state.lo - state.base)
    if abs(u) < cfg.dead_band or (cfg.confirm_forget > 0.0 and not state.left):
        return 0.0
    return u


def position(state: ControllerState, cfg: ControllerConfig) -> float:
    """The knob position the stream is served at now: base + u, inside the range."""
    return min(max(state.base + offset(state, cfg), state.lo), state.hi)


def update(state: ControllerState, cfg: ControllerConfig, score: float,
           cost: float | None = None, served_at: float | None = None) -> ControllerState:
    """Apply one feedback (realised score in [0, 1], realised cost in USD or None); in place.

    With smith = 0 feedbacks commute while nothing is clamped (the integral is a sum); with
    the delay compensation (`predicted_error`, `served_at`: the knob position the request was
    served at, None: unknown) the order matters only through the knob's position when each
    arrives, so delayed and out-of-order feedback still needs no reordering.
    """
    if not 0.0 <= score <= 1.0:  # False for NaN too
        raise ValueError(f"score must be in [0, 1], got {score!r}")
    state.n_feedback += 1
    state.score_sum += score
    # The gain is decided on the estimate BEFORE this score: a gain that read the score it
    # multiplies would boost every failure that tips â below the trigger and no success (which
    # lifts it back), an upward bias of ~k_i (boost − 1) P(fail) per feedback whenever â sits
    # near the trigger; on the slice's flat lanes it walked stationary streams into gpt-4 lanes
    # (val seed 14: 1.64x the certified router's cost).
    step = gain(state, cfg) * predicted_error(state, cfg, score, served_at)
    state.prev_est = state.acc_est
    state.acc_est = score if state.acc_est is None else (
        cfg.forget * state.acc_est + (1.0 - cfg.forget) * score)
    u_min, u_max = offset_bounds(state, cfg)
    # Clamping the integral to the actuator range is the anti-windup: a stream whose target is
    # out of reach does not build up a debt that would later hold the knob at a bound after the
    # drift has gone.
    raw = state.integral + step
    state.integral = min(max(raw, u_min), u_max)
    state.saturated = "hi" if raw > u_max else "lo" if raw < u_min else ""
    if cfg.confirm_forget > 0.0:
        _update_left(state, cfg, score)
    if cost is not None:
        _update_budget(state, cfg, float(cost))
    return state


def _update_left(state: ControllerState, cfg: ControllerConfig, score: float) -> None:
    """â_slow <- ρ_slow â_slow + (1 − ρ_slow) s; the stream has left its static point while
    |u| >= dead_band, and leaves it only while â_slow agrees: below τ to go up, above r to go
    down (`allow_below_certified`) (module docstring); in place."""
    state.slow_est = score if state.slow_est is None else (
        cfg.confirm_forget * state.slow_est + (1.0 - cfg.confirm_forget) * score)
    u = floor_offset(state, cfg)
    agrees = state.slow_est < state.tau if u > 0 else state.slow_est > setpoint(state, cfg)
    state.left = abs(u) >= cfg.dead_band and (state.left or agrees)


def predicted_error(state: ControllerState, cfg: ControllerConfig, score: float,
                    served_at: float | None) -> float:
    """r − s, corrected to the knob's position now: r − (s + smith (p − served_at)).

    Why: feedback arrives a delay after its decision, so after a shift the plain integral keeps
    summing shortfalls of requests served at positions it has since left; with the boost on it
    overshoots, then sums the surpluses of the overshoot on the way back, and the knob
    oscillates with a period of a few delays. Where the router's accuracy jumps across a few
    lanes (a regressed model dropped at once) that limit cycle alternates blocks of hundreds of
    requests far above and far below τ, and sinks windows. The knob is in accuracy units (the
    plant's gain is about 1, `adapter.knob`), so a score realised at `served_at` predicts
    s + (p − served_at) at p: a Smith predictor with a unit-gain model, weighted by `smith`.
    At rest p = served_at and the correction vanishes; summed over a stream it telescopes to
    (knob travel) x (feedbacks in flight), so the long-run argument holds as n grows.
    """
    error = setpoint(state, cfg) - score
    if served_at is None or cfg.smith == 0.0:
        return error
    return error - cfg.smith * (position(state, cfg) - served_at)


def gain(state: ControllerState, cfg: ControllerConfig) -> float:
    """k_i, times `boost` while â is significantly below the setpoint (after one window)."""
    r = setpoint(state, cfg)
    if cfg.boost == 1.0 or state.acc_est is None or state.n_feedback * (1 - cfg.forget) < 1:
        return cfg.k_i
    var = min(max(r, 0.0), 1.0) * (1 - min(max(r, 0.0), 1.0))
    se = math.sqrt(var * (1 - cfg.forget) / (1 + cfg.forget))  # sd of an EMA of Bernoullis
    significant = r - state.acc_est > cfg.boost_z * se
    return cfg.k_i * (cfg.boost if significant else 1.0)


def setpoint(state: ControllerState, cfg: ControllerConfig) -> float:
    """r = τ + margin."""
    return state.tau + cfg.margin


def record(state: ControllerState, cfg: ControllerConfig, score: float,
           cost: float | None = None) -> ControllerState:
    """Count a feedback on a decision made before the last re-pointing (totals and the budget
    only: the integral and â do not move); in place."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be in [0, 1], got {score!r}")
    state.n_feedback += 1
    state.score_sum += score
    if cost is not None:
        _update_budget(state, cfg, float(cost))
    return state


def repoint(state: ControllerState, cfg: ControllerConfig, now: float,
            integral: float | None = None) -> ControllerState:
    """The stream's routing changed at `now` (module docstring): the integral goes back to
    min(I, `integral`) (None: kept), â restarts at the setpoint; in place."""
    if integral is not None:
        u_min, u_max = offset_bounds(state, cfg)
        state.integral = min(state.integral, max(min(integral, u_max), u_min))
    state.acc_est, state.prev_est = setpoint(state, cfg), None
    state.repointed = now
    return state


def _update_budget(state: ControllerState, cfg: ControllerConfig, cost: float) -> None:
    """Record a realised cost; step the budget dual (projected onto [0, p_hi − p_lo])."""
    if not (math.isfinite(cost) and cost >= 0.0):
        raise ValueError(f"cost must be a finite number >= 0 USD, got {cost!r}")
    state.cost_sum += cost
    state.n_cost += 1
    state.cost_est = cost if state.cost_est is None else (
        cfg.forget * state.cost_est + (1.0 - cfg.forget) * cost)
    if cfg.budget is not None:
        step = cfg.k_b * (cost / cfg.budget - 1.0)
        state.nu = min(max(state.nu + step, 0.0), state.hi - state.lo)


def summary(state: ControllerState, cfg: ControllerConfig) -> dict[str, Any]:
    """The state plus what an operator reads off it (GET /v1/controllers)."""
    n = state.n_feedback
    mean_cost = state.cost_sum / state.n_cost if state.n_cost else None
    binding = cfg.budget is not None and budget_offset(state) < floor_offset(state, cfg)
    return {**state.to_dict(), "offset": offset(state, cfg),
            "position": position(state, cfg), "setpoint": setpoint(state, cfg),
            "mean_score": state.score_sum / n if n else None, "mean_cost": mean_cost,
            "trusted": n >= cfg.trust_after, "budget": cfg.budget,
            "budget_offset": budget_offset(state) if cfg.budget is not None else None,
            "budget_binding": bool(binding), "priority": cfg.priority}
