"""Drift per model: a two-sided sequential test of each model's realised accuracy against p̂.

Every feedback on a request says which model served it, what the router predicted for it (p̂ of
the chosen model, stored with the decision) and what it realised (the score s in [0, 1]). For
each (tenant, model) this module runs a CUSUM of Bernoulli likelihood ratios between two
hypotheses about the model's accuracy on the requests it serves:

    H_ok:     E[s | decision] >= p̂ − a       (as predicted, within the calibration slack a)
    H_fallen: E[s | decision] <= p̂ − b       (b > a: fallen clearly below what was predicted)

With q_a = clip(p̂ − a), q_b = clip(p̂ − b), one feedback's log-likelihood ratio is

    ℓ(s) = s log(q_b / q_a) + (1 − s) log((1 − q_b) / (1 − q_a))

and the model's two statistics are

    down <- max(0, down + ℓ(s))     while the model is in use:  exclude it when down >= h
    up   <- max(0, up − ℓ(s))       while it is excluded:       readmit it when up >= h

**False-alarm rate (stated, and tested in tests/test_online_drift.py).** exp(ℓ(s)) is convex in
s, so for any score in [0, 1] whose conditional mean is at least q_a its conditional mean is at
most 1 (the chord of a Bernoulli at q_a): under H_ok, the likelihood ratio of every run that the
CUSUM restarts is a nonnegative supermartingale, and by Ville's inequality each run reaches e^h
with probability at most e^-h. A CUSUM is a sequence of such runs (Lorden 1971), so for a model
that realises at least p̂ − a on the requests it serves:

    P(excluded within its first n feedbacks) <= n e^-h,   mean feedbacks to a false exclusion
    >= e^h  (h = log(arl): `DriftConfig.arl` feedbacks of that model on average).

The readmission test is the mirror image (−ℓ, H_fallen against H_ok), with the same bound for a
model that still realises at most p̂ − b. A model whose p̂ is calibrated (E[s] = p̂) sits a full a
inside H_ok, so its statistic drifts down and real false alarms are far rarer than the bound.
Scores of partial credit are fine: the argument only needs s in [0, 1].

While a model is excluded the router routes around it (`proteus.online.adapter.serve`), so it
gets no feedback; one in `probe_every` of the requests it would have served (by a hash of the
query: `probe`) still goes to it,
which feeds the readmission test (a probe costs at most the model's shortfall on 1/probe_every of
its share). What an operator reads: `shortfall` (predicted − realised, mean over the run of
evidence that led to the last decision, and a forgetting-window estimate of the same while nothing
is decided).

Plain Python on floats; the service keeps one `ModelHealth` per (tenant, model) and the store
persists it as JSON.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

EVENTS = ("excluded", "readmitted")


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """The per-model test of every (tenant, model) of a service."""

    enabled: bool = True
    tolerance: float = 0.05  # a: H_ok allows the model to realise down to p̂ − a
    shift: float = 0.15  # b: H_fallen, realised at p̂ − b or below
    arl: float = 1000.0  # e^h: feedbacks of a model between false alarms, at least
    probe_every: int = 20  # while excluded, 1 in this many of its would-be requests goes to it
    forget: float = 0.98  # the shortfall estimate's forgetting factor (metrics only)
    clip: float = 0.01  # q_a, q_b are clipped to [clip, 1 − clip]
    # a stream off its static point while models are routed around for its tenant is served on
    # the held-out envelope of its knob positions without them (`heldout.Hull`), request by
    # request; False: at its position (docs/online_settings.md, val replays)
    mix: bool = True

    def __post_init__(self):
        if not 0.0 <= self.tolerance < self.shift < 1.0:
            raise ValueError(f"need 0 <= tolerance < shift < 1, got {self.tolerance!r}, "
                             f"{self.shift!r}")
        if not self.arl > 1.0:
            raise ValueError(f"arl must be > 1 feedback, got {self.arl!r}")
        if self.probe_every < 1:
            raise ValueError(f"probe_every must be >= 1, got {self.probe_every!r}")
        if not 0.0 <= self.forget < 1.0 or not 0.0 < self.clip < 0.5:
            raise ValueError(f"need 0 <= forget < 1 and 0 < clip < 0.5, got {self.forget!r}, "
                             f"{self.clip!r}")

    @property
    def threshold(self) -> float:
        """h = log(arl)."""
        return math.log(self.arl)


@dataclasses.dataclass
class ModelHealth:
    """One (tenant, model)'s test (JSON-able via `to_dict` / `from_dict`).

    down, up: the two CUSUM statistics; excluded: routed around now; n: feedbacks seen;
    run_n, run_score, run_pred: feedbacks, realised and predicted sums since the statistic in
    force last left 0 (the evidence of the current run); realised, predicted: forgetting-window
    estimates; events: exclusions and readmissions so far; changed_at: clock of the last one;
    last_shortfall: predicted − realised over the run that triggered it (last_evidence: that
    run's feedbacks and mean realised and predicted scores); would_serve: requests
    the router would have sent it while excluded (1 in `probe_every` is a probe); anchors:
    each stream's controller [integral, feedbacks] the last time `down` was 0 (before the drift
    began).
    """

    down: float = 0.0
    up: float = 0.0
    excluded: bool = False
    n: int = 0
    run_n: int = 0
    run_score: float = 0.0
    run_pred: float = 0.0
    realised: float | None = None
    predicted: float | None = None
    events: int = 0
    changed_at: float | None = None
    last_shortfall: float | None = None
    last_evidence: dict[str, float] | None = None
    would_serve: int = 0
    anchors: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelHealth:
        return cls(**d)


def llr(cfg: DriftConfig, score: float, p_hat: float) -> float:
    """ℓ(s): the log-likelihood ratio of H_fallen against H_ok for one feedback (module
    docstring); 0 when p̂ is too low for the two hypotheses to differ."""
    lo, hi = cfg.clip, 1.0 - cfg.clip
    q_a = min(max(p_hat - cfg.tolerance, lo), hi)
    q_b = min(max(p_hat - cfg.shift, lo), hi)
    if q_b >= q_a:
        return 0.0
    return score * math.log(q_b / q_a) + (1.0 - score) * math.log((1.0 - q_b) / (1.0 - q_a))


def update(health: ModelHealth, cfg: DriftConfig, score: float, p_hat: float,
           now: float) -> str | None:
    """Apply one feedback of this model (score in [0, 1], its p̂ at decision time); in place.

    Returns "excluded" or "readmitted" when the test in force crosses h = log(arl), else None.
    """
    if not 0.0 <= score <= 1.0 or not 0.0 <= p_hat <= 1.0:  # False for NaN too
        raise ValueError(f"score and p_hat must be in [0, 1], got {score!r}, {p_hat!r}")
    health.n += 1
    w = cfg.forget
    health.realised = score if health.realised is None else w * health.realised + (1 - w) * score
    health.predicted = (p_hat if health.predicted is None
                        else w * health.predicted + (1 - w) * p_hat)
    step = llr(cfg, score, p_hat)
    stat = health.up if health.excluded else health.down
    stat = max(0.0, stat + (-step if health.excluded else step))
    if stat == 0.0:
        health.run_n, health.run_score, health.run_pred = 0, 0.0, 0.0
    else:
        health.run_n += 1
        health.run_score += score
        health.run_pred += p_hat
    if health.excluded:
        health.up = stat
    else:
        health.down = stat
    if stat < cfg.threshold:
        return None
    event = "readmitted" if health.excluded else "excluded"
    run_n = max(health.run_n, 1)
    health.last_shortfall = (health.run_pred - health.run_score) / run_n
    health.last_evidence = {"feedbacks": health.run_n, "realised": health.run_score / run_n,
                            "predicted": health.run_pred / run_n}
    health.excluded = not health.excluded
    health.down = health.up = 0.0
    health.run_n, health.run_score, health.run_pred = 0, 0.0, 0.0
    health.events += 1
    health.changed_at = now
    health.would_serve = 0
    return event


def probe(health: ModelHealth, cfg: DriftConfig, content: bytes) -> bool:
    """Count one request the router would send to this (excluded) model; True when it is a
    probe (served by the model all the same, for the readmission test's evidence): when the
    CRC-32 of its `content` (the query's features) falls in 1 of `probe_every`. Chosen by
    content, not by arrival order, so concurrent requests are probes whatever order they are
    routed in (the HTTP replay gives the in-process replay's numbers); a question asked again
    is a probe again."""
    health.would_serve += 1
    return zlib.crc32(content) % cfg.probe_every == 0


def summary(health: ModelHealth, cfg: DriftConfig) -> dict[str, Any]:
    """The state plus what an operator reads off it (GET /v1/controllers, metrics)."""
    out = health.to_dict()
    out.pop("anchors")
    shortfall = (None if health.realised is None
                 else health.predicted - health.realised)
    return {**out, "shortfall": shortfall, "statistic": health.up if health.excluded
            else health.down, "threshold": cfg.threshold,
            "run_shortfall": ((health.run_pred - health.run_score) / health.run_n
                              if health.run_n else None)}
