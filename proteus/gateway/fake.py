"""A fake OpenAI-compatible upstream (zero latency) for tests, benchmarks and trying the gateway.

    python -c "from proteus.gateway import fake; fake.serve(9000)"

`POST /v1/chat/completions` and `/v1/completions` answer "<model> says hi" with a `usage` block,
streaming (SSE chunks, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`) or
not. Three model names misbehave on purpose: "fail-500" answers 500, "slow" waits `slow_s` seconds
(to trigger the gateway's timeout), and "drip" streams its pieces `slow_s` / 4 apart, stopping
early when the gateway closes the connection; either notes a connection the gateway closed early
in its call's "closed_early". Every request is kept in `calls` for tests to inspect.

For the gateway's safety tests: `latency_s` delays every answer (requests overlap),
`usage_from_request` reports the usage a real upstream would (prompt tokens: the request's text
bytes / 4; completion tokens: its `max_completion_tokens` or `max_tokens`, as if the generation
ran to its limit), and `raw` maps a model name to the exact body of a 200 answer (malformed
usage, non-JSON).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import uvicorn

ANSWER = ["hi", " from", " upstream"]


async def answer_lifespan(receive, send) -> None:
    """A local test server's ASGI lifespan: start-up and shut-down acknowledged, nothing else."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def whole_body(receive) -> bytes:
    """A request's body, all chunks (a trusted local client: no size or time limit)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class FakeUpstream:
    """The ASGI app. `calls`: one dict per request (path, model, authorization, body)."""

    def __init__(self, slow_s: float = 5.0, record: bool = True, latency_s: float = 0.0,
                 usage_from_request: bool = False, raw: dict[str, bytes] | None = None):
        self.slow_s, self.record, self.latency_s = slow_s, record, latency_s
        self.usage_from_request = usage_from_request
        self.raw: dict[str, bytes] = dict(raw or {})
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        body = json.loads(await whole_body(receive) or b"{}")
        model = body.get("model", "")
        call: dict[str, Any] = {}
        if self.record:
            headers = dict(scope["headers"])
            call = {"path": scope["path"], "model": model, "body": body,
                    "authorization": headers.get(b"authorization", b"").decode()}
            self.calls.append(call)
        if model == "fail-500":
            return await _respond(send, 500, {"error": {"message": "upstream exploded",
                                                        "type": "server_error", "code": None}})
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if model in self.raw:
            return await _respond(send, 200, self.raw[model])
        usage = _usage_of_request(body) if self.usage_from_request else _usage()
        # the next message is the disconnect, once the gateway closes the connection
        left = asyncio.ensure_future(receive()) if model in ("slow", "drip") else None
        if model == "slow":
            await asyncio.sleep(self.slow_s)
            if left.done():
                call["closed_early"] = True
        chat = scope["path"].endswith("/chat/completions")
        if body.get("stream"):
            pace = (self.slow_s / 4, left, call) if model == "drip" else None
            return await _stream(send, model, chat, usage if _include_usage(body) else None,
                                 pace)
        return await _respond(send, 200, _completion(model, chat, usage))


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 10, "completion_tokens": len(ANSWER), "total_tokens": 10 + len(ANSWER)}


def _usage_of_request(body: dict[str, Any]) -> dict[str, int]:
    """What a real upstream would bill: ~4 bytes of text a token, the output to its limit."""
    text = json.dumps(body.get("messages") or body.get("prompt") or "")
    prompt = max(1, len(text.encode()) // 4)
    completion = int(body.get("max_completion_tokens") or body.get("max_tokens") or len(ANSWER))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _completion(model: str, chat: bool, usage: dict[str, int]) -> dict[str, Any]:
    text = f"{model} says " + "".join(ANSWER)
    choice = ({"index": 0, "message": {"role": "assistant", "content": text},
               "finish_reason": "stop"} if chat else
              {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None})
    return {"id": "fake-1", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice], "usage": usage}


async def _respond(send, status: int, payload: dict[str, Any] | bytes) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _stream(send, model: str, chat: bool, usage: dict[str, int] | None,
                  pace=None) -> None:
    """SSE chunks; `pace` = (seconds between pieces, the disconnect watch, the call record)."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    pieces = [f"{model} says "] + ANSWER
    for i, piece in enumerate(pieces):
        if pace is not None and i:
            await asyncio.sleep(pace[0])
            if pace[1].done():
                pace[2]["closed_early"] = True
                return
        last = i == len(pieces) - 1
        choice = ({"index": 0, "delta": {"content": piece}} if chat else
                  {"index": 0, "text": piece})
        choice["finish_reason"] = "stop" if last else None
        chunk = {"id": "fake-1", "object": "chat.completion.chunk" if chat else "text_completion",
                 "created": int(time.time()), "model": model, "choices": [choice]}
        await send({"type": "http.response.body", "body": _sse(chunk), "more_body": True})
    if usage is not None:
        chunk = {"id": "fake-1", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": model, "choices": [], "usage": usage}
        await send({"type": "http.response.body", "body": _sse(chunk), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve a non-recording fake upstream until interrupted (benchmarks, demos)."""
    uvicorn.run(FakeUpstream(record=False), host=host, port=port, log_level="warning",
                access_log=False, ws="none")
