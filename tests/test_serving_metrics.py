"""proteus.serving.metrics: GET /metrics of the router service after a few requests, counted by
hand."""

import dataclasses
import json

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proteus.serving import server
from proteus.serving.metrics import RouterMetrics
from proteus.serving.protocol import RequestError

pytest_plugins = ["tests.serving_fixtures"]


def _samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} of a Prometheus exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _post(client: httpx.Client, body, content_type: str = "application/json") -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/route", content=data, headers={"content-type": content_type})


def test_metrics_count_requests_decisions_tau_errors_and_infeasible(text_router):
    x = np.random.default_rng(0).normal(size=(2, text_router.feature_dim)).round(4).tolist()
    with server.ServerThread(server.create_app(text_router)) as running, \
            httpx.Client(base_url=running.url, timeout=30) as client:
        answers = [_post(client, {"features": x[0], "tau": 0.3}),
                   _post(client, {"query": "gsm8k question, easy: algebra", "tau": 0.3}),
                   _post(client, {"features": x[1], "tau": 1.0})]  # above every point: infeasible
        batch = _post(client, {"requests": [{"features": x[0], "tau": 0.6},
                                            {"features": x[1], "tau": 2.0}]})
        assert _post(client, b"{not json").status_code == 400
        assert _post(client, {"features": x[0], "tau": 0.3}, "text/plain").status_code == 415
        scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    decisions = [a.json() for a in answers] + [batch.json()["decisions"][0]]
    assert all(a.status_code == 200 for a in [*answers, batch])
    got = _samples(scraped.text)
    assert got[("proteus_router_requests_total", (("status", "200"),))] == 4
    assert got[("proteus_router_requests_total", (("status", "400"),))] == 1
    assert got[("proteus_router_requests_total", (("status", "415"),))] == 1
    models = {d["model"] for d in decisions}
    assert {m: got[("proteus_router_decisions_total", (("model", m),))] for m in models} == {
        m: sum(d["model"] == m for d in decisions) for m in models}
    assert got[("proteus_router_tau_count", ())] == 4
    assert got[("proteus_router_tau_sum", ())] == pytest.approx(0.3 + 0.3 + 1.0 + 0.6)
    assert got[("proteus_router_tau_bucket", (("le", "0.5"),))] == 2
    assert got[("proteus_router_errors_total", (("code", "invalid_tau"), ("status", "422")))] == 1
    assert got[("proteus_router_errors_total", (("code", "invalid_json"), ("status", "400")))] == 1
    assert sum(v for (name, labels), v in got.items()
               if name == "proteus_router_errors_total" and ("status", "415") in labels) == 1
    assert not decisions[2]["feasible"]
    infeasible = sum(not d["feasible"] for d in decisions)
    assert got[("proteus_router_infeasible_total", (("action", "best_effort"),))] == infeasible
    # every answer that reached the router's queue or parser was timed (the 415 was not)
    assert got[("proteus_router_routing_seconds_count", ())] == 5


def test_a_refused_tau_counts_as_infeasible_and_as_an_error():
    metrics = RouterMetrics()
    refused = RequestError(422, "τ=0.99 is infeasible", "infeasible_tau")
    metrics.observe(422, [refused], 0.001)
    metrics.observe(500, [RuntimeError("boom")])
    got = _samples(metrics.exposition().decode())
    errors = "proteus_router_errors_total"
    assert got[("proteus_router_infeasible_total", (("action", "refused"),))] == 1
    assert got[(errors, (("code", "infeasible_tau"), ("status", "422")))] == 1
    assert got[(errors, (("code", "routing_failed"), ("status", "500")))] == 1
    assert got[("proteus_router_routing_seconds_count", ())] == 1


def test_metrics_need_a_token_when_the_server_has_tokens(text_router):
    settings = dataclasses.replace(server.ServerSettings(), auth_tokens=("secret-token",))
    with server.ServerThread(server.create_app(text_router, settings)) as running:
        assert httpx.get(running.url + "/metrics").status_code == 401
        ok = httpx.get(running.url + "/metrics", headers={"authorization": "Bearer secret-token"})
    assert ok.status_code == 200 and "proteus_router_requests_total" in ok.text
