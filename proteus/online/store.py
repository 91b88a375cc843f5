"""Durable state of the online controllers: SQLite (standard library, WAL journal).

Four tables:
  decisions    one row per routed request: request_id, stream, when, τ', model, predicted cost
               and predicted correctness (p̂ of the chosen model: the per-model drift test's
               reference); score / cost / outcome / scored_at once feedback arrives ("pending"
               until then)
  controllers  one row per stream: the `ControllerState` as JSON
  health       one row per (tenant, model): the drift test's `ModelHealth` as JSON
  meta         schema version (a version 1 store is upgraded in place: p̂ unknown for its rows)

It may live in the gateway's usage database (other tables, same file): SQLite's WAL lets the
two connections share it.

Every method is one transaction and returns only after COMMIT, with `synchronous=FULL`, so what
the service acknowledged (a request_id handed out, a feedback accepted, the controller update it
caused) survives a crash or kill of the process (and, with FULL, of the machine). Retention is
bounded: rows older than `retention` (in the clock's units) and the oldest rows beyond
`max_rows` are deleted every `purge_every` writes; feedback for a deleted id is "unknown".
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
  request_id TEXT PRIMARY KEY, stream TEXT NOT NULL, created REAL NOT NULL,
  operating_tau REAL NOT NULL, model TEXT NOT NULL, c_hat REAL NOT NULL,
  score REAL, cost REAL, outcome TEXT, scored_at REAL, p_hat REAL);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions(created);
CREATE TABLE IF NOT EXISTS controllers (
  stream TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS health (
  key TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_V1_TO_V2 = "ALTER TABLE decisions ADD COLUMN p_hat REAL"


class LedgerRow(NamedTuple):
    """A routed request as the ledger stores it (score, cost, outcome, scored_at: None while
    pending)."""

    request_id: str
    stream: str
    created: float
    operating_tau: float
    model: str
    c_hat: float
    score: float | None = None
    cost: float | None = None
    outcome: str | None = None
    scored_at: float | None = None
    p_hat: float | None = None  # None: unknown (a row of a version 1 store)


_COLUMNS = ", ".join(LedgerRow._fields)  # by name: a migrated table has p_hat last anyway


class Store:
    """SQLite-backed decisions, feedback and controller states; thread-safe (one lock).

    Args:
      path: database file, or ":memory:" (tests, replay).
      clock: the time source (`time.time` in the service; the request index in the replay).
      retention: rows older than this (clock units) are deleted.
      max_rows: at most this many decisions are kept (the oldest go first).
      purge_every: writes between retention passes.
    """

    def __init__(self, path: str, clock: Callable[[], float], retention: float = 7 * 86400.0,
                 max_rows: int = 1_000_000, purge_every: int = 1000):
        if retention <= 0 or max_rows <= 0:
            raise ValueError(f"retention and max_rows must be > 0, got {retention}, {max_rows}")
        self.path, self.clock = path, clock
        self.retention, self.max_rows, self.purge_every = retention, max_rows, purge_every
        self._lock = threading.Lock()
        self._writes = 0
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a COMMIT is on disk before the service answers (NORMAL in WAL survives a process
        # kill but may lose the last commits on power loss).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) == 1:  # add p̂ (NULL for the old rows) in one transaction
            self._db.executescript(f"BEGIN IMMEDIATE; {_V1_TO_V2}; UPDATE meta SET value = "
                                   f"'{SCHEMA_VERSION}' WHERE key = 'schema'; COMMIT;")
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: online store schema v{row[0]}, this code reads "
                               f"v{SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ transactions
    def _transaction(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run body(db) in BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = body(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._writes += 1
            if self.purge_every and self._writes % self.purge_every == 0:
                self._purge()
            return out

    def record_decisions(self, rows: Sequence[LedgerRow], states: dict[str, dict[str, Any]],
                         health: dict[str, dict[str, Any]] | None = None) -> None:
        """Insert pending decisions and the stream and model states they changed, atomically."""
        def body(db):
            db.executemany("INSERT INTO decisions (request_id, stream, created, operating_tau,"
                           " model, c_hat, p_hat) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(*r[:6], r.p_hat) for r in rows])
            self._put_states(db, states)
            self._put_health(db, health or {})
        self._transaction(body)

    def apply_feedback(self, handle: Callable[[sqlite3.Connection, LedgerRow | None], Any],
                       request_ids: Iterable[str]) -> list[Any]:
        """For each id, `handle(db, stored decision or None)` inside ONE transaction.

        `handle` decides the outcome and calls `mark` / `put_states`; everything it wrote is
        committed together before this returns (or nothing is, if it raised).
        """
        def body(db):
            return [handle(db, self._get(db, rid)) for rid in request_ids]
        return self._transaction(body)

    @staticmethod
    def mark(db: sqlite3.Connection, request_id: str, score: float, cost: float | None,
             outcome: str, when: float) -> None:
        """Record feedback on a decision (inside `apply_feedback`)."""
        db.execute("UPDATE decisions SET score=?, cost=?, outcome=?, scored_at=? "
                   "WHERE request_id=?", (score, cost, outcome, when, request_id))

    def put_states(self, db: sqlite3.Connection, states: dict[str, dict[str, Any]],
                   health: dict[str, dict[str, Any]] | None = None) -> None:
        """Upsert controller states and model health (inside `apply_feedback`)."""
        self._put_states(db, states)
        self._put_health(db, health or {})

    def _put_health(self, db: sqlite3.Connection, health: dict[str, dict[str, Any]]) -> None:
        if health:
            db.executemany("INSERT INTO health VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                           "SET state=excluded.state, updated=excluded.updated",
                           [(k, json.dumps(v), self.clock()) for k, v in health.items()])

    def _put_states(self, db: sqlite3.Connection, states: dict[str, dict[str, Any]]) -> None:
        now = self.clock()
        db.executemany("INSERT INTO controllers VALUES (?, ?, ?) ON CONFLICT(stream) DO UPDATE "
                       "SET state=excluded.state, updated=excluded.updated",
                       [(k, json.dumps(v), now) for k, v in states.items()])

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _get(db: sqlite3.Connection, request_id: str) -> LedgerRow | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE request_id=?",
                         (request_id,)).fetchone()
        return None if row is None else LedgerRow(*row)

    def get(self, request_id: str) -> LedgerRow | None:
        with self._lock:
            return self._get(self._db, request_id)

    def states(self) -> dict[str, dict[str, Any]]:
        """Every stream's stored controller state."""
        with self._lock:
            rows = self._db.execute("SELECT stream, state FROM controllers").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def health(self) -> dict[str, dict[str, Any]]:
        """Every (tenant, model)'s stored drift state, by "tenant|model"."""
        with self._lock:
            rows = self._db.execute("SELECT key, state FROM health").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def counts(self) -> dict[str, int]:
        """Decisions pending, scored (by outcome) and in total."""
        with self._lock:
            rows = self._db.execute("SELECT COALESCE(outcome, 'pending'), COUNT(*) FROM "
                                    "decisions GROUP BY 1").fetchall()
        out = dict(rows)
        out["total"] = sum(out.values())
        return out

    # ------------------------------------------------------------------ retention
    def _purge(self) -> None:
        """Delete rows beyond the retention age and count (called under the lock)."""
        cutoff = self.clock() - self.retention
        self._db.execute("DELETE FROM decisions WHERE created < ?", (cutoff,))
        self._db.execute("DELETE FROM decisions WHERE rowid IN (SELECT rowid FROM decisions "
                         "ORDER BY created DESC LIMIT -1 OFFSET ?)", (self.max_rows,))

    def purge(self) -> None:
        """Apply retention now."""
        with self._lock:
            self._purge()
