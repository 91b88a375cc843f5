"""Client threads that keep a server busy while a test reloads it (the reload tests of the router
service and the gateway)."""

import threading
import time
from typing import Any

import httpx


class ClientLoad:
    """`threads` clients posting as fast as they can until the context exits, recording in order
    each answer's `answer(response)` (in `answers`) or its failure (in `failures`). Subclasses
    give `post(client, i)`, client i's request, and `answer`."""

    def __init__(self, url: str, threads: int):
        self.url, self.stop = url, threading.Event()
        self.answers: list[Any] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(threads)]

    def post(self, client: httpx.Client, i: int) -> httpx.Response:
        raise NotImplementedError

    def answer(self, got: httpx.Response) -> Any:
        raise NotImplementedError

    def _client(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    got = self.post(client, i)
                except httpx.HTTPError as err:  # a dropped connection is a failed request
                    self.failures.append(repr(err))
                    continue
                if got.status_code != 200:
                    self.failures.append(f"{got.status_code} {got.text[:200]}")
                else:
                    self.answers.append(self.answer(got))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) + len(self.failures) < n:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.01)


def wait_healthy(proc, url: str, timeout: float, name: str, output) -> None:
    """Wait until the server `proc` started answers GET `url`/healthz with 200; fails with the
    tail of `output()` (its log) if it exits first, or with "`name` did not start" after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, output()[-2000:]
        assert time.monotonic() < deadline, f"{name} did not start"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
