"""An asyncio micro-batcher: items from concurrent requests are routed together.

Requests `submit` items on the event loop; one background task hands whatever has queued (up to
`max_batch` items, after waiting at most `max_wait_s` once the queue was idle) to `fn` in a single
worker thread. While a batch is being routed, new items queue up and form the next one, so the
batch size, and with it throughput, grows with the number of concurrent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class QueueFullError(RuntimeError):
    """More than `max_queue` items are waiting."""


class MicroBatcher:
    """Collects items from concurrent requests and runs `fn(items) -> results` on batches.

    Runs on the event loop that calls `start`; `fn` runs in one worker thread. While a batch
    is being routed, new items queue up and form the next batch.
    """

    def __init__(self, fn: Callable[[list], list], max_batch: int, max_wait_s: float,
                 max_queue: int):
        self._fn, self._max_batch, self._max_wait, self._max_queue = (
            fn, max_batch, max_wait_s, max_queue)
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.stats = {"batches": 0, "rows": 0, "largest_batch": 0}

    def start(self) -> None:
        """Start the batching task on the running event loop and the worker thread."""
        self._wakeup = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="proteus-router")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task, join the worker thread, cancel what is still queued."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._pool.shutdown(wait=True)
        for _, fut in self._pending:
            fut.cancel()

    async def submit(self, items: list) -> list:
        """Queue `items`; their results in order once routed (raises what `fn` raised)."""
        if len(self._pending) + len(items) > self._max_queue:
            raise QueueFullError(f"{len(self._pending)} items are already queued (limit "
                                 f"{self._max_queue})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        self._wakeup.set()
        if len(futures) == 1:  # the common case, without gather's overhead
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._max_wait > 0 and len(self._pending) < self._max_batch:
                await asyncio.sleep(self._max_wait)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._route(batch)

    async def _route(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._fn, [item for item, _ in batch])
        except Exception as err:  # noqa: BLE001 (delivered to every waiting request)
            results = [err] * len(batch)
        for (_, fut), res in zip(batch, results, strict=True):
            if fut.done():  # the client went away
                continue
            if isinstance(res, Exception):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        self.stats["batches"] += 1
        self.stats["rows"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
