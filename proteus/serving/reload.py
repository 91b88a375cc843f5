"""Serving a new artifact without dropping a request: the reload of the router service and the
gateway (issue 30; docs/onboard.md).

A reload loads and verifies the artifact again from its path (replaced in place, e.g. by
`launch.onboard --overwrite`, or a re-pointed symlink) in a worker thread, never on the event
loop (loading verifies the exported function and compiles its batch sizes), then swaps the new
router in. Each request keeps the router it was parsed with to the end: its queued items carry it
(`route_pairs`), so requests in flight finish on the old router and requests parsed after the swap
go to the new one. An artifact that fails to load (or to pass `check`) changes nothing: the error
is logged and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from proteus.serving.dispatch import route_items
from proteus.serving.router import Router

log = logging.getLogger(__name__)


class Reloader:
    """`reload(path)`: load the router at `path` (default: the current one's, with the fallback
    it was loaded with), run `check` on it (which may raise, and returns what `swap` needs), then
    `swap` it in. One reload at a time; `counts` holds how many succeeded and failed."""

    def __init__(self, current: Callable[[], Router], swap: Callable[[Router, Any], None],
                 warmup: int, check: Callable[[Router], Any] | None = None):
        self._current, self._swap, self._check = current, swap, check
        self.warmup = warmup
        self.counts = {"ok": 0, "error": 0}
        self._lock = threading.Lock()

    def __call__(self, path: str | None = None) -> bool:
        """Blocking: call it off the event loop. Returns success."""
        with self._lock:  # one reload at a time; the last one wins
            old = self._current()
            try:
                new = Router.load(path or old.path, fallback=old.fallback_override,
                                  warmup=self.warmup)
                extra = self._check(new) if self._check is not None else None
            except Exception as err:  # noqa: BLE001 (a bad artifact must not stop serving)
                self.counts["error"] += 1
                log.error("not reloaded, still serving %s: %s", old.path, err)
                return False
            self._swap(new, extra)
            self.counts["ok"] += 1
            log.info("reloaded %s: %d models %s", new.path, len(new.models), list(new.models))
            return True


def route_pairs(pairs: list[tuple[Router, Any]]) -> list[Any]:
    """A batcher's call: (router, parsed item) pairs routed by their own router, each run of
    items of one router in one call (two runs only in the batch that straddles a reload)."""
    out: list[Any] = []
    for router, run in itertools.groupby(pairs, key=lambda pair: pair[0]):
        out += route_items(router, [item for _, item in run])
    return out


def on_sighup(callback: Callable[[], Any], in_thread: bool = True) -> Callable[[], None]:
    """Run `callback` on SIGHUP (in a worker thread when `in_thread`) from the running loop;
    returns the function that removes the handler. Signals reach the main thread only: anywhere
    else (a test's server thread) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, (lambda: loop.run_in_executor(None, callback))
                            if in_thread else callback)
    return lambda: loop.remove_signal_handler(signal.SIGHUP)
