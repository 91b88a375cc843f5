"""The candidate operating points and their table (DESIGN.md sections 3-4).

An operating point is one way to route every query: the PROTEUS policy called at a target τ'
(`model` −1), or always one fixed model (`model` m). The candidates are fixed before any
held-out label is read: P policy targets spread over the lanes' range (`operating_taus`), and
every model (`candidates`). Each has an accuracy and a mean cost measured on held-out labels that
neither the predictor nor the policy trained on (`val`); the policy candidates' accuracies are
made non-decreasing in τ' (isotonic regression), which removes most of the noise that picking
among many candidates would otherwise turn into a bias.

Any advantage a candidate shows over the best single model is then discounted by z paired
standard errors, and only a clear one (more than `credit_z` of them) ranks it above that model
(`credited_accuracy`), so that the quality end is the best fixed model unless the held-out rows
show a real improvement on it. `build_table` does all of it and returns the points in testing
order, the table that `proteus.operating.certificate` certifies and `OperatingPolicy` serves.

A table may also hold policy points that route around some models (`masked_candidates`: an
onboarded router measures its policy points with and without the model it added;
`proteus.operating.exclusion`). Each such family is made isotonic on its own, and the table
records what each point routes around in its "excluded" field (absent when none does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def operating_taus(lane_taus: Sequence[float], n_points: int) -> np.ndarray:
    """[P] policy targets τ', uniform in log(1 − τ') over the lanes' range (like the lanes)."""
    lo, hi = float(lane_taus[0]), float(lane_taus[-1])
    return -np.expm1(np.linspace(np.log1p(-hi), np.log1p(-lo), n_points))


def candidates(policy_taus: Sequence[float], n_models: int,
               fixed_models: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The candidate points before ordering: (tau [P + M] with NaN for fixed, model [P + M])."""
    taus = np.asarray(policy_taus, np.float64)
    models = np.arange(n_models) if fixed_models else np.zeros(0, np.int64)
    return (np.concatenate([taus, np.full(models.shape, np.nan)]),
            np.concatenate([np.full(taus.shape, -1), models]).astype(np.int64))


def masked_candidates(cand_tau: np.ndarray, cand_model: np.ndarray, masked: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """The candidates and, when `masked` names models, every policy candidate again routing
    around them: (tau [C'], model [C'], excluded: [C'] tuples of model indices).

    The copies follow the policy candidates, before the fixed models: tau, model [C] from
    `candidates` -> C' = C + P (P policy candidates), or C' = C when `masked` is empty.
    """
    cand_tau, cand_model = np.asarray(cand_tau, np.float64), np.asarray(cand_model, np.int64)
    masked = tuple(sorted({int(m) for m in masked}))
    if not masked:
        return cand_tau, cand_model, [()] * len(cand_tau)
    policy = np.flatnonzero(cand_model < 0)
    fixed = np.flatnonzero(cand_model >= 0)
    order = np.concatenate([policy, policy, fixed])
    excluded = [()] * policy.size + [masked] * policy.size + [()] * fixed.size
    return cand_tau[order], cand_model[order], excluded


def smoothed_accuracy(tau: np.ndarray, model: np.ndarray, accuracy: np.ndarray,
                      excluded: Sequence[tuple[int, ...]] | None = None) -> np.ndarray:
    """Held-out accuracy with the policy candidates made non-decreasing in τ' (isotonic), each
    family of policy candidates that route around the same models (`excluded`, [C] tuples;
    None: all route around none) on its own.

    tau, model, accuracy: [C] -> [C]; fixed-model entries are returned unchanged.
    """
    from scipy.optimize import isotonic_regression  # noqa: PLC0415 (evaluation/export only)

    out = np.asarray(accuracy, np.float64).copy()
    excluded = [()] * len(out) if excluded is None else [tuple(e) for e in excluded]
    policy = np.flatnonzero(np.asarray(model) < 0)
    for family in dict.fromkeys(excluded[j] for j in policy):
        members = np.asarray([j for j in policy if excluded[j] == family], np.int64)
        if members.size > 1:
            order = members[np.argsort(tau[members], kind="stable")]
            out[order] = isotonic_regression(out[order]).x
    return out


def credited_accuracy(scores: np.ndarray, accuracy: np.ndarray, model: np.ndarray,
                      z: float, credit_z: float | None = None) -> np.ndarray:
    """Held-out accuracy with any advantage over the best fixed model discounted by its noise.

    The best single model on held-out rows is the incumbent. A candidate that matches or beats
    it is credited with its accuracy minus z paired standard errors of the advantage (the per-query
    differences of the two on the same rows): among dozens of candidates measured on a few
    hundred queries the apparent winner is often lucky (the winner's curse), and a router whose
    top is below always calling the best model has lost its quality end. A challenger may rank
    above the incumbent only if its advantage is clear, more than `credit_z` standard errors;
    one that is not clear is capped at the incumbent's accuracy (a tie, which the testing order
    gives to the fixed model). Candidates below the incumbent are unchanged.

    Args:
      scores: [C, N] per-query held-out scores of each candidate.
      accuracy: [C] their (smoothed) held-out accuracy.
      model: [C] fixed model index or −1 (policy).
      z: standard errors to discount.
      credit_z: standard errors a challenger must clear to rank above the incumbent (None: z;
        then every challenger is simply discounted by z).

    Returns:
      [C] credited accuracy.
    """
    accuracy = np.asarray(accuracy, np.float64)
    fixed = np.flatnonzero(np.asarray(model) >= 0)
    if fixed.size == 0 or scores.shape[1] < 2:
        return accuracy
    ref = fixed[np.argmax(accuracy[fixed])]
    diff = np.asarray(scores, np.float64) - np.asarray(scores, np.float64)[ref]
    se = diff.std(axis=1, ddof=1) / math.sqrt(scores.shape[1])
    challenger = (accuracy >= accuracy[ref]) & (np.arange(accuracy.size) != ref)
    clear = accuracy - (z if credit_z is None else credit_z) * se > accuracy[ref]
    discounted = accuracy - z * se
    credited = np.where(clear, discounted, np.minimum(discounted, accuracy[ref]))
    return np.where(challenger, credited, accuracy)


def testing_order(accuracy: np.ndarray, cost: np.ndarray, model: np.ndarray) -> np.ndarray:
    """[C] candidate indices, most accurate first; the certification's fixed sequence and the
    best-effort point (the first) both come from it.

    Ties go to fixed models first (a tie is no evidence for the learned route; in particular a
    challenger credited exactly at the incumbent's accuracy has shown no real improvement), then
    to the cheaper point.
    """
    return np.lexsort((np.asarray(cost), np.asarray(model) < 0, -np.asarray(accuracy)))


def point_outcomes(scores: np.ndarray, costs: np.ndarray,
                   choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-point, per-query realised outcomes: scores, costs [N, M] and each point's model per
    query, choices [C, N] int -> (scores [C, N], costs [C, N]) float64."""
    rows = np.arange(np.shape(scores)[0])[None, :]
    choices = np.asarray(choices, np.int64)
    return (np.asarray(scores, np.float64)[rows, choices],
            np.asarray(costs, np.float64)[rows, choices])


def build_table(cand_tau: np.ndarray, cand_model: np.ndarray, scores: np.ndarray,
                costs: np.ndarray, margin_z: float, credit_z: float,
                excluded: Sequence[tuple[int, ...]] | None = None) -> dict[str, Any]:
    """The candidate operating points in testing order, measured on held-out rows.

    Args:
      cand_tau: [C] each candidate's policy target τ' (NaN for a fixed model), from `candidates`.
      cand_model: [C] fixed model index, or −1 for the policy.
      scores, costs: [C, N] each candidate's realised score and cost on the N held-out queries.
      margin_z: the uncertified rule's allowance (standard errors) and the credit discount.
      credit_z: the standard errors a challenger must clear to rank above the best single model.
      excluded: [C] the models each candidate routes around (`masked_candidates`; None: none).

    Returns:
      The points in testing order, what `OperatingPolicy` and an exported artifact read:
      {"tau": [C] (None for fixed), "model": [C], "accuracy": [C] credited, "raw_accuracy": [C],
      "cost": [C], "n_heldout": N, "margin_z": z}, and "excluded": [C] lists of model indices
      when any candidate routes around a model.
    """
    cand_tau, cand_model = np.asarray(cand_tau, np.float64), np.asarray(cand_model, np.int64)
    ranking = rank_candidates(cand_tau, cand_model, scores, costs, margin_z, credit_z, excluded)
    return ranked_table(cand_tau, cand_model, *ranking, np.shape(scores)[1], margin_z, excluded)


def ranked_table(cand_tau: np.ndarray, cand_model: np.ndarray, order: np.ndarray,
                 credit: np.ndarray, accuracy: np.ndarray, cost: np.ndarray, n_heldout: int,
                 margin_z: float, excluded: Sequence[tuple[int, ...]] | None = None
                 ) -> dict[str, Any]:
    """The table dict of `build_table` from a `rank_candidates` result ([C] each)."""
    out = {"tau": [None if np.isnan(cand_tau[j]) else float(cand_tau[j]) for j in order],
           "model": np.asarray(cand_model)[order].tolist(), "accuracy": credit[order].tolist(),
           "raw_accuracy": accuracy[order].tolist(), "cost": cost[order].tolist(),
           "n_heldout": int(n_heldout), "margin_z": float(margin_z)}
    if excluded is not None and any(excluded):  # an old table's shape when no point has any
        out["excluded"] = [sorted(int(m) for m in excluded[j]) for j in order]
    return out


def rank_candidates(cand_tau: np.ndarray, cand_model: np.ndarray, scores: np.ndarray,
                    costs: np.ndarray, margin_z: float, credit_z: float,
                    excluded: Sequence[tuple[int, ...]] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order [C] candidate indices in testing order, credited accuracy [C], raw accuracy [C],
    mean cost [C]) of candidates measured on held-out rows (arguments as `build_table`)."""
    scores, costs = np.asarray(scores, np.float64), np.asarray(costs, np.float64)
    acc, cost = scores.mean(axis=1), costs.mean(axis=1)
    smooth = smoothed_accuracy(cand_tau, cand_model, acc, excluded)
    credit = credited_accuracy(scores, smooth, cand_model, margin_z, credit_z)
    return testing_order(credit, cost, cand_model), credit, acc, cost


def table_taus(table: dict[str, Any]) -> np.ndarray:
    """[C] the table's policy targets τ' with NaN for fixed-model points."""
    return np.asarray([np.nan if t is None else t for t in table["tau"]], np.float64)
