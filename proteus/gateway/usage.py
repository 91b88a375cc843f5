"""Usage and spend per tenant in SQLite (WAL), and the day/month budgets enforced from it.

Requests update in-memory totals (budget checks must not wait on disk); a flush, every
`flush_every_s` from the app and once at shutdown, adds the pending deltas to SQLite in one
transaction. A crash loses at most the last interval's usage; a restart reloads the current day's
and month's totals, so budgets hold across restarts. Days and months are UTC.
"""

from __future__ import annotations

import datetime
import sqlite3
import threading
from collections import defaultdict
from typing import Any

from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError

SCHEMA = """CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    spend_usd REAL NOT NULL DEFAULT 0, PRIMARY KEY (tenant, day, model))"""
COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "spend_usd")
UPSERT = (f"INSERT INTO usage (tenant, day, model, {', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?,?) "
          "ON CONFLICT (tenant, day, model) DO UPDATE SET "
          + ", ".join(f"{c} = {c} + excluded.{c}" for c in COLUMNS))


def utc_day(now: datetime.datetime | None = None) -> str:
    """'YYYY-MM-DD' in UTC (its first 7 characters are the month)."""
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d")


class UsageStore:
    """Per-(tenant, UTC day, model) counters: requests, errors, tokens, spend in USD."""

    def __init__(self, path: str, clock=utc_day):
        self._clock = clock
        # Two locks: `_lock` guards the in-memory counters (held for a swap), `_db_lock` the
        # connection. A request does not wait on disk (but once a UTC day, in `_roll`): a flush's
        # commit (a WAL checkpoint can take hundreds of ms) must not block the event loop.
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
        self._db.execute(SCHEMA)
        self._pending: dict[tuple[str, str, str], list[float]] = defaultdict(
            lambda: [0, 0, 0, 0, 0.0])
        self._day, self._spend_day, self._spend_month = "", {}, {}
        self._roll()

    def _roll(self) -> None:
        """(Re)load today's and this month's spend per tenant when the UTC day changes."""
        day = self._clock()
        if day == self._day:
            return
        self.flush()
        with self._db_lock:
            rows = self._db.execute("SELECT tenant, day = ?, SUM(spend_usd) FROM usage "
                                    "WHERE substr(day, 1, 7) = ? GROUP BY tenant, 2",
                                    (day, day[:7])).fetchall()
        self._spend_day, self._spend_month = defaultdict(float), defaultdict(float)
        for tenant, today, spend in rows:
            self._spend_month[tenant] += spend
            if today:
                self._spend_day[tenant] += spend
        self._day = day

    def check_budget(self, tenant: Tenant, estimate_usd: float) -> None:
        """Refuse a request whose estimated cost would take `tenant` past a budget.

        Raises:
          GatewayError: 402 (insufficient_quota, code budget_exceeded) naming the budget.
        """
        self._roll()
        for period, budget, spent in (
                ("day", tenant.budget_usd_per_day, self._spend_day[tenant.name]),
                ("month", tenant.budget_usd_per_month, self._spend_month[tenant.name])):
            if budget is not None and spent + estimate_usd > budget:
                raise GatewayError(
                    402, f"tenant {tenant.name!r} has spent ${spent:.6f} of its ${budget:g} "
                         f"budget this {period} (UTC); this request's estimated ${estimate_usd:.6f}"
                         " would exceed it", "insufficient_quota", "budget_exceeded")

    def record(self, tenant: str, model: str, spend_usd: float, error: bool = False,
               prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Count one request (in memory; `flush` writes it)."""
        self._roll()
        with self._lock:  # a flush in the worker thread swaps `_pending` out
            row = self._pending[(tenant, self._day, model)]
            row[0] += 1
            row[1] += int(error)
            row[2] += prompt_tokens
            row[3] += completion_tokens
            row[4] += spend_usd
        self._spend_day[tenant] += spend_usd
        self._spend_month[tenant] += spend_usd

    def flush(self) -> int:
        """Write the pending counters in one transaction; returns the rows written."""
        with self._db_lock:  # a reader waits for the writes of counters already taken out
            with self._lock:  # held for the swap only: `record` never waits on disk
                pending, self._pending = self._pending, defaultdict(lambda: [0, 0, 0, 0, 0.0])
            if not pending:
                return 0
            rows = [(*key, *values) for key, values in pending.items()]
            with self._db:  # one transaction
                self._db.execute("BEGIN")
                self._db.executemany(UPSERT, rows)
        return len(rows)

    def report(self, tenant: Tenant) -> dict[str, Any]:
        """The body of GET /v1/usage for `tenant`: today's and this month's totals and budgets."""
        self._roll()
        self.flush()  # then the database holds every request counted so far
        day = self._day
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT day, model, {', '.join(COLUMNS)} FROM usage WHERE tenant = ? AND "
                "substr(day, 1, 7) = ? ORDER BY day, model", (tenant.name, day[:7])).fetchall()
        by_model: dict[str, dict[str, float]] = {}
        for _, model, *values in rows:
            acc = by_model.setdefault(model, dict.fromkeys(COLUMNS, 0))
            for column, value in zip(COLUMNS, values, strict=True):
                acc[column] += value
        return {"object": "usage", "tenant": tenant.name, "day": day, "month": day[:7],
                "spend_usd": {"day": self._spend_day[tenant.name],
                              "month": self._spend_month[tenant.name]},
                "budget_usd": {"day": tenant.budget_usd_per_day,
                               "month": tenant.budget_usd_per_month},
                "requests_per_minute": tenant.requests_per_minute,
                "tau": {"default": tenant.default_tau, "min": tenant.tau_min,
                        "max": tenant.tau_max},
                "month_by_model": by_model}

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        self._db.close()
