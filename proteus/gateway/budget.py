"""Day and month budgets per tenant: a request's worst case is held before it is forwarded, and
settled when its answer is in.

  reserve   before forwarding: the request's reservation (`proteus.gateway.pricing`) is held if
            spend + open holds + it fit every budget of the tenant; otherwise 402, and nothing
            is forwarded;
  settle    on the answer: the hold is dropped and the charge (at most the hold, unless the
            upstream billed past the bound: see `pricing`) becomes spend;
  release   on a failure before any answer (timeout, 5xx, unreachable): the hold is dropped,
            nothing is charged.

So for every tenant and period, spend + holds <= budget at every moment, however many requests
run at once: the check and the hold happen together, under one lock, with no await between them.
A charge above its hold (an upstream generating past max_tokens, image tokens) is still charged,
since it was spent, and counted in `proteus_gateway_budget_overrun_usd_total`; the next requests
then find the budget spent.

Spend is kept in memory per (tenant, UTC day) and (tenant, UTC month), loaded from the usage
database at start (committed and pending rows), and every charge is recorded in the
`proteus.gateway.usage.UsageStore`. Holds live in memory only: requests in flight when the process
dies were never settled (see `docs/gateway.md`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict

from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError
from proteus.gateway.pricing import Reservation
from proteus.gateway.usage import UsageStore


@dataclasses.dataclass
class Hold:
    """One request's reservation, open until settled or released."""

    tenant: str
    usd: float
    open: bool = True


class Budgets:
    """The spend and holds of every tenant; see the module docstring."""

    def __init__(self, store: UsageStore):
        self.store = store
        self._lock = threading.Lock()
        self._day: dict[tuple[str, str], float] = defaultdict(float)
        self._month: dict[tuple[str, str], float] = defaultdict(float)
        for (tenant, day), usd in store.spend_since(store.today).items():
            self._day[(tenant, day)] += usd
            self._month[(tenant, day[:7])] += usd
        self._held: dict[str, float] = defaultdict(float)
        self._open: dict[str, int] = defaultdict(int)

    def spent(self, tenant: str) -> tuple[float, float]:
        """(today's, this month's) spend of `tenant` in USD (UTC)."""
        day = self.store.today
        with self._lock:
            return self._day.get((tenant, day), 0.0), self._month.get((tenant, day[:7]), 0.0)

    def held(self, tenant: str) -> float:
        """USD held for `tenant`'s requests in flight."""
        with self._lock:
            return self._held.get(tenant, 0.0)

    def reserve(self, tenant: Tenant, cost: Reservation) -> Hold:
        """Hold `cost` for one of `tenant`'s requests.

        Raises:
          GatewayError: 402 (insufficient_quota, budget_exceeded) when spend + holds + cost
            would pass the day's or the month's budget; the message says by how much.
        """
        day = self.store.today
        with self._lock:
            held = self._held[tenant.name]
            for period, budget, spent in (
                    ("day", tenant.budget_usd_per_day, self._day.get((tenant.name, day), 0.0)),
                    ("month", tenant.budget_usd_per_month,
                     self._month.get((tenant.name, day[:7]), 0.0))):
                if budget is not None and spent + held + cost.usd > budget:
                    raise GatewayError(
                        402, f"tenant {tenant.name!r} has spent ${spent:.6f} and holds "
                             f"${held:.6f} for requests in flight, of its ${budget:g} budget "
                             f"this {period} (UTC); this request may cost up to "
                             f"${cost.usd:.6f} ({cost.why}), which does not fit: lower its "
                             "max_tokens or wait for the budget", "insufficient_quota",
                        "budget_exceeded")
            self._held[tenant.name] = held + cost.usd
            self._open[tenant.name] += 1
        return Hold(tenant.name, cost.usd)

    def settle(self, hold: Hold, model: str, usd: float, prompt_tokens: int = 0,
               completion_tokens: int = 0, error: bool = False) -> None:
        """Close `hold` and charge `usd` (recorded in the usage store)."""
        day = self.store.today
        with self._lock:
            self._close(hold)
            self._day[(hold.tenant, day)] += usd
            self._month[(hold.tenant, day[:7])] += usd
        self.store.record(hold.tenant, model, usd, error, prompt_tokens, completion_tokens)

    def release(self, hold: Hold, model: str) -> None:
        """Close `hold` charging nothing (a failed request: counted as an error)."""
        with self._lock:
            self._close(hold)
        self.store.record(hold.tenant, model, 0.0, error=True)

    def _close(self, hold: Hold) -> None:
        if not hold.open:
            raise RuntimeError(f"a hold of tenant {hold.tenant!r} was closed twice")
        hold.open = False
        self._open[hold.tenant] -= 1
        # Exactly 0 once nothing is in flight: float sums of + and - would leave dust behind.
        self._held[hold.tenant] = (self._held[hold.tenant] - hold.usd
                                   if self._open[hold.tenant] else 0.0)
