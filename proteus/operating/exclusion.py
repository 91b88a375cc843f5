"""Routing around models: the routing rule re-applied with some models left out.

An operating point may route around some models (the table's "excluded" field): an onboarded
router also measures its policy points without the model it added (`proteus.pipeline.onboarding`),
so that where the new model's column is not yet good enough the held-out rows can keep the
routing without it. The online service routes around a model the drift test excluded
(`proteus.online.adapter`). Both re-apply the routing rule

    m* = argmax_m μ p̂_m − (1 − μ) ĉ_m / c_ref

to the routing function's own μ, p̂ and ĉ with the excluded models left out, here and only here.
The rule's JAX home is `proteus.training.networks.routing_rule`, which serving may not import;
this numpy form is checked against the exported function's choices (tests/test_online_drift.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def choose(mu: np.ndarray, p_hat: np.ndarray, c_hat: np.ndarray, c_ref: float,
           excluded: np.ndarray) -> np.ndarray:
    """The routing rule without excluded models: mu [B], p_hat, c_hat [B, M] float32, excluded
    [B, M] bool (a row with every model excluded keeps them all) -> [B] int32 model index."""
    utility = (mu[:, None] * p_hat - (1.0 - mu[:, None]) * (c_hat / np.float32(c_ref))
               ).astype(np.float32)
    excluded = excluded & ~excluded.all(axis=1, keepdims=True)
    return np.argmax(np.where(excluded, -np.inf, utility), axis=1).astype(np.int32)


def route_around(model: np.ndarray, mu: np.ndarray, p_hat: np.ndarray, c_hat: np.ndarray,
                 c_ref: float, excluded: np.ndarray) -> np.ndarray:
    """[B] int32 choices `model` with only the rows whose choice is excluded chosen again
    (`choose`): the other rows keep the routing function's own choice exactly, and so does a row
    whose choice is not a model index (a broken artifact's, which serving then refuses).

    model, mu: [B]; p_hat, c_hat: [B, M]; excluded: [B, M] bool.
    """
    model, excluded = np.asarray(model, np.int32), np.asarray(excluded, bool)
    valid = (model >= 0) & (model < excluded.shape[1])
    hit = valid & excluded[np.arange(len(model)), np.where(valid, model, 0)]
    if not hit.any():
        return model
    out = model.copy()
    out[hit] = choose(np.asarray(mu)[hit], np.asarray(p_hat)[hit], np.asarray(c_hat)[hit],
                      c_ref, excluded[hit])
    return out


def rows_mask(excluded: Sequence[Sequence[int]], n_models: int) -> np.ndarray:
    """[B, M] bool from each row's excluded model indices ([B] sequences)."""
    mask = np.zeros((len(excluded), n_models), bool)
    rows = [i for i, models in enumerate(excluded) for _ in models]  # one numpy write, not B
    mask[rows, [m for models in excluded for m in models]] = True
    return mask


def table_excluded(table: dict[str, Any]) -> list[tuple[int, ...]]:
    """[C] the models each point of an operating table routes around (() for none; a table
    without the field routes around none)."""
    given = table.get("excluded")
    if given is None:
        return [()] * len(table["model"])
    return [tuple(int(m) for m in models) for models in given]
