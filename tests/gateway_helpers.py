"""Helpers of the gateway tests: the tiny text router, keys and models files, and the gateway app
driven in-process (httpx over ASGI, its lifespan run by hand: no server, no port)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator

import httpx
import numpy as np

from proteus import serving
from proteus.encoders.registry import get_encoder
from proteus.gateway import keys
from proteus.training import export

HELLO = "hello there"


def key(name: str) -> str:
    """The API key of tenant `name` in `keys_file`."""
    return f"sk-test-{name}"


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key(name)}"}


def text_router(tiny_bundle: export.RouterBundle, out: str) -> serving.Router:
    """The hand-built tiny router with a 4-d hashing text encoder and lanes λ = 0.01, 1, 1e5 (low τ
    buys the cheapest predicted model, high τ the likeliest to be right). Feasible τ end at
    0.8418 (`tests.serving_fixtures.tiny_bundle`)."""
    bundle = dataclasses.replace(tiny_bundle, encoder=get_encoder("hashing:dim=4").to_config(),
                                 lane_lams=np.asarray([0.01, 1.0, 1e5], np.float32))
    export.write_artifact(bundle, out, verify=False)
    return serving.Router.load(out)


def models_file(tmp_path, upstream_url: str, entries: dict) -> str:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"defaults": {"base_url": upstream_url + "/v1", "timeout_s": 5},
                                "models": entries}))
    return str(path)


def keys_file(path, tenants: dict[str, dict]) -> str:
    """A keys TOML at `path`: tenant name -> its fields (key_sha256 of `key(name)` added)."""
    blocks = []
    for name, fields in tenants.items():
        fields = {"key_sha256": keys.hash_key(key(name)), "default_tau": 0.8, **fields}
        blocks.append(f"[tenants.{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}"
                                                        for k, v in fields.items()))
    path.write_text("\n\n".join(blocks) + "\n")
    return str(path)


def chat(text: str = HELLO, model: str = "proteus-0.8", **extra) -> bytes:
    """A chat completion request body."""
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                       **extra}).encode()


@contextlib.asynccontextmanager
async def in_process(app) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on `app` (started and shut down around the block); an app exception is a
    500 without a body, as a server would answer it."""
    await app.startup()
    try:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     timeout=30) as client:
            yield client
    finally:
        await app.shutdown()


def db_requests(path: str, tenant: str) -> tuple[int, float]:
    """(requests, spend in USD) of `tenant` in a usage database."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        got = db.execute("SELECT SUM(requests), SUM(spend_usd) FROM usage WHERE tenant = ?",
                         (tenant,)).fetchone()
    return int(got[0] or 0), float(got[1] or 0.0)
