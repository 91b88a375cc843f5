"""`export(trained, evaluation, out)`: one trained run and its operating points as a router
artifact (`proteus.training.export`), from memory.

The operating table and its certification come from `evaluate` in the same session, or from a
workdir's `certification.json` (`proteus.training.export.read_operating`): either way they are
passed in, never looked up.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from proteus.pipeline.evaluation import Evaluation
from proteus.pipeline.fit import Trained
from proteus.training import export as export_lib


def router_bundle(trained: Trained, operating: Mapping[str, Any],
                  certification: Mapping[str, Any] | None, run: int = 0,
                  workdir: str = "") -> export_lib.RouterBundle:
    """The `RouterBundle` of run `run` of `trained`.

    Args:
      trained: `train`'s result (or a workdir's, `experiments.runs.load_trained`).
      operating: the operating table (`Evaluation.operating`).
      certification: its `CertificationTable` dict, or None (the uncertified rule).
      run: which of the S runs.
      workdir: recorded as provenance ("" for none).
    """
    from proteus.encoders import get_encoder  # noqa: PLC0415 (pulls in the data layer)

    config, splits, one = trained.config, trained.splits, trained.run(run)
    pred = splits["pred"]
    fingerprints = {name: ds.fingerprint() for name, ds in sorted(splits.items())}
    digest = hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:16]
    encoder = get_encoder(config.data.encoder).to_config()
    if encoder["kind"] == "precomputed":
        encoder = get_encoder(f"precomputed:dim={pred.features.shape[1]}").to_config()
    training: dict[str, Any] = {
        "workdir": os.path.abspath(workdir) if workdir else "", "run": run,
        "config_name": config.name, "data_source": config.data.source,
        "dataset": pred.name, "data_fingerprint": digest, "split_fingerprints": fingerprints,
        "split_sizes": {name: ds.n_queries for name, ds in sorted(splits.items())},
        "step": int(one.step), "config": json.loads(config.to_json_best_effort()),
    }
    return export_lib.RouterBundle(
        spec=trained.setup.static.spec, params=one.params, lane_taus=one.lane_taus,
        lane_lams=one.duals.lam_avg, lane_accuracy=one.duals.acc_avg, models=pred.models,
        encoder=encoder, operating=operating, prices=dict(pred.prices),
        certification=certification, training=training, tasks=trained.setup.task_names)


def export(trained: Trained, evaluation: Evaluation, out: str, *, run: int = 0,
           certified: bool = True, overwrite: bool = False,
           platforms: Sequence[str] = export_lib.DEFAULT_PLATFORMS,
           workdir: str = "") -> dict[str, Any]:
    """Write run `run` of `trained` with `evaluation`'s operating points to the artifact `out`,
    checked to load and route as the trained run does (`export.write_artifact`).

    certified=False exports without the certification (the uncertified operating rule).
    Returns the manifest; `proteus.serving.Router.load(out)` serves it.
    """
    bundle = router_bundle(trained, evaluation.operating,
                           evaluation.certification if certified else None, run, workdir)
    return export_lib.write_artifact(bundle, out, overwrite=overwrite, platforms=platforms)
