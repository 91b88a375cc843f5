"""Tests for proteus.evaluation.plots: fixed router styles, the legend (outside the axes, inside
the figure, routers only), log cost axes, the certified router's shading and fixed-model labels."""

import itertools

import numpy as np
import pytest

from proteus.evaluation import plots
from tests.results_helpers import LEARNED, synthetic_results

pytestmark = pytest.mark.filterwarnings("error")  # matplotlib must stay quiet


@pytest.fixture(scope="module", params=[2, 30], ids=["2models", "30models"])
def res(request):
    return synthetic_results(request.param)


def test_router_style_is_fixed_and_distinct():
    assert plots.router_style("proteus") == {"color": "#d62728", "linestyle": "-", "marker": "o",
                                             "linewidth": 2.4, "markersize": 4}
    looks = {tuple(plots.router_style(n)[k] for k in ("color", "linestyle", "marker"))
             for n in LEARNED}
    assert len(looks) == len(LEARNED)  # no two routers share colour, line style and marker
    assert len({plots.router_style(n)["color"] for n in LEARNED}) == len(LEARNED)
    assert plots.router_style("new_router") == plots.router_style("new_router")  # hashed, stable


def test_infeasible_spans_and_names():
    taus, feasible = [0.1, 0.2, 0.3, 0.4, 0.5], [True, False, False, True, False]
    spans = plots.infeasible_spans(taus, feasible)
    assert np.allclose(spans, [(0.15, 0.35), (0.45, 0.55)])  # half a grid step either side
    assert plots.infeasible_spans(taus, [True] * 5) == []
    assert plots.short_model_name("mistralai/mistral-7b-chat") == "mistral-7b-chat"
    assert plots.short_model_name("a/" + "x" * 30, width=5) == "xxxx…"
    assert plots.run_name({"dataset": "table:mmlu_pro_29models_wide.parquet"}) == (
        "mmlu_pro_29models_wide")
    assert plots.run_name({"dataset": "x", "config_name": "mmlu_pro"}) == "mmlu_pro"


@pytest.mark.parametrize("name", plots.PLOT_NAMES)
def test_legend_inside_figure_and_only_routers(res, name):
    fig = plots.make_figure(res, name)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend()
    box, frame = legend.get_window_extent(), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert box.x0 >= ax.get_window_extent().x1  # outside the axes: it covers no data
    assert [t.get_text() for t in legend.get_texts()] == list(LEARNED)


def test_log_cost_axis_only_over_a_decade(res):
    wide = len(res["models"]) > 2  # the helper's costs span 100x at 30 models, 3x at 2
    assert plots.make_figure(res, "cost_accuracy").axes[0].get_xscale() == (
        "log" if wide else "linear")
    assert plots.make_figure(res, "cost_vs_tau").axes[0].get_yscale() == (
        "log" if wide else "linear")


def test_certified_infeasible_region_is_shaded(res):
    ax = plots.make_figure(res, "accuracy_vs_tau").axes[0]
    taus = res["taus"]
    lo, hi = plots.infeasible_spans(taus, res["routers"]["proteus_certified"]["feasible"])[0]
    shaded = [p.get_x() for p in ax.patches] + [p.get_x() + p.get_width() for p in ax.patches]
    assert np.allclose(sorted(shaded), [lo, hi])  # one span, the helper's top third of τ
    assert any(t.get_text() == "certified: infeasible τ" for t in ax.texts)


def test_fixed_model_labels_fit_and_do_not_overlap(res):
    fig = plots.make_figure(res, "cost_accuracy")
    fig.canvas.draw()
    ax = fig.axes[0]
    names = {plots.short_model_name(m) for m in res["models"]}
    labels = [t for t in ax.texts if t.get_text() in names]
    assert 1 <= len(labels) <= plots.MAX_LABELS
    best = plots.short_model_name(res["best_fixed"]["model"])
    assert best in [t.get_text() for t in labels]  # the best fixed model is always named
    boxes = [t.get_window_extent() for t in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    if len(res["models"]) == 2:
        assert len(labels) == 2  # room for both


def test_write_plots(tmp_path):
    res = synthetic_results(3, n_taus=4)
    paths = plots.write_plots(res, tmp_path / "p", prefix="x_", names=["cost_accuracy"])
    assert [p.name for p in paths] == ["x_cost_accuracy.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown plot"):
        plots.make_figure(res, "pie")


def test_cost_accuracy_line_is_the_hull_of_the_sweep_when_recorded():
    res = synthetic_results(2)
    name = plots.plotted_routers(res)[0]
    np.testing.assert_array_equal(plots.router_curve(res, name)[0], res["routers"][name]["cost"])
    res["routers"][name]["sweep"] = {"cost": [1.0, 2.0, 3.0, 3.5], "accuracy": [0.5, 0.6, 0.9,
                                                                              0.85]}
    res["cost_range"] = [1.0, 3.0]
    # (2, 0.6) lies under the chord of its neighbours, (3.5, 0.85) costs more for less
    cost, acc = plots.router_curve(res, name)
    assert cost.tolist() == [1.0, 3.0] and acc.tolist() == [0.5, 0.9]
    line = [ln for ln in plots.make_figure(res, "cost_accuracy").axes[0].get_lines()
            if ln.get_label() == name]
    assert line[0].get_xdata().tolist() == [1.0, 3.0]
