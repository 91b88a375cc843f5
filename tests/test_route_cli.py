"""proteus.serving.route_cli (`python -m launch.route`): one query from the command line, JSONL
batch."""

import io
import json
import os

import numpy as np
import pytest

from proteus.serving import route_cli
from proteus.serving import router as serving
from tests.test_serve_extra import NOT_IN_CORE, run_without

pytest_plugins = ["tests.serving_fixtures"]


def test_route_command_is_short_quiet_and_needs_no_serve_extra(text_artifact, text_router):
    """`launch.route` after a plain install: one short line per query, and nothing else: no
    library INFO lines (jax's TPU probe, Orbax's restore), no serve extra needed."""
    texts = ["mmlu question, moderate: chemistry, software, physics",
             "gsm8k question, easy: algebra"]
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}  # let jax probe a TPU
    proc = run_without(NOT_IN_CORE, "launch.route", f"--artifact={text_artifact}", "--tau=0.3",
                       *texts, env=env)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    for noise in ("Unable to initialize backend", "orbax", "Restoring checkpoint", "I1", "W1"):
        assert noise not in err, err
    assert err == ""
    want = text_router.route(texts, 0.3)
    lines = out.strip().split("\n")
    assert [line.split()[0] for line in lines] == [w["model"] for w in want]
    for line, text in zip(lines, texts, strict=True):
        assert "τ=0.30" in line and line.endswith(text)


def test_json_records(text_router, capsys):
    text = "mmlu question, moderate: chemistry, software, physics"
    assert route_cli.route_args(text_router, [text, "x"], 0.3, as_json=True) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.strip().split("\n")]
    want = text_router.route([text, "x"], 0.3)
    assert lines == json.loads(json.dumps(want))
    assert "\\u03c4" not in out and "τ" in out  # the reasons' τ as it is, not escaped


def test_a_refused_input_is_one_line_and_exit_status_2(text_router, capsys):
    assert route_cli.route_args(text_router, ["x"], 1.5) == 2
    assert capsys.readouterr().err == "launch.route: tau must be a number in [0, 1], got 1.5\n"


def test_usd_two_significant_digits_never_exponent():
    assert route_cli.usd(0.00024716) == "$0.00025"
    assert route_cli.usd(0.0033086) == "$0.0033"
    assert route_cli.usd(1.5) == "$1.5"
    assert route_cli.usd(2e-7) == "$0.0000002"


def test_short_form_by_default(text_router, capsys):
    """One line per decision: model, τ, feasible and certified, cost estimate, the query."""
    queries = ["gsm8k question, easy: algebra", "mmlu question, hard: " + "physics, " * 20]
    assert route_cli.route_args(text_router, queries, 0.3) == 0
    lines = capsys.readouterr().out.splitlines()
    want = text_router.route(queries, 0.3)
    assert len(lines) == 2
    for line, d, query in zip(lines, want, queries, strict=True):
        assert line.split()[:2] == [d["model"], "τ=0.30"]
        status = "feasible, " + ("certified" if d["certified"] else "uncertified")
        assert status in line
        assert f"est. {route_cli.usd(d['c_hat'][d['model']])}/query" in line
        assert query[:40] in line and len(line) < 160  # a long query is shortened
    assert lines[1].endswith("…")


def test_short_form_flags_an_infeasible_tau(text_router, capsys):
    tau = 1.0  # above every operating point's accuracy
    d = text_router.route("gsm8k question, easy: algebra", tau)[0]
    assert not d["feasible"]
    route_cli.route_args(text_router, ["gsm8k question, easy: algebra"], tau)
    assert "INFEASIBLE, best effort" in capsys.readouterr().out
    route_cli.route_args(text_router, ["0.5"] * text_router.feature_dim, 0.3,
                         features=["0.5"] * text_router.feature_dim)
    assert f"({text_router.feature_dim} features)" in capsys.readouterr().out


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


def test_short_line_by_hand():
    decision = {"model": "small", "tau": 0.9, "feasible": True, "certified": True,
                "c_hat": {"small": 0.00024716, "large": 0.01}}
    # model padded to 6, status padded to 23 and cost + '/query' to 15, two spaces between
    assert route_cli.short_line(decision, "What is 2 + 2?", width=6) == (
        "small   τ=0.90  feasible, certified      est. $0.00025/query   What is 2 + 2?")
    decision |= {"certified": False}
    assert "  feasible, uncertified    est." in route_cli.short_line(decision, "q")
    long = "x" * 61  # over QUERY_CHARS (60): 59 characters and an ellipsis
    line = route_cli.short_line(decision | {"feasible": False, "model": "large"}, long)
    assert line == f"large  τ=0.90  INFEASIBLE, best effort  est. $0.01/query      {'x' * 59}…"


def test_route_file_writes_one_record_per_line_and_an_exit_status(tiny_artifact, tmp_path,
                                                                   capsys):
    """The tiny router (serving_fixtures): τ=0.3 is feasible at point 2 (τ <= 0.5956), τ=0.95
    is above every point (best effort at point 0); a 2-d features line fails alone."""
    router = serving.Router.load(tiny_artifact, warmup=0)
    lines = [json.dumps({"id": "a", "features": [0.1, 0.2, 0.3, 0.4]}), "",
             json.dumps({"features": [0.1, 0.2, 0.3, 0.4], "tau": 0.95}),
             json.dumps({"features": [1.0, 2.0]})]
    src, dst = tmp_path / "q.jsonl", tmp_path / "d.jsonl"
    src.write_text("\n".join(lines) + "\n")
    assert route_cli.route_file(router, str(src), str(dst), 0.3, progress=False) == 1
    assert capsys.readouterr().err == "2 decisions, 1 errors\n"
    records = [json.loads(r) for r in dst.read_text().splitlines()]
    assert len(records) == 3  # the blank line gives nothing
    assert records[0]["id"] == "a" and records[0]["tau"] == pytest.approx(0.3)
    assert (records[0]["feasible"], records[0]["operating_point"]) == (True, 2)
    assert (records[1]["feasible"], records[1]["operating_point"]) == (False, 0)
    assert records[2]["line"] == 4 and "values per query" in records[2]["error"]
    # every line routable: exit status 0; no output path: the records go to stdout (2 rows
    # again: the same compiled batch size)
    src.write_text("\n".join(lines[:3]) + "\n")
    assert route_cli.route_file(router, str(src), None, 0.3, progress=False) == 0
    out, err = capsys.readouterr()
    assert [json.loads(r)["operating_point"] for r in out.splitlines()] == [2, 0]
    assert err == "2 decisions, 0 errors\n"
    # the input as the output: refused before it is opened for writing (that emptied it)
    before = src.read_text()
    with pytest.raises(ValueError, match=r"--output=.*q.jsonl is the --input file"):
        route_cli.route_file(router, str(src), str(src), 0.3, progress=False)
    assert src.read_text() == before
