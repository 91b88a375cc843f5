"""The evaluation as a launcher prints it: one plain-text table of both PROTEUS routers per τ, with
units, a legend and what each router promises (`compliance_table`).

`report.md` (`proteus.evaluation.report`) is the full account; this is what a person reads in a
terminal at the end of `launch.train` and `launch.evaluate`: the uncertified router (`proteus`)
beside the certified one (`proteus_certified`, the rule an export serves by default), whose
misses are not each other's.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from proteus.evaluation import metrics

ROUTERS = ("proteus", "proteus_certified")
PER = 1000  # costs are printed per this many queries
WIDTH = 100  # the legend and the promises are wrapped to this many characters
ROLES = {"proteus": "uncertified", "proteus_certified": "served by export"}
# What each router promises. The certified router's words come from results.json (its
# "certificate"), since they depend on δ and the window it was scored with.
UNCERTIFIED_PROMISE = ("no guarantee: it routes τ to the cheapest operating point whose "
                       "validation accuracy clears τ by a margin (operating.margin_z standard "
                       "errors), so it usually meets τ, with no stated probability of a miss")
LEGEND = (
    ("tau", "the accuracy target τ asked of the router"),
    ("accuracy", "mean score on the test split of the queries routed at τ"),
    ("cost/1k", f"their mean cost, USD per {PER:,} queries"),
    ("met", "accuracy >= τ: yes; NO: missed a τ the router declared feasible; no: missed a τ "
            "it declared infeasible (served best effort: the most accurate point, flagged)"),
    ("feasible", "whether the router declared τ feasible"),
    ("frontier", f"cost of perfect knowledge (the cheapest correct model per query) at τ, "
                 f"USD per {PER:,} queries: a lower bound"),
    ("compliance", "share of the τ declared feasible that were met"),
    ("r", "correlation of accuracy with τ over the grid (1: accuracy follows the target)"),
    ("AIQ", "area under the router's cost-accuracy curve as τ sweeps [0, 1] (RouterBench)"),
    ("infeasible", "how many τ of the grid the router declared infeasible"),
    ("savings", "the largest cost saving against the best fixed model over the τ met"),
)
_NAN = float("nan")


def _cell(block: Mapping[str, Any], i: int, tau: float) -> str:
    """One router's columns at row i: accuracy, cost/1k, met, feasible."""
    acc, cost, feasible = block["accuracy"][i], block["cost"][i], block["feasible"][i]
    met = "yes" if acc >= tau - metrics.FLOOR_EPS else ("NO" if feasible else "no")
    return f"{acc:9.4f} {cost * PER:8.4f} {met:>4} {'yes' if feasible else 'no':>8}"


def _table_rows(res: Mapping[str, Any], routers: Sequence[str]) -> list[str]:
    """The header lines and one row per τ."""
    frontier = [_NAN if c is None else c * PER for c in res.get("perfect_frontier_cost", [])]
    frontier = frontier or [_NAN] * len(res["taus"])
    group = f"{'accuracy':>9} {'cost/1k':>8} {'met':>4} {'feasible':>8}"
    titles = "".join(f"  {name + ' (' + ROLES.get(name, '') + ')':<{len(group)}}"
                     for name in routers)
    lines = [f"{'':6}{titles}", f"{'tau':>6}" + "".join(f"  {group}" for _ in routers)
             + f"  {'frontier':>8}"]
    for i, tau in enumerate(res["taus"]):
        cells = "".join(f"  {_cell(res['routers'][name], i, tau)}" for name in routers)
        lines.append(f"{tau:6.3f}{cells}  {frontier[i]:8.4f}")
    return lines


def _summary_rows(res: Mapping[str, Any], routers: Sequence[str]) -> list[str]:
    """compliance, r, AIQ, infeasible τ and savings per router, then the two references."""
    width = max(len(name) for name in routers)
    lines = [f"{'':{width}}  {'compliance':>10} {'r':>6} {'AIQ':>6} {'infeasible':>10} "
             f"{'savings':>8}"]
    for name in routers:
        s = {k: (_NAN if v is None else v) for k, v in res["summary"][name].items()}
        lines.append(f"{name:<{width}}  {s['floor_compliance']:10.3f} "
                     f"{s['target_response_corr']:6.3f} {s['aiq']:6.3f} "
                     f"{s['n_infeasible']:10d} {s['max_savings_vs_best_fixed']:8.1%}")
    best, oracle = res["best_fixed"], res["oracle"]
    lines.append(f"best fixed model ({best['model']}): accuracy {best['accuracy']:.4f}, "
                 f"cost/1k {best['cost'] * PER:.4f}")
    lines.append(f"oracle (perfect knowledge): accuracy {oracle['accuracy']:.4f}, "
                 f"cost/1k {oracle['cost'] * PER:.4f}")
    return lines


def promise_lines(res: Mapping[str, Any], routers: Sequence[str] = ROUTERS) -> list[str]:
    """What each router promises, in words (the certified one's from res["certificate"])."""
    cert = res.get("certificate") or {}
    words = {"proteus": UNCERTIFIED_PROMISE}
    if cert:
        words["proteus_certified"] = (
            f"for every τ it declares feasible, {cert['promise']} on this test split; an "
            f"exported artifact promises it for windows of {cert['served_window']:,} requests")
    return [line for name in routers if name in words
            for line in _wrapped(f"{name}: ", words[name])]


def _wrapped(head: str, text: str) -> list[str]:
    """`head` + `text` wrapped to WIDTH, indented two spaces, continuations under the text."""
    return textwrap.wrap(text, WIDTH, initial_indent="  " + head,
                         subsequent_indent=" " * (2 + len(head)))


def compliance_table(res: Mapping[str, Any], routers: str | Sequence[str] = ROUTERS,
                     legend: bool = True) -> str:
    """A plain-text table of `routers` (one name or several) per τ of `res` (a results.json
    dict): accuracy, cost per 1,000 queries, met, declared feasible, and the perfect-knowledge
    frontier; then a summary per router and, with `legend`, the legend and the promises."""
    routers = (routers,) if isinstance(routers, str) else tuple(routers)
    head = (f"{res['dataset']}, {res.get('split', 'test')} split: {res['n_queries']:,} queries, "
            f"{len(res['models'])} models; costs in USD per {PER:,} queries")
    lines = [head, "", *_table_rows(res, routers), "", *_summary_rows(res, routers)]
    if legend:
        width = max(len(name) for name, _ in LEGEND)
        lines += ["", "legend:"]
        lines += [line for name, text in LEGEND for line in _wrapped(f"{name:<{width}}  ", text)]
        lines += ["", "promises:", *promise_lines(res, routers)]
    return "\n".join(lines)
