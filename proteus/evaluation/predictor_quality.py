"""How good the shared predictor is on a labelled split: per-model AUC and calibration error.

DESIGN.md section 6 asks for both on test; they are reported in results.json ("predictor") and
the report. Scores in [0, 1] are treated as correct when >= 0.5 for the AUC; the calibration error
compares mean predicted probability with mean (soft) score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ECE_BINS = 10


def auc(p_hat: np.ndarray, correct: np.ndarray) -> float:
    """ROC AUC of scores p_hat [N] for binary labels [N] (Mann-Whitney); NaN if one class."""
    correct = np.asarray(correct, bool)
    n_pos, n_neg = int(correct.sum()), int((~correct).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(p_hat, np.float64))
    return float((ranks[correct].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of values [N] in ascending order; tied values share their average rank.

    (scipy.stats.rankdata's default; importing scipy.stats cost each process 0.5 s and 60 MB.)
    """
    _, which, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last occurrence
    return (last - (counts - 1) / 2.0)[which]


def calibration_error(p_hat: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width bins of p_hat of (share of rows) x
    |mean p_hat − mean score|. p_hat, scores: [N]."""
    p_hat, scores = np.asarray(p_hat, np.float64), np.asarray(scores, np.float64)
    which = np.minimum((p_hat * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        rows = which == b
        total += rows.mean() * abs(p_hat[rows].mean() - scores[rows].mean())
    return float(total)


def predictor_quality(p_hat: np.ndarray, scores: np.ndarray,
                      models: Sequence[str]) -> dict[str, object]:
    """Per-model AUC and calibration error of p_hat [N, M] against scores [N, M], and means."""
    aucs = {m: auc(p_hat[:, j], scores[:, j] >= 0.5) for j, m in enumerate(models)}
    eces = {m: calibration_error(p_hat[:, j], scores[:, j]) for j, m in enumerate(models)}
    return {"auc": aucs, "ece": eces, "mean_auc": float(np.nanmean(list(aucs.values()))),
            "mean_ece": float(np.mean(list(eces.values())))}


def quality_markdown(quality: dict[str, object]) -> str:
    """A report section: per-model AUC and calibration error (`predictor_quality` output)."""
    lines = ["", "## Shared predictor on test", "",
             f"Mean per-model AUC {quality['mean_auc']:.3f}, mean calibration error "
             f"{quality['mean_ece']:.3f}.", "", "| model | AUC | calibration error |",
             "|---|---|---|"]
    if quality.get("task_prior"):  # the predictor read each query's task
        lines[3:3] = [f"Calibrated with a task prior over {len(quality['task_prior'])} tasks: each "
                      "query's task is an input.", ""]
    for name, value in quality["auc"].items():
        lines.append(f"| {name} | {value:.3f} | {quality['ece'][name]:.3f} |")
    return "\n".join(lines) + "\n"
