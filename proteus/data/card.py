"""A dataset card: the numbers a user checks before routing on a dataset (`launch/data_summary`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from proteus.data.dataset import RoutingDataset, oracle_choice
from proteus.data.routerbench import to_parquet as write_parquet
from proteus.data.sources import load_source, parse_spec


def card_stats(ds: RoutingDataset) -> dict[str, Any]:
    """The card's numbers as plain Python values.

    Returns:
      {"name", "source", "fingerprint", "n_queries", "n_models", "binary", "feature_dim" (or
      None), "has_texts", "models": [{"model", "mean_score", "mean_cost", "oracle_share"}],
      "oracle": {"accuracy", "cost"}, "best_fixed": {"model", "accuracy", "cost"},
      "tasks": {task: count} (largest first), "notes": [str]}. Costs are mean USD per query;
      oracle_share is the fraction of queries the oracle routes to the model.
    """
    choice = oracle_choice(ds.scores, ds.costs)
    share = np.bincount(choice, minlength=ds.n_models) / ds.n_queries
    scores, costs = ds.scores.mean(0), ds.costs.mean(0)
    oracle_acc, oracle_cost = ds.oracle()
    best, best_acc, best_cost = ds.best_fixed()
    tasks, counts = np.unique(ds.tasks.astype(str), return_counts=True)
    order = np.lexsort((tasks, -counts))
    return {
        "name": ds.name,
        "source": ds.source,
        "fingerprint": ds.fingerprint(),
        "n_queries": ds.n_queries,
        "n_models": ds.n_models,
        "binary": ds.is_binary,
        "feature_dim": None if ds.features is None else int(ds.features.shape[1]),
        "has_texts": ds.texts is not None,
        "models": [
            {"model": m, "mean_score": float(scores[j]), "mean_cost": float(costs[j]),
             "oracle_share": float(share[j])}
            for j, m in enumerate(ds.models)
        ],
        "oracle": {"accuracy": oracle_acc, "cost": oracle_cost},
        "best_fixed": {"model": best, "accuracy": best_acc, "cost": best_cost},
        "tasks": {str(tasks[i]): int(counts[i]) for i in order},
        "notes": list(ds.notes),
    }


def dataset_card(ds: RoutingDataset) -> str:
    """A plain-text card of `ds`: size, per-model mean score and cost, oracle, best fixed model,
    task mix and loader notes. Accuracies print with 4 decimals, costs in USD per query."""
    s = card_stats(ds)
    width = max(len(m) for m in ds.models)
    kinds = "binary" if s["binary"] else "graded [0, 1]"
    feats = "none" if s["feature_dim"] is None else f"[N, {s['feature_dim']}]"
    lines = [
        f"dataset      {s['name']}",
        f"source       {s['source']}",
        f"size         N={s['n_queries']} queries x M={s['n_models']} models "
        f"({kinds} scores; texts: {'yes' if s['has_texts'] else 'no'}; features: {feats})",
        f"fingerprint  {s['fingerprint']}",
        "",
        f"  {'model':<{width}}  mean score  mean cost USD  oracle share",
    ]
    for row in s["models"]:
        lines.append(
            f"  {row['model']:<{width}}  {row['mean_score']:10.4f}  {row['mean_cost']:13.3e}  "
            f"{row['oracle_share']:12.1%}"
        )
    o, b = s["oracle"], s["best_fixed"]
    lines += [
        "",
        f"oracle       accuracy {o['accuracy']:.4f}  cost {o['cost']:.3e} USD/query",
        f"best fixed   {b['model']}  accuracy {b['accuracy']:.4f}  cost {b['cost']:.3e} USD/query",
        "task mix     " + ", ".join(
            f"{t or '(none)'} {c} ({c / s['n_queries']:.1%})" for t, c in s["tasks"].items()
        ),
        "notes        " + ("; ".join(s["notes"]) if s["notes"] else "(none)"),
    ]
    return "\n".join(lines)


def source_card(spec: str, cache_dir: str | None = None, allow_pickle: bool = False,
                to_parquet: str | None = None) -> str:
    """The card of the data source `spec` (see `proteus.data.sources`); what
    `launch/data_summary` prints.

    `to_parquet` (routerbench sources): also write the routing columns to this parquet file,
    loadable as routerbench:<file> without any opt-in; the card then ends with where it went.

    Raises:
      DataValidationError, ValueError, FileNotFoundError: a bad spec, file or conversion.
    """
    ds = load_source(spec, cache_dir=cache_dir, allow_pickle=allow_pickle)
    text = dataset_card(ds)
    if to_parquet:
        kind, target, _ = parse_spec(spec)
        if kind != "routerbench":
            raise ValueError(f"--to_parquet converts routerbench: sources, not {kind}:")
        # load_source has enforced the opt-in; the conversion re-reads the same file.
        path = write_parquet(target, to_parquet, allow_pickle=True)
        text += f"\nwrote {path}; load it as routerbench:{path}"
    return text
