"""The gateway's feedback ledger on its own (the HTTP path: tests/test_gateway.py)."""

import pytest

from proteus.gateway.feedback import FeedbackLedger
from proteus.gateway.metrics import GatewayMetrics


def sample(metrics: GatewayMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_buckets_tenants_and_capacity():
    m = GatewayMetrics()
    ledger = FeedbackLedger(m, bucket=0.05, capacity=2)
    ledger.record("r1", "a", 0.81)  # rounded up to 0.85
    ledger.record("r2", "a", 0.85)
    ledger.record("r3", "b", 0.5)  # capacity 2: r1 is forgotten
    out = ledger.feedback([{"request_id": "r1", "score": 1}, {"request_id": "r2", "score": 0.25},
                           {"request_id": "r3", "score": 1}], tenant="a")
    assert [o["status"] for o in out] == ["unknown", "accepted", "unknown"]  # r3 is b's
    assert out[1]["tau"] == 0.85
    assert ledger.feedback([{"request_id": "r3", "score": 0.75}], "b")[0]["status"] == (
        "accepted")
    assert sample(m, "proteus_gateway_feedback_total", tenant="a", tau="0.85") == 1.0
    assert sample(m, "proteus_gateway_feedback_score_total", tenant="a", tau="0.85") == 0.25
    assert sample(m, "proteus_gateway_feedback_score_total", tenant="b", tau="0.5") == 0.75
    assert sample(m, "proteus_gateway_feedback_tau", tenant="b", tau="0.5") == 0.5
    bad = ledger.feedback([{"request_id": "r2", "score": -1}, {"score": 1}], tenant="a")
    assert [o["status"] for o in bad] == ["invalid", "invalid"]
    with pytest.raises(ValueError):
        FeedbackLedger(m, bucket=0.0)
