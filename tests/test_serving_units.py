"""Small serving helpers checked by hand, without an artifact: input checks, the request body
parser, the batcher's delivery, row selection, per-item encoding, reload grouping and the SIGHUP
handler."""

import asyncio
import math
import os
import signal
import threading

import numpy as np
import pytest

from proteus.operating import OperatingPoint
from proteus.serving import batching, dispatch, inputs, protocol, reload, server
from proteus.serving.router import take_rows
from proteus.tasks import UNKNOWN
from proteus.types import Decisions

POINT = OperatingPoint(0.5, math.nan, 0, True, "hand-made")

# ------------------------------------------------------------------ inputs


def test_check_features_rows_of_dim_floats():
    got = inputs.check_features([1, 2], 2)
    assert got.dtype == np.float32 and got.tolist() == [[1.0, 2.0]]  # [D] -> [1, D]
    assert inputs.check_features([[1, 2], [3.5, 4]], 2).tolist() == [[1.0, 2.0], [3.5, 4.0]]
    one = inputs.check_features([1, 2], 2, one_row=True)
    assert one.shape == (2,) and one.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("features, kwargs, match", [
    ([True, 1], {}, "features must be a list of 2 numbers per query, got booleans"),
    (["a", "b"], {}, "got strings"),
    ([1 + 2j, 0], {}, "got complex numbers"),
    ([[1, 2], [3]], {}, "features must be a list of 2 numbers per query: "),  # ragged
    ([1, 2, 3], {}, r"must have 2 values per query .*got shape \(3,\)"),
    ([], {}, "nothing to route: the list of queries is empty"),
    ([], {"one_row": True}, r"must have 2 values per query .*got shape \(0,\)"),
    ([[1, 2]], {"one_row": True}, r"got shape \(1, 2\)"),  # one row means [D], not [1, D]
    ([1, np.nan], {}, "features must be finite"),
    ([1e39, 0], {}, "features must be finite"),  # beyond float32's range: inf once cast
])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_check_features_refuses_naming_the_problem(features, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inputs.check_features(features, 2, **kwargs)


def test_check_text_non_empty_valid_unicode():
    assert inputs.check_text("hi there") == "hi there"
    for bad in ("", "   ", 5, None):
        with pytest.raises(ValueError, match="'query' must be a non-empty string"):
            inputs.check_text(bad, "'query'")
    with pytest.raises(ValueError, match=r"query is not valid Unicode: surrogates not allowed at "
                                         r"character 2 \('\\ud800'\)"):
        inputs.check_text("ab\ud800")


def test_resolve_taus_one_or_one_per_query():
    calls = []

    def resolve(tau):
        calls.append(tau)
        return f"p{tau}"

    points, inverse = inputs.resolve_taus(resolve, 0.5, 3)
    assert (points, inverse.tolist(), calls) == (["p0.5"], [0, 0, 0], [0.5])
    # an array: each distinct value resolved once (sorted), inverse maps queries to them
    calls.clear()
    points, inverse = inputs.resolve_taus(resolve, np.array([0.9, 0.5, 0.9]), 3)
    assert (points, inverse.tolist(), calls) == (["p0.5", "p0.9"], [1, 0, 1], [0.5, 0.9])
    # a list: every value resolved in order (each is checked, whatever its type)
    points, inverse = inputs.resolve_taus(resolve, [0.9, 0.5, 0.9], 3)
    assert (points, inverse.tolist()) == (["p0.9", "p0.5", "p0.9"], [0, 1, 2])
    with pytest.raises(ValueError, match=r"one number per query \(3\), got shape \(2,\)"):
        inputs.resolve_taus(resolve, [0.9, 0.5], 3)


def test_resolve_taus_ragged_tau_gets_the_per_query_message():
    # np.ndim raised numpy's own "inhomogeneous shape" error here before this message was reached
    with pytest.raises(ValueError, match=r"one number per query \(3\), got ragged nesting$"):
        inputs.resolve_taus(lambda t: t, [[0.9], [0.5, 0.1], 0.2], 3)


# ------------------------------------------------------------------ the request body


def test_parse_json_within_limits():
    assert protocol.parse_json(b'{"tau": 0.9, "features": [1, 2]}', protocol.Limits()) == {
        "tau": 0.9, "features": [1, 2]}
    cases = [(b"[1,2]", protocol.Limits(max_body_bytes=4), 413, "body_too_large",
              "request body of 5 bytes exceeds the limit of 4"),
             (b"{", protocol.Limits(), 400, "invalid_json", "malformed JSON"),
             (b"\xff", protocol.Limits(), 400, "invalid_json", "malformed JSON"),
             (b"[[[1]]]", protocol.Limits(max_json_depth=2), 400, "invalid_json",
              "JSON nested deeper than 2 levels"),
             (b"[" * 100_000 + b"]" * 100_000, protocol.Limits(), 400, "invalid_json",
              "nested deeper than 16")]  # the decoder's RecursionError
    for body, limits, status, code, match in cases:
        with pytest.raises(protocol.RequestError, match=match) as err:
            protocol.parse_json(body, limits)
        assert (err.value.status, err.value.code) == (status, code)
    assert protocol.parse_json(b"[[1]]", protocol.Limits(max_json_depth=2)) == [[1]]


def test_nested_deeper_counts_container_levels():
    assert not protocol.nested_deeper(5, 0)  # a number is no container
    assert not protocol.nested_deeper([], 1) and protocol.nested_deeper([], 0)
    obj = {"a": [1, {"b": 2}], "c": "x"}  # dict -> list -> dict: 3 levels
    assert not protocol.nested_deeper(obj, 3)
    assert protocol.nested_deeper(obj, 2)
    assert not protocol.nested_deeper([[1.0] * 4] * 3, 2)  # a [B, D] batch is 2 levels


def test_json_bytes_compact_and_strict():
    assert server.json_bytes({"a": [1, 0.5], "b": None}) == b'{"a":[1,0.5],"b":null}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        server.json_bytes({"mu": float("nan")})


class _ItemRouter:
    """A stand-in router for `parse_item`: τ in [0, 1] resolves to a point whose `tau` it is,
    the one task is "math" (id 0), features are 2 floats, text is accepted."""

    def resolve(self, tau):
        if not isinstance(tau, float) or not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be a number in [0, 1], got {tau!r}")
        return POINT._replace(tau=tau)

    def task_ids(self, task, n):
        if task not in (None, "math"):
            raise ValueError(f"unknown task {task!r}")
        return np.full(n, UNKNOWN if task is None else 0, np.int32)

    def check_features(self, features, one_row=False):
        return inputs.check_features(features, 2, one_row)

    def require_text(self):
        pass


def test_parse_item_builds_the_item_of_one_request():
    router, limits = _ItemRouter(), protocol.Limits()
    item = protocol.parse_item({"features": [1, 2], "tau": 0.25}, router, limits, "")
    assert item.features.dtype == np.float32 and item.features.tolist() == [1.0, 2.0]
    assert (item.text, item.point.tau, item.where, item.task_id) == (None, 0.25, "", UNKNOWN)
    item = protocol.parse_item({"query": "hi", "tau": 0.75, "task": "math"}, router, limits,
                               "requests[3]: ")
    assert item.features is None
    assert (item.text, item.point.tau, item.where, item.task_id) == ("hi", 0.75,
                                                                     "requests[3]: ", 0)


@pytest.mark.parametrize("obj, status, code, match", [
    ([1, 2], 422, "invalid_request",
     r"^requests\[0\]: expected a JSON object with 'tau' and one of 'query' or 'features', "
     r"got list$"),
    ({"tau": 0.5, "query": "x", "model": "a", "extra": 1}, 422, "invalid_request",
     r"^requests\[0\]: unknown field\(s\) \['extra', 'model'\]; expected 'tau'"),
    ({"bogus": 1}, 422, "invalid_request", r"unknown field\(s\) \['bogus'\]"),  # before 'tau'
    ({"query": "x"}, 422, "invalid_tau", r"^requests\[0\]: missing 'tau' \(the accuracy target"),
    ({"tau": 0.5}, 422, "invalid_request", r"give exactly one of 'query' \(text\) or 'features'"),
    ({"tau": 0.5, "query": "x", "features": [1, 2]}, 422, "invalid_request", "exactly one of"),
    # the rest is make_item's, reached through parse_item with this item's prefix
    ({"tau": 1.5, "query": "x"}, 422, "invalid_tau",
     r"^requests\[0\]: tau must be a number in \[0, 1\], got 1.5$"),
    ({"tau": 0.5, "query": "x", "task": "art"}, 422, "invalid_task", "unknown task 'art'"),
    ({"tau": 0.5, "query": "x", "task": 3}, 422, "invalid_task",
     r"'task' must be a task name \(a string\) or null, got int"),
    ({"tau": 0.5, "features": [1]}, 422, "invalid_features", "2 values per query"),
    ({"tau": 0.5, "query": "  "}, 422, "invalid_query", "'query' must be a non-empty string"),
    ({"tau": 0.5, "query": "abcde"}, 413, "query_too_long",
     r"^requests\[0\]: query of 5 characters exceeds the limit of 4$"),
])
def test_parse_item_refusals_name_the_problem(obj, status, code, match):
    with pytest.raises(protocol.RequestError, match=match) as err:
        protocol.parse_item(obj, _ItemRouter(), protocol.Limits(max_query_chars=4),
                            "requests[0]: ")
    assert (err.value.status, err.value.code) == (status, code)


# ------------------------------------------------------------------ batches of items


def test_deliver_results_exceptions_and_skips_done_futures():
    loop = asyncio.new_event_loop()
    try:
        ok, bad, gone = (loop.create_future() for _ in range(3))
        gone.cancel()  # the client went away
        err = ValueError("bad item")
        batching.deliver([ok, bad, gone], [{"model": "a"}, err, {"model": "b"}])
        assert ok.result() == {"model": "a"}
        assert bad.exception() is err
        assert gone.cancelled()
        with pytest.raises(ValueError, match="zip"):  # one result per future
            batching.deliver([loop.create_future()], [1, 2])
    finally:
        loop.close()


def test_take_rows_selects_rows_of_every_field():
    d = Decisions(model=np.array([0, 1, 2]), mu=np.array([0.1, 0.2, 0.3]),
                  p_hat=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), c_hat=np.zeros((3, 2)),
                  lam=np.array([1.0, 2.0, 3.0]), reason=("r0", "r1", "r2"))
    got = take_rows(d, np.array([2, 0]))
    assert got.model.tolist() == [2, 0] and got.mu.tolist() == [0.3, 0.1]
    assert got.p_hat.tolist() == [[5.0, 6.0], [1.0, 2.0]] and got.c_hat.shape == (2, 2)
    assert got.lam.tolist() == [3.0, 1.0]
    assert got.reason == ("r2", "r0")  # a tuple field stays a tuple
    assert got.tau is None and got.feasible is None  # absent fields stay absent
    assert take_rows(d, np.zeros(0, np.int64)).model.shape == (0,)


class _Encoder:
    """A router whose encoder maps a text to [its length, 1] and fails on "bad"."""

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        if "bad" in texts:
            raise RuntimeError("cannot encode bad")
        return np.array([[len(t), 1.0] for t in texts], np.float32)


def test_encode_rows_one_call_then_item_by_item_failing_only_the_bad():
    items = [protocol.Item(None, "ab", POINT, "requests[0]: "),
             protocol.Item(np.ones(2, np.float32), None, POINT, "requests[1]: "),
             protocol.Item(None, "bad", POINT, "requests[2]: "),
             protocol.Item(None, "xyz", POINT, "requests[3]: ")]
    router, x, results = _Encoder(), np.zeros((4, 2), np.float32), [None] * 4
    dispatch.encode_rows(router, items, [0, 3], x, results)
    assert router.calls == [["ab", "xyz"]]  # every text in one call
    assert x.tolist() == [[2, 1], [0, 0], [0, 0], [3, 1]] and results == [None] * 4
    x[:] = 0
    dispatch.encode_rows(router, items, [0, 2, 3], x, results)
    # the batch fails, then one call per text: only "bad" fails, in its own slot
    assert router.calls[1:] == [["ab", "bad", "xyz"], ["ab"], ["bad"], ["xyz"]]
    assert x.tolist() == [[2, 1], [0, 0], [0, 0], [3, 1]]
    assert results[:2] == [None, None] and results[3] is None
    err = results[2]
    assert isinstance(err, protocol.RequestError) and err.status == 422
    assert err.detail == ("requests[2]: the query could not be encoded: RuntimeError: cannot "
                          "encode bad")


def test_route_pairs_routes_each_run_by_its_own_router(monkeypatch):
    calls = []

    def route_items(router, items):
        calls.append((router, list(items)))
        return [f"{router}:{item}" for item in items]

    monkeypatch.setattr(reload, "route_items", route_items)
    pairs = [("old", 1), ("old", 2), ("new", 3), ("new", 4), ("old", 5)]
    assert reload.route_pairs(pairs) == ["old:1", "old:2", "new:3", "new:4", "old:5"]
    # consecutive items of one router in one call, in order
    assert calls == [("old", [1, 2]), ("new", [3, 4]), ("old", [5])]
    assert reload.route_pairs([]) == []


# ------------------------------------------------------------------ SIGHUP


def test_on_sighup_runs_the_callback_and_its_remover_uninstalls_it():
    """A stand-in reloader runs once per SIGHUP (on the loop thread, or in a worker thread);
    the remover leaves SIGHUP at its default. The test's own handler guards the process and
    is restored at the end."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    old = signal.getsignal(signal.SIGHUP)
    missed = []
    signal.signal(signal.SIGHUP, lambda *_: missed.append(1))  # SIGHUP not reaching on_sighup
    try:
        async def main():
            loop, calls = asyncio.get_running_loop(), []
            for in_thread in (False, True):
                ran = asyncio.Event()

                def reloader(ran=ran):
                    calls.append(threading.current_thread())
                    loop.call_soon_threadsafe(ran.set)

                remove = reload.on_sighup(reloader, in_thread=in_thread)
                os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.wait_for(ran.wait(), 5.0)
                remove()
                assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
            return calls

        calls = asyncio.run(main())
        assert len(calls) == 2 and missed == []
        assert calls[0] is threading.main_thread()  # in_thread=False: on the loop
        assert calls[1] is not threading.main_thread()  # in_thread=True: the executor
        # anywhere but the main thread nothing is installed: our handler stays
        signal.signal(signal.SIGHUP, lambda *_: missed.append(1))
        before, got = signal.getsignal(signal.SIGHUP), []
        worker = threading.Thread(target=lambda: got.append(reload.on_sighup(lambda: None)))
        worker.start()
        worker.join()
        assert got[0]() is None and signal.getsignal(signal.SIGHUP) is before
    finally:
        signal.signal(signal.SIGHUP, old)
