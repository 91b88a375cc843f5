"""The redraw evaluation of a trained run: does the certificate hold over many held-out draws?

The trained router and its candidate operating points stay fixed; `proteus.operating.redraw`
re-cuts the held-out rows (val ∪ calib ∪ test) at random into splits of the same sizes and runs
the table, certification and τ → point rule on each draw. Here the run's candidates are routed
once on all held-out rows, and the routers compared are the configured window certificate
(`proteus_certified`, window = the test split's size, as the evaluation scores it) and the older
population certificate (`population_certified`), against the uncertified rule (`proteus`).

    python -m launch.evaluate --config=experiments/configs/routerbench.py --workdir=runs/rb \
        --redraws=200
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from proteus import operating, pipeline
from proteus.data.dataset import concatenate
from proteus.evaluation import report
from proteus.operating import redraw
from proteus.pipeline import routing
from proteus.pipeline.fit import run_slice
from proteus.pipeline.setup import Setup, Splits
from proteus.training import train

HELDOUT = ("val", "calib", "test")


def heldout_outcomes(config: ml_collections.ConfigDict, setup: Setup, state: train.TrainState,
                     run: int, splits: Splits
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate's realised outcome on every held-out row: (scores [C, H], costs [C, H],
    cand_tau [C] (NaN for fixed models), cand_model [C]), H = val + calib + test."""
    pool = concatenate([splits[name] for name in HELDOUT])
    lanes = np.asarray(run_slice(state.lane_taus, run))  # the lanes run `run` trained with
    points = operating.operating_taus(lanes, config.certify.n_points)
    cand_tau, cand_model = operating.candidates(points, pool.n_models,
                                                config.operating.fixed_models)
    raw = {"tau": [None if np.isnan(t) else float(t) for t in cand_tau],
           "model": cand_model.tolist()}
    choices = routing.candidate_routes(setup, state, run, pool, raw)[0]
    scores, costs = operating.point_outcomes(pool.scores, pool.costs, choices)
    return scores, costs, cand_tau, cand_model


def redraw_block(trained: pipeline.Trained, redraws: int, run: int = 0) -> dict[str, Any]:
    """results.json's "redraw" block: `redraws` re-cuts of the held-out rows, checked at the
    report grid's τ against the evaluation's promise (`proteus.operating.redraw.redraw`)."""
    config, splits = trained.config, trained.splits
    scores, costs, cand_tau, cand_model = heldout_outcomes(config, trained.setup, trained.state,
                                                           run, splits)
    sizes = {name: splits[name].n_queries for name in HELDOUT}
    checked, _ = routing.certification_windows(config, sizes["test"])
    tolerance = float(config.certify.tolerance) if checked else 0.0
    rules = {"proteus_certified": {"window": checked, "tolerance": tolerance}}
    if checked:
        rules["population_certified"] = {"window": 0, "tolerance": 0.0}
    c = config.certify
    settings = {"margin_z": config.operating.margin_z, "credit_z": config.operating.credit_z,
                "delta": c.delta, "method": c.method, "fallback": c.fallback}
    grid = routing.eval_taus(config, trained.run(run).lane_taus)
    return redraw.redraw(scores, costs, cand_tau, cand_model, sizes, grid, rules, settings,
                         tolerance, redraws=redraws, seed=config.seed)


def format_block(block: dict[str, Any]) -> str:
    """A plain-text summary of a "redraw" block: one line per router."""
    floor = report.floor_text(block["tolerance"])
    lines = [f"redraws: {block['redraws']} re-cuts of the held-out rows (sizes "
             f"{block['sizes']}); a miss is test accuracy < {floor}; "
             f"limit per τ δ + 2 MC s.e. = {block['limit']:.4f}"]
    for name, r in block["routers"].items():
        ratio = r["cost_vs_uncertified"]
        cost = "" if name == "proteus" or ratio is None else f", cost {ratio:.3f}x uncertified"
        lines.append(
            f"{name:>21}: worst τ {r['worst_tau']:.4f} missed in {r['worst_miss_share']:.3f} "
            f"of draws; any miss in {r['any_miss_share']:.3f} of draws; "
            f"{r['mean_served']:.1f} τ served per draw{cost}"
            + ("" if name == "proteus" else f"; holds: {'yes' if r['holds'] else 'NO'}"))
    return "\n".join(lines)
