"""PNG figures of a results dict (DESIGN.md section 7), readable at 2 models and at 30.

    paths = write_plots(results, "runs/x")  # accuracy_vs_tau, cost_vs_tau, cost_accuracy .png

Routers are lines with one fixed style per name (`router_style`), so a router looks the same in
every plot and on every data set (in the cost-accuracy plane, the hull its AIQ integrates); the
legend sits outside the axes and holds only them. Fixed
models are grey points labelled by a short name where a label fits; the oracle, its frontier and
the best fixed model are marked and labelled in place. Costs use a log axis when they span more
than a decade. The τ the certified router declares infeasible are shaded. Matplotlib's Agg canvas
is used directly: no pyplot, no global backend state.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proteus.evaluation import metrics
from proteus.evaluation.results import FIXED_PREFIX

PLOT_NAMES = ("accuracy_vs_tau", "cost_vs_tau", "cost_accuracy")
REFERENCES = ("best_fixed", "oracle")  # drawn as marked references, not as router lines
CERTIFIED = "proteus_certified"  # whose declared-infeasible τ are shaded
DPI = 110
FIGSIZE = (8.4, 4.8)  # inches; the axes take ~75% of the width, the legend the rest
GREY = "0.55"
MAX_LABELS = 12  # fixed-model names on the cost-accuracy plane; more reads as noise
_TEXT_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75}

# name -> (colour, line style, marker, line width). PROTEUS in reds, drawn thicker; baselines in
# the remaining tab10 colours, each with its own marker so they stay apart in greyscale too.
_STYLES = {
    "proteus": ("#d62728", "-", "o", 2.4),
    "proteus_certified": ("#7f0000", "--", "D", 2.4),
    "proteus_plugin": ("#ff7f0e", "-.", "^", 1.6),
    "carrot": ("#1f77b4", "-", "s", 1.4),
    "omnirouter": ("#2ca02c", "-", "v", 1.4),
    "threshold": ("#bcbd22", ":", "P", 1.4),
    "knn": ("#9467bd", "-", "X", 1.4),
    "zero_router": ("#8c564b", ":", "<", 1.4),
    "cluster": ("#17becf", "--", ">", 1.4),
    "task_table": ("#e377c2", "--", "h", 1.4),
}
_SPARE_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")


def router_style(name: str) -> dict[str, Any]:
    """Matplotlib line kwargs of router `name`: the same for a name in every plot and data set.

    Names outside the known set get a colour and marker from a hash of the name (stable across
    runs, unlike Python's `hash`).
    """
    if name in _STYLES:
        colour, ls, marker, lw = _STYLES[name]
    else:
        h = zlib.crc32(name.encode())
        colour, ls, marker, lw = _SPARE_COLOURS[h % 6], "-", "ov^sD"[h // 6 % 5], 1.4
    return {"color": colour, "linestyle": ls, "marker": marker, "linewidth": lw, "markersize": 4}


def plotted_routers(results: Mapping[str, Any]) -> list[str]:
    """Routers drawn as lines (and named in the legend): all but fixed models and references."""
    return [
        n for n in results["routers"] if not n.startswith(FIXED_PREFIX) and n not in REFERENCES
    ]


def short_model_name(model: str, width: int = 22) -> str:
    """A label for a fixed model: no organisation prefix, at most `width` characters."""
    name = model.split("/")[-1]
    return name if len(name) <= width else name[: width - 1] + "…"


def run_name(results: Mapping[str, Any]) -> str:
    """A short title: the config's name if recorded, else the data file's stem."""
    name = results.get("config_name") or results["dataset"]
    return Path(str(name).split(":")[-1].split("?")[0]).stem


_nan = metrics.as_floats  # results lists -> float arrays, None (refused τ) as NaN


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="major", color="0.9", lw=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _use_log(ax, costs: np.ndarray, axis: str) -> None:
    # Routing happens among the cheap models; on a linear axis they collapse into one corner.
    costs = costs[np.isfinite(costs) & (costs > 0)]
    if costs.size and costs.max() / costs.min() > 10.0:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def infeasible_spans(taus, feasible) -> list[tuple[float, float]]:
    """Contiguous runs of τ declared infeasible, as (lo, hi) widened by half a grid step.

    Args:
      taus: [T] increasing targets.
      feasible: [T] bool.

    Returns:
      [(lo, hi)] one per run, in τ order; [] when every τ is feasible.
    """
    taus, bad = np.asarray(taus, float), ~np.asarray(feasible, bool)
    half = np.diff(taus).min() / 2 if taus.size > 1 else 0.005
    spans, start = [], None
    for i, b in enumerate(bad):
        if b and start is None:
            start = i
        if start is not None and (not b or i == len(bad) - 1):
            end = i if b else i - 1
            spans.append((float(taus[start] - half), float(taus[end] + half)))
            start = None
    return spans


def _shade(ax, results: Mapping[str, Any], horizontal: bool = False) -> None:
    # The certified router's declared-infeasible τ; without it, the τ above the oracle.
    taus = np.asarray(results["taus"], float)
    cert = results["routers"].get(CERTIFIED)
    if cert is not None:
        spans, text = infeasible_spans(taus, cert["feasible"]), "certified: infeasible τ"
    else:
        top = results["oracle"]["accuracy"]
        spans, text = ([(top, taus.max())] if taus.max() > top else []), "τ > oracle"
    span = ax.axhspan if horizontal else ax.axvspan
    for i, (lo, hi) in enumerate(spans):
        span(lo, hi, color="#f4b6b6", alpha=0.45, lw=0, zorder=0)
        if i == len(spans) - 1:  # label the last run at its bottom: the curves rarely go there
            xy = (0.99, lo) if horizontal else (lo, 0.01)
            trans = ax.get_yaxis_transform() if horizontal else ax.get_xaxis_transform()
            ax.annotate(text, xy, xycoords=trans, xytext=(-3, 3) if horizontal else (3, 3),
                        textcoords="offset points", ha="right" if horizontal else "left",
                        va="bottom", fontsize=8, color="#7f0000")


def _label_line(ax, text: str, y: float, colour: str = "0.3") -> None:
    """Label a horizontal reference line at `y` under its left end, inside the axes."""
    ax.annotate(text, (0.01, y), xycoords=ax.get_yaxis_transform(), xytext=(0, -2),
                textcoords="offset points", ha="left", va="top", fontsize=8, color=colour,
                bbox=_TEXT_BOX)


def _legend(fig, ax) -> None:
    # Outside the axes, to the right: it never covers data; constrained layout makes room for it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8,
              frameon=False, handlelength=2.6)


def _versus_tau(results: Mapping[str, Any], key: str):
    """accuracy (or cost) against τ for every plotted router, with references and shading."""
    fig, ax = _figure()
    taus = np.asarray(results["taus"], float)
    _shade(ax, results)
    every = max(1, len(taus) // 12)  # a marker on every point of a 50-τ grid is a smear
    for name in plotted_routers(results):
        ax.plot(taus, _nan(results["routers"][name][key]), label=name, markevery=every,
                **router_style(name))
    best, oracle = results["best_fixed"], results["oracle"]
    ax.axhline(best[key], color=GREY, ls="--", lw=1.2, zorder=1)
    _label_line(ax, f"best fixed ({short_model_name(best['model'], 28)})", best[key])
    if key == "accuracy":
        ax.plot(taus, taus, color="k", ls=(0, (1, 2)), lw=1.0, zorder=1)
        at = taus[0] + 0.85 * (taus[-1] - taus[0])  # above the diagonal, below the oracle
        ax.annotate("accuracy = τ", (at, at), xytext=(-6, 4), ha="right", va="bottom",
                    textcoords="offset points", fontsize=8)
        ax.axhline(oracle["accuracy"], color="k", ls="-", lw=0.8, zorder=1)
        _label_line(ax, "oracle (per-query best model)", oracle["accuracy"], "k")
        ax.set_ylabel("test accuracy")
    else:
        costs = np.concatenate([_nan(results["routers"][n][key]) for n in plotted_routers(results)]
                               + [[best["cost"]]])
        _use_log(ax, costs, "y")
        ax.set_ylabel("test cost (USD per query)")
    ax.set_xlabel("target accuracy τ")
    ax.set_title(f"{run_name(results)}: {key} vs τ", fontsize=10)
    _legend(fig, ax)
    return fig


def _fixed_points(results: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(model, cost, accuracy) of every fixed model in the results."""
    out = []
    for name, entry in results["routers"].items():
        if name.startswith(FIXED_PREFIX):
            cost, acc = _nan(entry["cost"]), _nan(entry["accuracy"])
            out.append((name[len(FIXED_PREFIX):], float(np.nanmean(cost)), float(np.nanmean(acc))))
    return out


def _label_priority(points: list[tuple[str, float, float]], best_model: str) -> list[int]:
    """Indices of fixed models in labelling order: best, then the cost-accuracy Pareto set
    (cheapest first), then the rest by accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][2]))
    pareto, top = [], -np.inf
    for i in order:
        if points[i][2] > top:
            pareto.append(i)
            top = points[i][2]
    rest = sorted(set(range(len(points))) - set(pareto), key=lambda i: -points[i][2])
    first = [i for i in range(len(points)) if points[i][0] == best_model]
    return first + [i for i in pareto + rest if i not in first]


_SPOTS = ((4, -3, "left", "top"), (-4, -3, "right", "top"), (4, 3, "left", "bottom"),
          (-4, 3, "right", "bottom"))  # label offsets (points) tried around a fixed model


def _label(ax, model: str, cost: float, acc: float, spot) -> Any:
    dx, dy, ha, va = spot
    return ax.annotate(short_model_name(model), (cost, acc), xytext=(dx, dy), ha=ha, va=va,
                       textcoords="offset points", fontsize=7, color="0.3", bbox=_TEXT_BOX)


def _place_labels(fig, ax, points, priority: list[int], best_model: str) -> None:
    """Label fixed models in `priority` order where a label stays inside the axes and covers no
    other label and no plotted point (so 30 models get a few readable names, 2 get both). The
    best fixed model is always labelled, in its first spot inside the axes if none is free."""
    fig.canvas.draw()  # fixes the layout and the axes' scales, so extents are final
    renderer = fig.canvas.get_renderer()
    frame, taken = ax.get_window_extent(renderer), []
    xy = np.concatenate([line.get_xydata() for line in ax.get_lines()] or [np.zeros((0, 2))])
    xy = ax.transData.transform(xy[np.isfinite(xy).all(axis=1)])
    dots = ax.transData.transform(np.array([(p[1], p[2]) for p in points]).reshape(-1, 2))
    for i in priority:
        if len(taken) >= MAX_LABELS:
            break
        obstacles = np.concatenate([xy, np.delete(dots, i, axis=0)])  # router points, other models
        fallback = None
        for spot in _SPOTS:
            text = _label(ax, *points[i], spot)
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1
            inside = inside and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not box.count_contains(obstacles) and not box.count_overlaps(taken):
                taken.append(box)
                break
            text.remove()
            fallback = fallback or (spot if inside else None)
        else:
            if points[i][0] == best_model and fallback:
                text = _label(ax, *points[i], fallback)
                taken.append(text.get_window_extent(renderer).expanded(1.05, 1.1))


def router_curve(results: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(cost [K], accuracy [K]) a router's cost-accuracy line: the hull its AIQ integrates (the
    vertices of its "sweep", by cost) when the results hold one, else its points over the grid."""
    entry = results["routers"][name]
    sweep = entry.get("sweep")
    if sweep is None:
        return _nan(entry["cost"]), _nan(entry["accuracy"])
    cost, acc = _nan(sweep["cost"]), _nan(sweep["accuracy"])
    vertices, _ = metrics.aiq_hull(cost, acc, results["cost_range"])
    return cost[vertices], acc[vertices]


def _cost_accuracy(results: Mapping[str, Any]):
    """The cost-accuracy plane: router curves (`router_curve`), fixed models, oracle and its
    frontier."""
    fig, ax = _figure()
    points = _fixed_points(results)
    if points:
        ax.scatter([p[1] for p in points], [p[2] for p in points], s=18, color=GREY,
                   edgecolor="none", zorder=2)
    costs = [p[1] for p in points]
    for name in plotted_routers(results):
        cost, acc = router_curve(results, name)
        ax.plot(cost, acc, label=name, **router_style(name))
        costs += list(cost)
    oracle, best = results["oracle"], results["best_fixed"]
    frontier = results.get("oracle_frontier")  # {"taus": [F], "cost": [F]}, optional
    if isinstance(frontier, Mapping):
        fc, ft = _nan(frontier["cost"]), _nan(frontier["taus"])
        ax.plot(fc, ft, color="k", lw=1.0, zorder=1)
        ok = np.flatnonzero(np.isfinite(fc) & np.isfinite(ft))
        if ok.size:  # label it half way up, where the curve is far from the fixed models
            i = ok[np.argmin(np.abs(ft[ok] - (ft[ok].min() + ft[ok].max()) / 2))]
            ax.annotate("oracle frontier", (fc[i], ft[i]), xytext=(5, 0), fontsize=8,
                        textcoords="offset points", va="center", bbox=_TEXT_BOX)
    ax.plot([oracle["cost"]], [oracle["accuracy"]], "k*", ms=12, zorder=4)
    ax.annotate("oracle", (oracle["cost"], oracle["accuracy"]), xytext=(7, -3), fontsize=8,
                textcoords="offset points", va="top")
    ax.plot([best["cost"]], [best["accuracy"]], "s", ms=9, mfc="none", mec="k", mew=1.5, zorder=4)
    costs += [oracle["cost"], best["cost"]]
    _use_log(ax, np.asarray(costs, float), "x")
    ax.set(xlabel="test cost (USD per query)", ylabel="test accuracy")
    ax.set_title(f"{run_name(results)}: cost vs accuracy (grey: single models, □: best one)",
                 fontsize=10)
    _legend(fig, ax)
    _place_labels(fig, ax, points, _label_priority(points, best["model"]), best["model"])
    return fig


def make_figure(results: Mapping[str, Any], name: str):
    """One of `PLOT_NAMES` as a matplotlib `Figure` on an Agg canvas."""
    if name == "cost_accuracy":
        return _cost_accuracy(results)
    if name in ("accuracy_vs_tau", "cost_vs_tau"):
        return _versus_tau(results, name.split("_")[0])
    raise ValueError(f"unknown plot {name!r}; expected one of {PLOT_NAMES}")


def write_plots(results: Mapping[str, Any], out_dir: str | os.PathLike, prefix: str = "",
                names=PLOT_NAMES) -> list[Path]:
    """Write `<prefix><name>.png` under `out_dir` for each of `names` (default: all three)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        paths.append(out_dir / f"{prefix}{name}.png")
        make_figure(results, name).savefig(paths[-1], dpi=DPI)
    return paths
