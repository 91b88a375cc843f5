"""An asyncio micro-batcher: items from concurrent requests are routed together, fairly.

Requests `submit` items on the event loop; one background task hands up to `max_batch` queued
items (after waiting at most `max_wait_s` once the queue was idle) to `fn` in a single worker
thread. While a batch is being routed, new items queue up and form the next one, so the batch
size, and with it throughput, grows with the number of concurrent requests.

Fairness: each request waits in its own queue, and every batch takes an equal share from each
waiting request (round robin), so a single query is routed in the next batch even behind many
1,024-item requests instead of after all of them. Admission reserves part of the queue for
small requests: large ones get 503 (`QueueFullError`) first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class QueueFullError(RuntimeError):
    """More than `max_queue` items are waiting (or, for a large request, its share of them)."""


class _Request:
    """One `submit` call waiting to be routed: its items, their futures, how many were taken."""

    __slots__ = ("futures", "items", "taken")

    def __init__(self, items: list, futures: list[asyncio.Future]):
        self.items, self.futures, self.taken = items, futures, 0

    def take(self, n: int) -> list[tuple[Any, asyncio.Future]]:
        start, self.taken = self.taken, min(len(self.items), self.taken + n)
        return list(zip(self.items[start:self.taken], self.futures[start:self.taken],
                        strict=True))

    @property
    def done(self) -> bool:
        return self.taken == len(self.items)


class MicroBatcher:
    """Collects items from concurrent requests and runs `fn(items) -> results` on batches.

    `fn` returns one result per item; a result that is an `Exception` fails that item alone (its
    request raises it), while an exception raised by `fn` fails the whole batch.

    Args:
      fn: [n] items -> [n] results (or exceptions); runs in one worker thread, or with `inline`
        on the event loop itself (for a cheap fn: a thread hand-off costs more than it does, up
        to Python's 5 ms GIL switch interval when the cores are busy).
      max_batch: most items per call of `fn`.
      max_wait_s: how long an idle queue waits for company before routing.
      max_queue: most items waiting. Requests of more than `small_request` items may only fill
        the queue up to `max_queue - reserve`, so the rest stays free for small ones.
      small_request: requests of at most this many items may use the reserve.
      reserve: queue rows kept for small requests (default: a quarter of `max_queue`).
      inline: run `fn` on the event loop (see `fn`).
    """

    def __init__(self, fn: Callable[[list], list], max_batch: int, max_wait_s: float,
                 max_queue: int, small_request: int = 16, reserve: int | None = None,
                 inline: bool = False):
        self._fn, self._max_batch, self._max_wait, self._max_queue = (
            fn, max_batch, max_wait_s, max_queue)
        self.inline = inline
        self._small = small_request
        self._reserve = max_queue // 4 if reserve is None else reserve
        self._waiting: collections.deque[_Request] = collections.deque()
        self._queued = 0  # items waiting, over all requests
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.stats = {"batches": 0, "rows": 0, "largest_batch": 0}

    def start(self) -> None:
        """Start the batching task on the running event loop and the worker thread."""
        self._wakeup = asyncio.Event()
        if not self.inline:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="proteus-router")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task, join the worker thread, cancel what is still queued."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for request in self._waiting:
            for fut in request.futures[request.taken:]:
                fut.cancel()

    def has_room(self, n: int) -> bool:
        """True if a request of n items would be admitted now."""
        return self._queued + n <= self._max_queue - (0 if n <= self._small else self._reserve)

    async def submit(self, items: list, return_exceptions: bool = False) -> list:
        """Queue `items`; their results in order once routed.

        With `return_exceptions`, an item that failed has its exception in its slot (the others
        are answered); otherwise the first one (in item order) is raised.

        Raises:
          QueueFullError: no room (see the class docstring); an item's exception or the one
            `fn` raised (unless `return_exceptions`).
        """
        if not self.has_room(len(items)):
            limit = self._max_queue - (0 if len(items) <= self._small else self._reserve)
            raise QueueFullError(f"{self._queued} items are already queued (limit {limit} for a "
                                 f"request of {len(items)})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._waiting.append(_Request(list(items), futures))
        self._queued += len(items)
        self._wakeup.set()
        if len(futures) == 1 and not return_exceptions:  # the common case, without gather
            return [await futures[0]]
        results = await asyncio.gather(*futures, return_exceptions=True)  # all retrieved
        for res in results:
            if isinstance(res, asyncio.CancelledError) or (
                    isinstance(res, BaseException) and not return_exceptions):
                raise res
        return list(results)

    def _next_batch(self) -> list[tuple[Any, asyncio.Future]]:
        """Up to `max_batch` items, an equal share from each waiting request (round robin)."""
        batch: list[tuple[Any, asyncio.Future]] = []
        while self._waiting and len(batch) < self._max_batch:
            share = max(1, (self._max_batch - len(batch)) // len(self._waiting))
            for _ in range(len(self._waiting)):
                if len(batch) >= self._max_batch:
                    break
                request = self._waiting.popleft()
                batch.extend(request.take(min(share, self._max_batch - len(batch))))
                if not request.done:  # to the back: the next batch starts with the others
                    self._waiting.append(request)
        self._queued -= len(batch)
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._max_wait > 0 and self._queued < self._max_batch:
                await asyncio.sleep(self._max_wait)
            while self._waiting:
                await self._route(self._next_batch())
                if self.inline:  # let the requests read meanwhile join the next batch
                    await asyncio.sleep(0)

    async def _route(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        try:
            if self.inline:
                results = self._fn(items)
            else:
                results = await asyncio.get_running_loop().run_in_executor(self._pool, self._fn,
                                                                           items)
        except Exception as err:  # noqa: BLE001 (delivered to every waiting request)
            results = [err] * len(batch)
        deliver([fut for _, fut in batch], results)
        self.stats["batches"] += 1
        self.stats["rows"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))


def deliver(futures: list[asyncio.Future], results: list[Any]) -> None:
    """Complete each waiting request's future with its result, or raise its exception in it;
    futures already done (the client went away) are skipped."""
    for fut, res in zip(futures, results, strict=True):
        if fut.done():
            continue
        if isinstance(res, Exception):
            fut.set_exception(res)
        else:
            fut.set_result(res)
