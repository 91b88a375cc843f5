"""`report.md` of a results dict (DESIGN.md section 7): narrow tables, readable at 30 models.

    text = report_markdown(results)
    paths = write_all(results, "runs/x")  # report.md and the plots (`proteus.evaluation.plots`)

Layout: a summary table first (routers as rows; it fits in `SUMMARY_WIDTH` columns), then one
table per metric with τ as rows and routers as columns, the shared predictor's quality and the
paired AIQ differences when the results hold them, and an appendix with every single model.
Single models appear in the tables only folded into the `best_fixed` row/column; the oracle is a
reference, never bold. Costs are in USD per 1,000 queries so they read as plain decimals.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proteus.evaluation import metrics, plots
from proteus.evaluation.paired_aiq import crossfit_markdown, paired_markdown
from proteus.evaluation.predictor_quality import quality_markdown
from proteus.evaluation.results import FIXED_PREFIX

SUMMARY_WIDTH = 120  # characters per line of the summary table: a terminal, a narrow browser
N_SUMMARY_TAUS = 3  # τ at which the summary states each router's cost
PER_1K = 1000.0  # costs are reported in USD per 1,000 queries
NOTE = ("Bold: best among routers whose test accuracy met the floor τ (in the summary: among those "
        "that met every τ they declared feasible; the oracle, a reference, is never bold). In "
        "parentheses: the router's test accuracy missed τ. Italic: τ the router declared "
        "infeasible. Costs in USD per 1,000 queries.")


def _cell(value: Any, fmt: str, bold: bool = False, italic: bool = False,
          missed: bool = False) -> str:
    """One table cell: "n/a" for a missing value, else `fmt`, then (missed), _italic_, **bold**."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = fmt.format(value)
    if text.startswith("-") and not any(c in text for c in "123456789"):
        text = text[1:]  # "-0.0%": a cost equal to the reference up to float rounding
    text = f"({text})" if missed else text
    text = f"_{text}_" if italic else text
    return f"**{text}**" if bold else text


def _best(values: list, eligible: list[bool], higher: bool) -> float | None:
    pool = [v for v, ok in zip(values, eligible, strict=True) if ok and v is not None]
    return (max(pool) if higher else min(pool)) if pool else None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def table_routers(results: Mapping[str, Any]) -> list[str]:
    """Routers shown in the tables: the plotted ones, then `best_fixed` (if present)."""
    names = plots.plotted_routers(results)
    return names + [n for n in ("best_fixed",) if n in results["routers"]]


def summary_taus(results: Mapping[str, Any], n: int = N_SUMMARY_TAUS) -> list[int]:
    """Indices of the grid τ at which the summary states costs.

    The top one is the largest grid τ at most the best fixed model's accuracy (matching the best
    single model is where savings matter); the others step down by 0.05, snapped to the grid.

    Returns:
      [<= n] increasing indices into results["taus"].
    """
    taus = np.asarray(results["taus"], float)
    below = taus <= results["best_fixed"]["accuracy"] + metrics.FLOOR_EPS
    top = taus[below].max() if below.any() else taus.min()
    wanted = top - 0.05 * np.arange(n)[::-1]
    return sorted({int(np.argmin(np.abs(taus - w))) for w in wanted})


def summary_table(results: Mapping[str, Any]) -> list[str]:
    """The summary table's markdown lines: routers as rows (plus the oracle), each line at most
    `SUMMARY_WIDTH` characters for router names up to 18 characters."""
    r, taus, summ = results["routers"], results["taus"], results["summary"]
    names = table_routers(results) + [n for n in ("oracle",) if n in r]
    idx = summary_taus(results)
    header = ["router", "compliance", "r", "AIQ", "top acc", "infeasible"]
    header += [f"cost τ={taus[t]:.2f}" for t in idx] + ["max savings"]
    met = {n: metrics.meets_floor(taus, [np.nan if a is None else a for a in r[n]["accuracy"]])
           for n in names}
    eligible = {n: n != "oracle" and summ[n]["floor_compliance"] == 1.0 for n in names}
    columns = [  # (value of router n, higher is better, format); bold only among eligible
        (lambda n: summ[n]["floor_compliance"], True, "{:.3f}"),
        (lambda n: summ[n]["target_response_corr"], True, "{:.3f}"),
        (lambda n: summ[n]["aiq"], True, "{:.3f}"),
        (lambda n: max((a for a in r[n]["accuracy"] if a is not None), default=None), True,
         "{:.3f}"),
        (lambda n: summ[n]["n_infeasible"], False, "{}"),
    ]
    grid = {n: [get(n) for get, _, _ in columns] for n in names}
    bests = [_best([grid[n][j] for n in names], [eligible[n] for n in names], higher)
             for j, (_, higher, _) in enumerate(columns)]
    cost_best = []
    for t in idx:
        costs = [r[n]["cost"][t] for n in names]
        ok = [n != "oracle" and bool(met[n][t]) for n in names]
        cost_best.append(_best(costs, ok, higher=False))
    rows = []
    for n in names:
        cells = [n] + [_cell(v, fmt, eligible[n] and v is not None and v == b)
                       for v, b, (_, _, fmt) in zip(grid[n], bests, columns, strict=True)]
        for t, best in zip(idx, cost_best, strict=True):
            cost, ok = r[n]["cost"][t], n != "oracle" and bool(met[n][t])
            cells.append(_cell(None if cost is None else cost * PER_1K, "{:.3g}",
                               bold=ok and cost == best, missed=not met[n][t]))
        cells.append(_cell(summ[n]["max_savings_vs_best_fixed"], "{:.1%}"))
        rows.append(cells)
    return _table(header, rows)


_TAU_TABLES = (  # (title, value of one router entry at τ index t, higher is better, format)
    ("Accuracy", lambda e, res, t: e["accuracy"][t], None, "{:.3f}"),  # None: nothing bold
    ("Cost (USD per 1,000 queries)",
     lambda e, res, t: None if e["cost"][t] is None else e["cost"][t] * PER_1K, False, "{:.3g}"),
    ("Savings vs best fixed",
     lambda e, res, t: None if e["cost"][t] is None
     else 1.0 - e["cost"][t] / res["best_fixed"]["cost"], True, "{:.1%}"),
)


def tau_tables(results: Mapping[str, Any]) -> list[str]:
    """Per-τ tables (accuracy, cost, savings): τ as rows, `table_routers` as columns."""
    names, taus, out = table_routers(results), results["taus"], []
    for title, get, higher, fmt in _TAU_TABLES:
        rows = []
        for t, tau in enumerate(taus):
            entries = [results["routers"][n] for n in names]
            values = [get(e, results, t) for e in entries]
            met = [e["accuracy"][t] is not None and bool(metrics.meets_floor(tau, e["accuracy"][t]))
                   for e in entries]
            best = None if higher is None else _best(values, met, higher)
            rows.append([f"{tau:.3f}"] + [
                _cell(v, fmt, bold=ok and v is not None and v == best,
                      italic=not e["feasible"][t], missed=not ok)
                for v, ok, e in zip(values, met, entries, strict=True)])
        out += ["", f"## {title}", ""] + _table(["τ"] + names, rows)
    return out


def fixed_models_table(results: Mapping[str, Any]) -> list[str]:
    """Appendix: every single model's test accuracy, cost and savings, cheapest first."""
    best = results["best_fixed"]
    rows = []
    for name, entry in results["routers"].items():
        if name.startswith(FIXED_PREFIX):
            acc, cost = entry["accuracy"][0], entry["cost"][0]  # constant over τ
            model = name[len(FIXED_PREFIX):]
            rows.append((cost, [f"**{model}**" if model == best["model"] else model,
                                _cell(acc, "{:.3f}"), _cell(cost * PER_1K, "{:.3g}"),
                                _cell(1.0 - cost / best["cost"], "{:.1%}")]))
    if not rows:
        return []
    rows.sort(key=lambda row: row[0])
    header = ["model", "accuracy", "cost", "savings vs best fixed"]
    return (["", "## Appendix: single models (bold: best fixed, chosen on validation)", ""]
            + _table(header, [row for _, row in rows]))


def versions_lines(results: Mapping[str, Any]) -> list[str]:
    """["Evaluated with proteus 0.1.0, python 3.11.7, jax ...", ""], or [] for older results."""
    versions = results.get("versions")
    if not isinstance(versions, Mapping) or not versions:
        return []
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    return [f"Evaluated with {listed}.", ""]


def certificate_lines(results: Mapping[str, Any]) -> list[str]:
    """The certified router's promise, as scored here, or [] for results without one."""
    cert = results.get("certificate")
    if not isinstance(cert, Mapping):
        return []
    return [f"`proteus_certified` promises, for every τ it certifies: {cert['promise']} "
            f"(served artifacts: a window of {cert['served_window']} requests).", ""]


def floor_text(tolerance: float) -> str:
    """'τ' or 'τ − 0.02': the floor a promise with tolerance ε is about."""
    return f"τ − {tolerance:g}" if tolerance else "τ"


def redraw_markdown(block: Mapping[str, Any]) -> str:
    """The redraw check (`proteus.operating.redraw`): per router, how often a τ is certified
    and missed over re-cuts of the held-out rows, and what the certificate costs."""
    lines = [f"\n## Redraw check ({block['redraws']} re-cuts of the held-out rows, sizes "
             f"{dict(block['sizes'])})", "",
             f"A miss: τ served as feasible and test accuracy < {floor_text(block['tolerance'])}. "
             "Each τ "
             f"should miss in at most δ + 2 Monte Carlo standard errors = {block['limit']:.4f} of "
             "the draws; cost: the router's mean cost over the uncertified router's on the τ both "
             "serve, averaged over draws (10% / 50% / 90% quantiles).", ""]
    rows = []
    for name, r in block["routers"].items():
        q = r.get("cost_vs_uncertified_quantiles") or {}
        cost = "–" if r["cost_vs_uncertified"] is None or name == "proteus" else (
            f"{r['cost_vs_uncertified']:.2f}x" + (f" ({q['0.1']:.2f} / {q['0.5']:.2f} / "
                                                  f"{q['0.9']:.2f})" if q else ""))
        over = sum(v > block["limit"] for v in r["miss_share"])
        rows.append([f"`{name}`", f"{r['worst_miss_share']:.3f} (τ {r['worst_tau']:.4f})",
                     str(over), f"{r['any_miss_share']:.3f}", f"{r['mean_served']:.1f}", cost])
    lines += _table(["router", "worst τ: share missed", "τ over the limit", "draws with any miss",
                     "τ served per draw", "cost vs uncertified"], rows)
    return "\n".join(lines) + "\n"


# the automatic settings' record entries in the order `proteus.pipeline.auto` decides them
AUTO_ORDER = ("size", "encoder", "task_prior", "tau_range")


def auto_markdown(results: Mapping[str, Any]) -> str:
    """The automatic settings (`proteus.pipeline.auto`): per decision the settings, the choice
    and its rule; "" for results of a config without "auto" settings."""
    record = results.get("auto")
    if not isinstance(record, Mapping) or not record:
        return ""
    first = [name for name in AUTO_ORDER if name in record]
    rows = [[", ".join(f"`{s}`" for s in record[name]["settings"]), f"`{record[name]['choice']}`",
             record[name]["rule"]] for name in first + sorted(set(record) - set(first))]
    lines = ["", "## Automatic settings", "",
             "Decided before training from the query count or out-of-fold evidence on the "
             "training pool, never `val`, `calib` or `test` labels; the evidence numbers are in "
             "results.json's \"auto\" (docs/auto.md).", ""]
    return "\n".join(lines + _table(["settings", "choice", "rule"], rows)) + "\n"


def report_markdown(results: Mapping[str, Any]) -> str:
    """The whole report: header, summary, per-τ tables, predictor quality, paired AIQ
    differences and the cross-fitted AIQ (when the results hold them), appendix."""
    r = results
    idx = summary_taus(results)
    out = [
        f"# {r['dataset']}: test split, {r['n_queries']} queries",
        "",
        f"Encoder `{r['encoder']}`; {len(r['models'])} models; {len(r['taus'])} τ. Oracle accuracy "
        f"{r['oracle']['accuracy']:.3f} at {r['oracle']['cost'] * PER_1K:.3g} USD per 1,000 "
        f"queries; best fixed `{r['best_fixed']['model']}` {r['best_fixed']['accuracy']:.3f} at "
        f"{r['best_fixed']['cost'] * PER_1K:.3g}.",
        "",
        *versions_lines(results),
        *certificate_lines(results),
        NOTE,
        "",
        "## Summary",
        "",
        "compliance: share of τ met among those declared feasible; r: τ-response correlation; AIQ: "
        "area under the cost-accuracy hull of the points the router reaches as τ sweeps [0, 1] "
        "(its 'sweep' in results.json); top acc: highest test accuracy over τ; infeasible: τ "
        f"declared infeasible; cost at the {len(idx)} grid τ closest to the best fixed model's "
        "accuracy and 0.05 steps below; max savings vs best fixed over τ met.",
        "",
    ]
    out += summary_table(results)
    out += tau_tables(results)
    text = "\n".join(out) + "\n"
    if isinstance(r.get("predictor"), Mapping):
        text += quality_markdown(r["predictor"])
    if isinstance(r.get("paired_aiq"), Mapping):
        text += paired_markdown(r["paired_aiq"])
    if isinstance(r.get("aiq_crossfit"), Mapping):
        text += crossfit_markdown(r["aiq_crossfit"])
    if isinstance(r.get("redraw"), Mapping):
        text += redraw_markdown(r["redraw"])
    text += auto_markdown(results)
    return text + "\n".join(fixed_models_table(results) + [""])


def write_report(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `report_markdown(results)` to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(results))
    return path


OUTPUTS = ("report",) + plots.PLOT_NAMES


def write_all(results: Mapping[str, Any], out_dir: str | os.PathLike, prefix: str = "",
              only=OUTPUTS) -> list[Path]:
    """`<prefix>report.md` and `<prefix><plot>.png` under `out_dir`, for the names in `only`."""
    unknown = set(only) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; expected some of {OUTPUTS}")
    paths = []
    if "report" in only:
        paths.append(write_report(results, Path(out_dir) / f"{prefix}report.md"))
    return paths + plots.write_plots(results, out_dir, prefix,
                                     [n for n in plots.PLOT_NAMES if n in only])
