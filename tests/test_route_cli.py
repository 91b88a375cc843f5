"""proteus.serving.route_cli (`python -m launch.route`): one query from the command line, JSONL
batch."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from proteus.serving import route_cli
from proteus.serving import router as serving

pytest_plugins = ["tests.serving_fixtures"]


def test_single_query_command(text_artifact, text_router):
    text = "mmlu question, moderate: chemistry, software, physics"
    cmd = [sys.executable, "-m", "launch.route", f"--artifact={text_artifact}", "--tau=0.3",
           text, "gsm8k question, easy: algebra"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lines = [json.loads(line) for line in out.strip().split("\n")]
    want = text_router.route([text, "gsm8k question, easy: algebra"], 0.3)
    assert [d["model"] for d in lines] == [w["model"] for w in want]
    assert lines[0]["tau"] == pytest.approx(0.3) and set(lines[0]) == set(want[0])


def _lines(router: serving.Router) -> tuple[list[str], np.ndarray]:
    x = np.random.default_rng(0).normal(size=(5, router.feature_dim)).round(4)
    lines = [json.dumps({"id": f"q{i}", "features": row.tolist()}) for i, row in enumerate(x)]
    lines[3] = json.dumps({"id": "q3", "features": x[3].tolist(), "tau": 0.6})
    lines += ["", "{broken", json.dumps({"features": [1.0, 2.0]}),
              json.dumps({"query": "gsm8k question, easy: algebra", "tau": 2.0}),
              json.dumps({"query": "gsm8k question, easy: algebra"})]
    return lines, x


def test_route_jsonl(text_router):
    lines, x = _lines(text_router)
    out = io.StringIO()
    n_ok, n_err = route_cli.route_jsonl(text_router, lines, out, tau=0.3, batch_size=3)
    records = [json.loads(r) for r in out.getvalue().strip().split("\n")]
    assert (n_ok, n_err) == (6, 3) and len(records) == 9  # the blank line gives nothing
    want = text_router.decide(x, [0.3, 0.3, 0.3, 0.6, 0.3])
    assert [r["id"] for r in records[:5]] == ["q0", "q1", "q2", "q3", "q4"]
    assert [r["model_index"] for r in records[:5]] == want.model.tolist()
    assert records[3]["tau"] == pytest.approx(0.6)
    assert records[5]["line"] == 7 and "malformed JSON" in records[5]["error"]
    assert records[6]["line"] == 8 and "values per query" in records[6]["error"]
    assert records[7]["line"] == 9 and "tau must be a number" in records[7]["error"]
    text_want = text_router.route("gsm8k question, easy: algebra", 0.3)[0]["model"]
    assert records[8]["model"] == text_want


def test_batch_mode_run(text_artifact, tmp_path):
    router = serving.Router.load(text_artifact, warmup=0)
    lines, _ = _lines(router)
    src, dst = tmp_path / "q.jsonl", tmp_path / "d.jsonl"
    src.write_text("\n".join(lines) + "\n")
    status = route_cli.run(text_artifact, 0.3, [], input_path=str(src), output_path=str(dst),
                           progress=False)
    assert status == 1  # some lines could not be routed
    assert len(dst.read_text().strip().split("\n")) == 9


def test_route_jsonl_bad_lines_fail_alone(tiny_text_artifact, monkeypatch):
    router = serving.Router.load(tiny_text_artifact, warmup=0)
    lines = [json.dumps({"query": q, "tau": 0.6}) for q in ("fine", "\ud800 x", "boom", "ok")]
    real = router._encoder

    class Fragile:  # the encoder, failing on one text (an error inside the routed chunk)
        dim = real.dim

        @staticmethod
        def encode(texts):
            if "boom" in texts:
                raise RuntimeError("encoder exploded")
            return real.encode(texts)

    monkeypatch.setattr(router, "_encoder", Fragile())
    out = io.StringIO()
    assert route_cli.route_jsonl(router, lines, out, tau=None) == (2, 2)
    records = [json.loads(r) for r in out.getvalue().strip().split("\n")]
    assert records[1]["line"] == 2 and "not valid Unicode" in records[1]["error"]
    assert records[2]["line"] == 3 and "encoder exploded" in records[2]["error"]
    assert [r.get("model") is not None for r in records] == [True, False, False, True]
