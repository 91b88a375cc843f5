"""Tests for proteus.evaluation.report (summary first, narrow transposed tables, single models in
an appendix) and for `python -m launch.report`, which re-renders a run's report and plots."""

import subprocess
import sys

import numpy as np
import pytest

from proteus.evaluation import report, results
from tests.results_helpers import LEARNED, synthetic_results

pytestmark = pytest.mark.filterwarnings("error")


def _small() -> dict:
    """Two τ, two routers, two models; costs in USD per query (x1000 in the report)."""
    feasible = [True, True]
    routers = {
        "proteus": {"accuracy": [0.82, 0.91], "cost": [1e-3, 2e-3], "feasible": feasible,
                    "mean_mu": [0.3, 0.6]},
        "carrot": {"accuracy": [0.79, 0.92], "cost": [5e-4, 3e-3], "feasible": [True, False]},
        "best_fixed": {"accuracy": [0.93, 0.93], "cost": [4e-3, 4e-3], "feasible": feasible},
        "oracle": {"accuracy": [0.97, 0.97], "cost": [8e-4, 8e-4], "feasible": feasible},
        "fixed:org/small": {"accuracy": [0.6, 0.6], "cost": [1e-4, 1e-4], "feasible": feasible},
        "fixed:big": {"accuracy": [0.93, 0.93], "cost": [4e-3, 4e-3], "feasible": feasible},
    }
    return results.build_results(
        dataset="toy", models=["org/small", "big"], encoder="hashing", n_queries=100,
        taus=np.array([0.8, 0.9]), oracle=(0.97, 8e-4), best_fixed=("big", 0.93, 4e-3),
        routers=routers, cost_range=(0.0, 4e-3))


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [x for x in lines[start:end] if x.startswith("|")]


def test_summary_taus_and_table_routers():
    res = {"taus": [0.5, 0.6, 0.65, 0.7, 0.8], "best_fixed": {"accuracy": 0.72}}
    assert report.summary_taus(res) == [1, 2, 3]  # 0.7 (<= 0.72), then 0.65 and 0.6
    assert report.summary_taus(res, n=1) == [3]
    res["best_fixed"]["accuracy"] = 0.4  # below every τ: the lowest τ only
    assert report.summary_taus(res) == [0]
    assert report.table_routers(_small()) == ["proteus", "carrot", "best_fixed"]


def test_summary_table_hand_checked():
    text = report.report_markdown(_small())
    rows = _section(text, "Summary")
    # summary τ: 0.9 is the largest grid τ <= best fixed 0.93; 0.85 snaps to 0.8 (nearest).
    assert rows[0] == ("| router | compliance | r | AIQ | top acc | infeasible | cost τ=0.80 "
                       "| cost τ=0.90 | max savings |")
    # proteus meets both floors (compliance 1, eligible); r of 2 points = 1; AIQ with costs
    # normalised by 4e-3: 0 below x=0.25, 0.82->0.91 over [0.25, 0.5], 0.91 to 1 = 0.67125;
    # top 0.91 < best_fixed's 0.93 (also eligible); costs 1 and 2 per 1k are the cheapest meeting
    # the floor; max savings 1 - 1/4.
    assert rows[2] == ("| proteus | **1.000** | **1.000** | **0.671** | 0.910 | **0** | **1** "
                       "| **2** | 75.0% |")
    # carrot: declared only τ=0.8 feasible and missed it (0.79): compliance 0, not eligible for
    # bold although its AIQ is higher: 0.625 * (0.79 + 0.92) / 2 + 0.25 * 0.92 = 0.764375.
    # Its 0.5 at τ=0.8 is in parentheses (floor missed).
    assert rows[3] == "| carrot | 0.000 | 1.000 | 0.764 | 0.920 | 1 | (0.5) | 3 | 25.0% |"
    assert rows[4].startswith("| best_fixed | **1.000** | n/a | 0.000 | **0.930** | **0** | 4 |")
    assert rows[5].startswith("| oracle | 1.000 |")  # a reference, never bold
    assert "**" not in rows[5]
    assert all(not r.startswith("| fixed:") for r in rows)


def test_tau_tables_are_transposed_hand_checked():
    text = report.report_markdown(_small())
    acc = _section(text, "Accuracy")
    assert acc[0] == "| τ | proteus | carrot | best_fixed |"
    assert acc[2:] == ["| 0.800 | 0.820 | (0.790) | 0.930 |", "| 0.900 | 0.910 | _0.920_ | 0.930 |"]
    cost = _section(text, "Cost (USD per 1,000 queries)")
    assert cost[2:] == ["| 0.800 | **1** | (0.5) | 4 |", "| 0.900 | **2** | _3_ | 4 |"]
    savings = _section(text, "Savings vs best fixed")
    assert savings[2:] == ["| 0.800 | **75.0%** | (87.5%) | 0.0% |",
                           "| 0.900 | **50.0%** | _25.0%_ | 0.0% |"]
    appendix = _section(text, "Appendix: single models (bold: best fixed, chosen on validation)")
    assert appendix[2:] == [  # full names, cheapest first
        "| org/small | 0.600 | 0.1 | 97.5% |", "| **big** | 0.930 | 4 | 0.0% |"]


@pytest.mark.parametrize("n_models", [2, 30])
def test_summary_first_and_within_120_columns(n_models):
    res = synthetic_results(n_models)
    text = report.report_markdown(res)
    headings = [x for x in text.splitlines() if x.startswith("## ")]
    assert headings[0] == "## Summary"
    summary = _section(text, "Summary")
    assert len(summary) == 2 + len(LEARNED) + 2  # header, rule, routers, best_fixed, oracle
    assert max(len(x) for x in summary) <= report.SUMMARY_WIDTH
    for title in ("Accuracy", "Cost (USD per 1,000 queries)", "Savings vs best fixed"):
        table = _section(text, title)
        assert len(table) == 2 + len(res["taus"])  # τ as rows
        assert table[0] == "| τ | " + " | ".join(LEARNED) + " | best_fixed |"
    assert "fixed:" not in text  # single models only in the appendix, by model name
    appendix = _section(text, headings[-1][3:])
    assert len(appendix) == 2 + n_models


def test_report_appends_predictor_quality_paired_and_crossfit_aiq():
    res = _small()
    res["predictor"] = {"auc": {"big": 0.7}, "ece": {"big": 0.02}, "mean_auc": 0.7,
                        "mean_ece": 0.02}
    res["paired_aiq"] = {"reference": "proteus", "n_boot": 10, "alpha": 0.05,
                         "routers": {"carrot": {"diff": -0.09, "lo": -0.1, "hi": -0.08}}}
    res["aiq_crossfit"] = {"repeats": 20, "seed": 0,
                           "routers": {"carrot": 0.61, "proteus": 0.625}}
    text = report.report_markdown(res)
    predictor = text.index("## Shared predictor on test")
    paired = text.index("## Paired AIQ differences")
    crossfit = text.index("## Cross-fitted AIQ")
    assert (text.index("## Savings vs best fixed") < predictor < paired < crossfit
            < text.index("## Appendix"))
    assert "| carrot | -0.0900 | [-0.1000, -0.0800] | yes |" in text
    assert "| proteus | 0.6250 |\n| carrot | 0.6100 |" in text  # highest first


def test_report_names_the_versions_it_was_evaluated_with():
    res = _small()
    assert "Evaluated with" not in report.report_markdown(res)  # results from before the field
    res["versions"] = {"proteus": "0.1.0", "jax": "0.10.2"}
    text = report.report_markdown(res)
    assert "Evaluated with proteus 0.1.0, jax 0.10.2.\n" in text
    assert text.index("Evaluated with") < text.index("## Summary")


def test_report_states_the_promise_and_the_redraw_check():
    res = _small()
    text = report.report_markdown(res)
    assert "promises" not in text and "## Redraw check" not in text  # older results: neither
    res["certificate"] = {"delta": 0.05, "window": 100, "tolerance": 0.0, "served_window": 1000,
                          "promise": "P(accuracy of 100 requests < τ) <= 0.05"}
    shares = {"served_share": [1.0, 0.5], "worst_tau": 0.9, "any_miss_share": 0.1,
              "mean_served": 1.5, "cost_vs_uncertified_quantiles": None}
    res["redraw"] = {"redraws": 50, "sizes": {"val": 10, "calib": 20, "test": 100},
                     "taus": [0.8, 0.9], "delta": 0.05, "tolerance": 0.0, "limit": 0.1116,
                     "routers": {"proteus": shares | {"miss_share": [0.0, 0.2],
                                                      "worst_miss_share": 0.2,
                                                      "cost_vs_uncertified": 1.0},
                                 "proteus_certified": shares | {"miss_share": [0.0, 0.04],
                                                                "worst_miss_share": 0.04,
                                                                "cost_vs_uncertified": 1.25}}}
    text = report.report_markdown(res)
    assert ("`proteus_certified` promises, for every τ it certifies: P(accuracy of 100 requests "
            "< τ) <= 0.05 (served artifacts: a window of 1000 requests).") in text
    assert "test accuracy < τ. Each τ should miss in at most" in text
    assert _section(text, "Redraw check (50 re-cuts of the held-out rows, sizes {'val': 10, "
                          "'calib': 20, 'test': 100})")[2:] == [
        "| `proteus` | 0.200 (τ 0.9000) | 1 | 0.100 | 1.5 | – |",
        "| `proteus_certified` | 0.040 (τ 0.9000) | 0 | 0.100 | 1.5 | 1.25x |"]
    assert report.floor_text(0.02) == "τ − 0.02"


def test_report_lists_the_automatic_settings():
    res = _small()
    assert "## Automatic settings" not in report.report_markdown(res)  # a hand-set config
    res["auto"] = {  # as results.json holds it: keys sorted; the report lists them as decided
        "task_prior": {"settings": ["model.task_prior"], "rule": "on only if it gains",
                       "candidates": [False, True], "evidence": {"plugin_aiq": [0.7, 0.71]},
                       "choice": True},
        "size": {"settings": ["train.batch_size"], "rule": "by size", "evidence": {},
                 "choice": {"batch_size": 128}},
        "tau_range": {"settings": ["eval.tau_lo", "eval.tau_hi"], "rule": "the reach",
                      "evidence": {}, "choice": {"tau_lo": 0.6, "tau_hi": 0.88}}}
    text = report.report_markdown(res)
    assert text.index("## Automatic settings") < text.index("## Appendix")
    assert _section(text, "Automatic settings")[2:] == [
        "| `train.batch_size` | `{'batch_size': 128}` | by size |",
        "| `model.task_prior` | `True` | on only if it gains |",
        "| `eval.tau_lo`, `eval.tau_hi` | `{'tau_lo': 0.6, 'tau_hi': 0.88}` | the reach |"]


def test_launch_report_rerenders_a_run(tmp_path):
    path = results.write_results(_small(), tmp_path / "run" / "results.json")
    out = tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", f"--results={path}", f"--out={out}",
         "--prefix=toy_", "--only=report,cost_accuracy"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["toy_cost_accuracy.png", "toy_report.md"]
    assert (out / "toy_report.md").read_text() == report.report_markdown(_small())
    with pytest.raises(ValueError, match="unknown outputs"):
        report.write_all(_small(), out, only=["pie"])


def test_summary_table_direct_rows_by_hand():
    lines = report.summary_table(_small())
    assert len(lines) == 2 + 4  # header, rule, proteus, carrot, best_fixed, oracle
    # summary τ: 0.9 (the largest <= best fixed 0.93), then 0.85, which snaps to 0.8
    assert lines[0] == ("| router | compliance | r | AIQ | top acc | infeasible | cost τ=0.80 "
                        "| cost τ=0.90 | max savings |")
    assert lines[1] == "|" + "---|" * 9
    # best_fixed: met both τ (eligible); r of a constant accuracy is undefined; AIQ 0: its one
    # point sits at x = 4e-3 / 4e-3 = 1; top acc 0.93 beats proteus' 0.91 (carrot's 0.92 is not
    # eligible); 0 infeasible ties proteus; cost 4 per 1k is not the cheapest that met τ (proteus'
    # 1 and 2); savings 1 - 4/4.
    assert lines[4] == "| best_fixed | **1.000** | n/a | 0.000 | **0.930** | **0** | 4 | 4 | 0.0% |"
    # oracle, never bold: one point at x = 8e-4 / 4e-3 = 0.2, so AIQ 0.8 * 0.97 = 0.776;
    # cost 0.8 per 1k; savings 1 - 0.8/4 = 80%.
    assert lines[5] == "| oracle | 1.000 | n/a | 0.776 | 0.970 | 0 | 0.8 | 0.8 | 80.0% |"


def test_tau_tables_direct_layout_by_hand():
    lines = report.tau_tables(_small())
    header, rule = "| τ | proteus | carrot | best_fixed |", "|---|---|---|---|"
    assert lines == [
        "", "## Accuracy", "", header, rule,
        # accuracy is never bold; carrot missed τ=0.8 (0.79) and declared τ=0.9 infeasible
        "| 0.800 | 0.820 | (0.790) | 0.930 |", "| 0.900 | 0.910 | _0.920_ | 0.930 |",
        "", "## Cost (USD per 1,000 queries)", "", header, rule,
        "| 0.800 | **1** | (0.5) | 4 |", "| 0.900 | **2** | _3_ | 4 |",
        "", "## Savings vs best fixed", "", header, rule,
        # 1 - cost / 4e-3: proteus 1 - 1/4 and 1 - 2/4; carrot 1 - 0.5/4 and 1 - 3/4
        "| 0.800 | **75.0%** | (87.5%) | 0.0% |", "| 0.900 | **50.0%** | _25.0%_ | 0.0% |"]


def test_fixed_models_table_cheapest_first_best_in_bold():
    assert report.fixed_models_table(_small()) == [
        "", "## Appendix: single models (bold: best fixed, chosen on validation)", "",
        "| model | accuracy | cost | savings vs best fixed |", "|---|---|---|---|",
        "| org/small | 0.600 | 0.1 | 97.5% |",  # 1e-4 USD -> 0.1 per 1k; 1 - 1e-4 / 4e-3
        "| **big** | 0.930 | 4 | 0.0% |"]
    res = _small()
    res["routers"] = {k: v for k, v in res["routers"].items() if not k.startswith("fixed:")}
    assert report.fixed_models_table(res) == []  # no single models: no appendix


def test_versions_lines_by_hand():
    res = {"versions": {"proteus": "0.1.0", "python": "3.11.7", "jax": "0.4.30"}}
    assert report.versions_lines(res) == [
        "Evaluated with proteus 0.1.0, python 3.11.7, jax 0.4.30.", ""]
    assert report.versions_lines({}) == []  # results from before the field
    assert report.versions_lines({"versions": {}}) == []
    assert report.versions_lines({"versions": "0.1.0"}) == []  # not a mapping


def test_certificate_lines_by_hand():
    res = {"certificate": {"promise": "P(acc < τ) <= 0.05", "served_window": 500}}
    assert report.certificate_lines(res) == [
        "`proteus_certified` promises, for every τ it certifies: P(acc < τ) <= 0.05 "
        "(served artifacts: a window of 500 requests).", ""]
    assert report.certificate_lines({}) == []
    assert report.certificate_lines({"certificate": None}) == []


def test_redraw_markdown_direct_by_hand():
    base = {"any_miss_share": 0.4, "mean_served": 2.5, "worst_tau": 0.85,
            "cost_vs_uncertified_quantiles": {"0.1": 1.1, "0.5": 1.5, "0.9": 2.0}}
    block = {"redraws": 10, "sizes": {"val": 5, "calib": 7}, "tolerance": 0.02, "limit": 0.15,
             "routers": {
                 # the uncertified router is the reference: no cost ratio even with quantiles
                 "proteus": base | {"miss_share": [0.3, 0.1], "worst_miss_share": 0.3,
                                    "cost_vs_uncertified": 1.0},
                 # 0.2 and 0.3 are over the limit 0.15, 0.15 itself is not
                 "proteus_certified": base | {"miss_share": [0.15, 0.2, 0.3],
                                              "worst_miss_share": 0.3,
                                              "cost_vs_uncertified": 1.5},
                 "carrot": base | {"miss_share": [0.0], "worst_miss_share": 0.0,
                                   "any_miss_share": 0.0, "cost_vs_uncertified": None,
                                   "cost_vs_uncertified_quantiles": None}}}
    assert report.redraw_markdown(block) == (
        "\n## Redraw check (10 re-cuts of the held-out rows, sizes {'val': 5, 'calib': 7})\n\n"
        "A miss: τ served as feasible and test accuracy < τ − 0.02. Each τ should miss in at most "
        "δ + 2 Monte Carlo standard errors = 0.1500 of the draws; cost: the router's mean cost "
        "over the uncertified router's on the τ both serve, averaged over draws "
        "(10% / 50% / 90% quantiles).\n\n"
        "| router | worst τ: share missed | τ over the limit | draws with any miss "
        "| τ served per draw | cost vs uncertified |\n"
        "|---|---|---|---|---|---|\n"
        "| `proteus` | 0.300 (τ 0.8500) | 1 | 0.400 | 2.5 | – |\n"
        "| `proteus_certified` | 0.300 (τ 0.8500) | 2 | 0.400 | 2.5 "
        "| 1.50x (1.10 / 1.50 / 2.00) |\n"
        "| `carrot` | 0.000 (τ 0.8500) | 0 | 0.000 | 2.5 | – |\n")


def test_auto_markdown_orders_decisions_as_decided_then_the_rest_sorted():
    entry = lambda settings, choice, rule: {"settings": settings, "choice": choice, "rule": rule}
    res = {"auto": {"zeta": entry(["z.a", "z.b"], 3, "rule z"),
                    "encoder": entry(["encoder"], "hashing", "rule e"),
                    "alpha": entry(["a"], False, "rule a"),
                    "size": entry(["train.batch_size"], 64, "rule s")}}
    text = report.auto_markdown(res)
    assert text.startswith("\n## Automatic settings\n\nDecided before training from the query "
                           "count or out-of-fold evidence")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows == [  # size, encoder (AUTO_ORDER), then alpha, zeta (sorted)
        "| settings | choice | rule |", "|---|---|---|",
        "| `train.batch_size` | `64` | rule s |",
        "| `encoder` | `hashing` | rule e |",
        "| `a` | `False` | rule a |",
        "| `z.a`, `z.b` | `3` | rule z |"]
    assert text.endswith("| `z.a`, `z.b` | `3` | rule z |\n")
    assert report.auto_markdown({}) == ""
    assert report.auto_markdown({"auto": {}}) == ""
    assert report.auto_markdown({"auto": "on"}) == ""


def test_write_report_writes_the_markdown_under_new_directories(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("stale")  # an older report is replaced, not appended to
    got = report.write_report(_small(), str(target))
    assert got == target and isinstance(got, type(target))
    text = target.read_text()
    assert text == report.report_markdown(_small())
    # by hand: oracle 8e-4 and best fixed 4e-3 USD per query are 0.8 and 4 per 1,000 queries
    assert text.splitlines()[:3] == [
        "# toy: test split, 100 queries", "",
        "Encoder `hashing`; 2 models; 2 τ. Oracle accuracy 0.970 at 0.8 USD per 1,000 queries; "
        "best fixed `big` 0.930 at 4."]
    fresh = report.write_report(_small(), tmp_path / "new" / "dir" / "r.md")  # dirs made
    assert fresh == tmp_path / "new" / "dir" / "r.md" and fresh.read_text() == text
