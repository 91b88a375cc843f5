"""proteus.evaluation.console: the table the main job prints (both routers, units, legend,
promises), checked by hand on a three-τ results dict."""

from proteus import pipeline
from proteus.evaluation import console, results

PROMISE = "P(accuracy of 500 requests < τ) <= 0.05"


def _results() -> dict:
    """τ = 0.5, 0.7, 0.9; proteus misses 0.7 (declared feasible) and 0.9 (declared infeasible);
    the certified router meets 0.7 at a higher cost and declares 0.9 infeasible too."""
    routers = {
        "proteus": {"accuracy": [0.6, 0.69, 0.8], "cost": [1e-4, 2e-4, 3e-3],
                    "feasible": [True, True, False]},
        "proteus_certified": {"accuracy": [0.6, 0.75, 0.8], "cost": [1e-4, 4e-4, 3e-3],
                              "feasible": [True, True, False]},
    }
    for block in routers.values():
        block["mean_mu"] = [0.2, 0.5, 0.9]
    certificate = {"delta": 0.05, "window": 500, "tolerance": 0.0, "served_window": 1000,
                   "promise": PROMISE}
    return results.build_results(
        dataset="toy", models=["a", "b"], encoder="hashing", n_queries=500,
        taus=[0.5, 0.7, 0.9], oracle=(0.95, 5e-5), best_fixed=("b", 0.8, 3e-3),
        routers=routers, extra={"perfect_frontier_cost": [1e-5, 2e-5, 4e-5],
                                "certificate": certificate})


def test_both_routers_side_by_side_in_usd_per_thousand():
    lines = console.compliance_table(_results()).splitlines()
    assert "USD per 1,000 queries" in lines[0] and "500 queries" in lines[0]
    assert "proteus (uncertified)" in lines[2]
    assert "proteus_certified (served by export)" in lines[2]
    header = lines[3].split()
    assert header == ["tau", *["accuracy", "cost/1k", "met", "feasible"] * 2, "frontier"]
    rows = [line.split() for line in lines[4:7]]
    # τ, then per router: accuracy, cost per 1,000 queries, met, feasible; the frontier last
    assert rows[0] == ["0.500", "0.6000", "0.1000", "yes", "yes", "0.6000", "0.1000", "yes", "yes",
                       "0.0100"]
    assert rows[1] == ["0.700", "0.6900", "0.2000", "NO", "yes", "0.7500", "0.4000", "yes", "yes",
                       "0.0200"]
    assert rows[2][3:5] == ["no", "no"]  # a miss at a τ declared infeasible is not a broken promise


def test_summary_legend_and_promises():
    text = console.compliance_table(_results())
    lines = text.splitlines()
    summary = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("proteus")}
    assert summary["proteus"][0] == "0.500"  # compliance: 0.5 met, 0.7 missed (0.9 infeasible)
    assert summary["proteus_certified"][0] == "1.000"
    assert summary["proteus"][3] == "1"  # one τ declared infeasible
    assert "best fixed model (b): accuracy 0.8000, cost/1k 3.0000" in text
    legend = lines[lines.index("legend:") + 1:lines.index("promises:")]
    for column in ("tau", "accuracy", "cost/1k", "met", "feasible", "frontier", "compliance"):
        assert any(line.split()[0] == column for line in legend if line.startswith("  ")), column
    promises = " ".join(" ".join(lines[lines.index("promises:") + 1:]).split())
    assert f"proteus_certified: for every τ it declares feasible, {PROMISE}" in promises
    assert "windows of 1,000 requests" in promises
    assert "proteus: no guarantee" in promises
    assert max(len(line) for line in lines if not line.startswith("wrote")) <= 100


def test_one_router_without_legend_and_the_pipeline_name():
    text = pipeline.compliance_table(_results(), "proteus", legend=False)
    assert "proteus_certified" not in text and "legend:" not in text
    assert text.splitlines()[3].split()[:2] == ["tau", "accuracy"]


def test_promise_lines_without_a_certificate_state_only_the_uncertified_promise():
    lines = console.promise_lines({})  # no "certificate": nothing is said for the certified one
    assert lines[0].startswith("  proteus: no guarantee: it routes τ to the cheapest")
    assert all(line.startswith(" " * 11) for line in lines[1:])  # under the text: 2 + len(head)
    assert " ".join(" ".join(lines).split()) == "proteus: " + console.UNCERTIFIED_PROMISE
    assert max(len(line) for line in lines) <= console.WIDTH
    assert console.promise_lines({}, ("proteus_certified",)) == []


def test_promise_lines_wrap_the_certified_promise_by_hand():
    res = {"certificate": {"promise": "P(x) <= 0.05", "served_window": 1000}}
    # "  proteus_certified: " is 21 characters, leaving 79 for the text on the first line:
    # "for every τ it declares feasible, P(x) <= 0.05 on this test split; an exported" is 78
    # (one more word, " artifact", would make 87); the rest goes under the text.
    assert console.promise_lines(res, ("proteus_certified", "unknown")) == [
        "  proteus_certified: for every τ it declares feasible, P(x) <= 0.05 on this test split; "
        "an exported",
        " " * 21 + "artifact promises it for windows of 1,000 requests"]
    names = [line.split(":")[0].strip() for line in console.promise_lines(res) if line[2] != " "]
    assert names == ["proteus", "proteus_certified"]  # in the order of `routers`
    names = [line.split(":")[0].strip() for line in
             console.promise_lines(res, ("proteus_certified", "proteus")) if line[2] != " "]
    assert names == ["proteus_certified", "proteus"]
