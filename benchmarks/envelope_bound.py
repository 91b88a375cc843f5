"""What routing around a model can cost at best: the envelope of a static point on a split.

    python benchmarks/envelope_bound.py --artifact=artifacts/rb --tau=0.75 --split=test

For τ's static point with the replay's regressed model routed around (the model the static
certified router gets most correct answers from on the split, as `launch.replay` picks it; or
`--exclude=NAME`), routes the split's rows at the point and at every lane above it, keeps the
upper envelope of (cost, accuracy) (`proteus.online.heldout`, the same code the online router
serves streams on, here on the split's own labels) and prints, for accuracies from τ − 0.02 to
τ + margin, the cheapest request-level mix of those points against the static certified
router's cost on the same rows with nothing excluded. On the test split this is a bound for the
online section (docs/online.md), not something to choose settings by.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from experiments import logs
from experiments import replay as rp
from proteus.data import RoutingDataset
from proteus.online import adapter, heldout
from proteus.online import controller as ctl
from proteus.serving import Router

_ARTIFACT = flags.DEFINE_string("artifact", None, "An exported router artifact.", required=True)
_TAU = flags.DEFINE_float("tau", None, "Accuracy target τ.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "val"], "The artifact's split.")
_EXCLUDE = flags.DEFINE_string("exclude", None, "The model routed around (default: the "
                               "replay's regressed model).")


def envelope(router: Router, split: RoutingDataset, tau: float, model: int | None = None
             ) -> tuple[int, heldout.Hull, float]:
    """(the model routed around: `model`, or the replay's regressed one; the envelope of τ's
    static point without it on the split's rows; the static certified router's mean cost per
    request on those rows with nothing excluded)."""
    n = split.n_queries
    model = rp.key_model(router, split, tau) if model is None else model
    rows = heldout.HeldoutRows(np.asarray(split.features, np.float32), split.scores,
                               np.asarray(split.costs, np.float64),
                               np.asarray(router.task_ids(rp.task_names(router, split.tasks), n),
                                          np.int32))
    knob = adapter.knob(router)
    static = adapter.static_point(router, knob, tau)
    measure = heldout.HeldoutAccuracy(router, knob, rows)
    return model, measure.hull(static, (model,)), float(measure.hull(static, ()).cost[0])


def main(argv):
    del argv
    logs.job_logging()
    router = Router.load(_ARTIFACT.value)
    split = rp.load_split(router.manifest, None, _SPLIT.value, _ARTIFACT.value)
    tau = _TAU.value
    model, hull, at_rest = envelope(router, split, tau, router.models.index(_EXCLUDE.value)
                                    if _EXCLUDE.value else None)
    print(f"{_SPLIT.value} split, {split.n_queries} rows, τ = {tau:g}: "
          f"{router.models[model]} routed around")
    print("| knob position served | accuracy | cost vs certified |\n|---|---|---|")
    for p, a, c in zip(hull.served, hull.accuracy, hull.cost, strict=True):
        print(f"| {p:.4f} | {a:.4f} | {c / at_rest:.2f}x |")
    for target in (tau - 0.02, tau, tau + 0.01, tau + ctl.ControllerConfig.margin):
        cost = np.interp(target, hull.accuracy, hull.cost) / at_rest
        reach = "out of reach" if target > hull.accuracy[-1] else f"{cost:.2f}x"
        print(f"accuracy {target:.3f}: cheapest mix {reach}")


if __name__ == "__main__":
    app.run(main)
