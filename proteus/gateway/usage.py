"""Usage and spend per (tenant, UTC day, model) in SQLite (WAL): what was counted is kept until
it commits.

Requests are counted in memory (`record` never waits on disk); `flush` (every `flush_every_s` from
the app, in a worker thread, and at shutdown) adds the pending counters to SQLite in one
transaction. When the database is busy (another process holds its write lock) or the write fails,
the counters stay pending, merged with the ones counted since, and the next flush tries again:
a request that was counted is written once the database takes writes again. `close` retries for
`close_timeout_s`; counters it still cannot write are saved next to the database in
`<db>.unsaved.json` (logged, with its path), which the next start reads back first and deletes once
they have committed. What a kill -9 loses is what was counted since the last flush (at most
`flush_every_s` of usage). Days and months are UTC.

A file that is not an SQLite database, or that cannot be opened, is refused at start
(`UsageDatabaseError`, naming the path).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sqlite3
import threading
import time
from collections import defaultdict
from typing import Any

SCHEMA = """CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    spend_usd REAL NOT NULL DEFAULT 0, PRIMARY KEY (tenant, day, model))"""
COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "spend_usd")
UPSERT = (f"INSERT INTO usage (tenant, day, model, {', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?,?) "
          "ON CONFLICT (tenant, day, model) DO UPDATE SET "
          + ", ".join(f"{c} = {c} + excluded.{c}" for c in COLUMNS))
UNSAVED_SUFFIX = ".unsaved.json"
Key = tuple[str, str, str]  # (tenant, day, model)
log = logging.getLogger(__name__)


class UsageDatabaseError(ValueError):
    """The usage database cannot be opened or is not an SQLite database (names its path)."""


def utc_day(now: datetime.datetime | None = None) -> str:
    """'YYYY-MM-DD' in UTC (its first 7 characters are the month); a naive `now` is read as UTC."""
    now = now or datetime.datetime.now(datetime.UTC)
    return (now.astimezone(datetime.UTC) if now.tzinfo else now).strftime("%Y-%m-%d")


def _zero() -> list[float]:
    return [0, 0, 0, 0, 0.0]


class UsageStore:
    """Per-(tenant, UTC day, model) counters: requests, errors, tokens, spend in USD.

    Args:
      path: the SQLite file (":memory:": nothing kept).
      clock: today's UTC day as 'YYYY-MM-DD'.
      busy_timeout_s: how long one write waits for another process's lock before it fails (and
        is retried at the next flush).
    """

    def __init__(self, path: str, clock=utc_day, busy_timeout_s: float = 5.0):
        self.path, self._clock = path, clock
        # Two locks: `_lock` guards the pending counters (held for a swap or a merge), `_db_lock`
        # the connection: a request never waits on disk, and a reader sees either the rows of a
        # flush committed or those rows pending again, never neither.
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._pending: dict[Key, list[float]] = defaultdict(_zero)
        self._db = _open(path, busy_timeout_s)
        self._closed = False
        self._unsaved = None if path == ":memory:" else path + UNSAVED_SUFFIX
        self._reloaded = bool(self._unsaved and os.path.exists(self._unsaved))
        if self._reloaded:
            self._merge(_read_unsaved(self._unsaved))
            log.warning("%s: %d usage rows a previous run could not write are pending again",
                        self._unsaved, len(self._pending))

    @property
    def today(self) -> str:
        return self._clock()

    def record(self, tenant: str, model: str, spend_usd: float, error: bool = False,
               prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Count one request (in memory; `flush` writes it)."""
        with self._lock:
            row = self._pending[(tenant, self._clock(), model)]
            row[0] += 1
            row[1] += int(error)
            row[2] += prompt_tokens
            row[3] += completion_tokens
            row[4] += spend_usd

    def pending_rows(self) -> int:
        """Counter rows not yet committed (a gauge: it grows while the database is busy)."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write the pending counters in one transaction; returns the rows written.

        Raises:
          sqlite3.Error: the write failed (the database is locked, the disk full, ...); the
            counters are pending again and the next flush retries them.
        """
        with self._db_lock:
            with self._lock:  # held for the swap only: `record` never waits on disk
                pending, self._pending = self._pending, defaultdict(_zero)
            if not pending:
                return 0
            try:
                with self._db:  # one transaction: all rows or none
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(UPSERT, [(*k, *v) for k, v in pending.items()])
            except BaseException:
                self._merge(pending)  # nothing of it committed: keep it for the next try
                raise
        if self._reloaded:  # its rows were pending, so they have just committed
            os.remove(self._unsaved)
            self._reloaded = False
        return len(pending)

    def _merge(self, rows: dict[Key, list[float]]) -> None:
        with self._lock:
            for key, values in rows.items():
                row = self._pending[key]
                for i, value in enumerate(values):
                    row[i] += value

    def spend_since(self, day: str) -> dict[tuple[str, str], float]:
        """{(tenant, day): USD} for every day of `day`'s month up to now, committed or pending."""
        with self._db_lock:
            rows = self._db.execute("SELECT tenant, day, SUM(spend_usd) FROM usage WHERE "
                                    "substr(day, 1, 7) = ? GROUP BY tenant, day",
                                    (day[:7],)).fetchall()
            out: dict[tuple[str, str], float] = defaultdict(float)
            for tenant, d, spend in rows:
                out[(tenant, d)] += spend
            with self._lock:
                for (tenant, d, _), values in self._pending.items():
                    if d[:7] == day[:7]:
                        out[(tenant, d)] += values[4]
        return dict(out)

    def month_by_model(self, tenant: str, day: str) -> dict[str, dict[str, float]]:
        """{model: {column: total}} of `tenant` in `day`'s month, committed or pending."""
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT model, {', '.join(COLUMNS)} FROM usage WHERE tenant = ? AND "
                "substr(day, 1, 7) = ? ORDER BY model", (tenant, day[:7])).fetchall()
            with self._lock:
                rows += [(m, *v) for (t, d, m), v in self._pending.items()
                         if t == tenant and d[:7] == day[:7]]
        by_model: dict[str, dict[str, float]] = {}
        for model, *values in rows:
            acc = by_model.setdefault(model, dict.fromkeys(COLUMNS, 0))
            for column, value in zip(COLUMNS, values, strict=True):
                acc[column] += value
        return dict(sorted(by_model.items()))

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush (retrying for `timeout_s` while the database is busy or locked), then close.
        Counters that still cannot be written go to `<db>.unsaved.json` (read back at the next
        start). Closing twice does nothing."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.flush()
                break
            except sqlite3.Error as err:  # busy or locked: worth a retry; anything else is not
                if not isinstance(err, sqlite3.OperationalError) or time.monotonic() >= deadline:
                    self._save_unsaved(err)
                    break
                time.sleep(0.1)
        self._closed = True
        self._db.close()

    def _save_unsaved(self, err: Exception) -> None:
        with self._lock:
            rows = [[*k, *v] for k, v in self._pending.items()]
        if not self._unsaved or not rows:
            log.error("usage of %d rows lost: %s could not be written (%s)", len(rows),
                      self.path, err)
            return
        tmp = self._unsaved + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f)
        os.replace(tmp, self._unsaved)
        log.error("%s could not be written (%s): %d usage rows saved to %s, read back at the "
                  "next start", self.path, err, len(rows), self._unsaved)


def _open(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """The connection, schema in place; `UsageDatabaseError` naming `path` when it cannot be."""
    try:
        db = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False,
                             isolation_level=None)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
        db.execute(SCHEMA)
        db.execute(f"SELECT tenant, day, model, {', '.join(COLUMNS)} FROM usage LIMIT 1")
    except sqlite3.Error as err:
        raise UsageDatabaseError(f"{path}: cannot use it as the usage database ({err}); give "
                                 "--usage_db a new file or an SQLite database the gateway wrote"
                                 ) from None
    return db


def _read_unsaved(path: str) -> dict[Key, list[float]]:
    try:
        with open(path) as f:
            rows = json.load(f)
        return {(str(r[0]), str(r[1]), str(r[2])): [float(v) for v in r[3:8]] for r in rows}
    except (OSError, ValueError, TypeError, IndexError) as err:
        raise UsageDatabaseError(f"{path}: unreadable saved usage ({err}); move it aside to "
                                 "start without it") from None


def report(store: UsageStore, tenant: Any, spend_day: float, spend_month: float,
           held_usd: float) -> dict[str, Any]:
    """The body of GET /v1/usage for `tenant`: today's and this month's spend, budgets, holds."""
    day = store.today
    return {"object": "usage", "tenant": tenant.name, "day": day, "month": day[:7],
            "spend_usd": {"day": spend_day, "month": spend_month},
            "reserved_usd": held_usd,
            "budget_usd": {"day": tenant.budget_usd_per_day,
                           "month": tenant.budget_usd_per_month},
            "requests_per_minute": tenant.requests_per_minute,
            "tau": {"default": tenant.default_tau, "min": tenant.tau_min, "max": tenant.tau_max},
            "month_by_model": store.month_by_model(tenant.name, day)}
