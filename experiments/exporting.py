"""Export a finished, evaluated training workdir as a router artifact
(`proteus.training.export`)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import ml_collections

from experiments import pipeline
from proteus.data.dataset import RoutingDataset
from proteus.training import export


def bundle_from_state(config: ml_collections.ConfigDict, splits: dict[str, RoutingDataset],
                      setup: pipeline.Setup, state, operating: dict[str, Any],
                      certification: dict[str, Any] | None, run: int = 0,
                      workdir: str = "") -> export.RouterBundle:
    """The `RouterBundle` of run `run` of a trained [S]-batched state.

    Args:
      config: the training config; splits: name -> RoutingDataset (with features);
      setup, state: from `pipeline.load_trained` or `pipeline.train_runs`;
      operating, certification: from `export.read_operating` (the evaluation's
      certification.json); workdir: recorded as provenance.
    """
    from proteus.encoders import get_encoder  # noqa: PLC0415 (pulls in the data layer)

    one = pipeline.run_slice(state, run)
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
    return export.RouterBundle(
        spec=setup.static.spec, params=one.params, lane_taus=one.lane_taus,
        lane_lams=one.duals.lam_avg, lane_accuracy=one.duals.acc_avg, models=pred.models,
        encoder=encoder, operating=operating, prices=dict(pred.prices),
        certification=certification, training=training, tasks=setup.task_names)


def export_workdir(workdir: str, out: str, run: int = 0, overwrite: bool = False,
                   platforms=export.DEFAULT_PLATFORMS, certified: bool = True) -> dict[str, Any]:
    """Export run `run` of a finished, evaluated workdir to `out`; returns the manifest.

    certified=False exports without the certification table (the uncertified operating rule).
    """
    config, splits, setup, state = pipeline.load_trained(workdir)
    operating, cert = export.read_operating(os.path.join(workdir, "certification.json"))
    bundle = bundle_from_state(config, splits, setup, state, operating,
                               cert if certified else None, run, workdir)
    return export.write_artifact(bundle, out, overwrite=overwrite, platforms=platforms)
