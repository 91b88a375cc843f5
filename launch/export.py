"""Export a finished training workdir as a self-contained router artifact.

    python -m launch.export --workdir=runs/quickstart --out=artifacts/quickstart
    python -m launch.route --artifact=artifacts/quickstart --tau=0.9 --features=...

Reads DIR/config.json, DIR/checkpoints/ and, when present, DIR/certification.json; writes the
artifact described in `proteus.export` (the serving side is `proteus.serving.Router.load`).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from absl import app, flags, logging

from experiments import pipeline
from proteus import export

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished training workdir.")
_OUT = flags.DEFINE_string("out", None, "The artifact directory to write.")
_RUN = flags.DEFINE_integer("run", 0, "Which of the workdir's vmapped runs to export.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing artifact.")
_PLATFORMS = flags.DEFINE_list("platforms", list(export.DEFAULT_PLATFORMS),
                               "Platforms the routing function is lowered for.")


def bundle_from_state(config, splits: dict, setup: pipeline.Setup, state, run: int = 0,
                      certification: dict | None = None, workdir: str = "") -> export.RouterBundle:
    """The `RouterBundle` of run `run` of a trained [S]-batched state.

    Args:
      config: the training config; splits: name -> RoutingDataset (with features);
      setup, state: from `pipeline.load_trained` or `pipeline.train_runs`;
      certification: `export.read_certification(...)` or None; workdir: recorded as provenance.
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
        encoder=encoder, prices=dict(pred.prices), certification=certification,
        training=training)


def export_workdir(workdir: str, out: str, run: int = 0, overwrite: bool = False,
                   platforms=export.DEFAULT_PLATFORMS) -> dict[str, Any]:
    """Export run `run` of a finished workdir to `out`; returns the manifest."""
    config, splits, setup, state = pipeline.load_trained(workdir)
    cert = export.read_certification(os.path.join(workdir, "certification.json"))
    bundle = bundle_from_state(config, splits, setup, state, run, cert, workdir)
    return export.write_artifact(bundle, out, overwrite=overwrite, platforms=platforms)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    manifest = export_workdir(_WORKDIR.value, _OUT.value, _RUN.value, _OVERWRITE.value,
                              tuple(_PLATFORMS.value))
    lo, hi = manifest["feasible_tau"]["min"], manifest["feasible_tau"]["max"]
    print(f"wrote {os.path.abspath(_OUT.value)}: {len(manifest['models'])} models, encoder "
          f"{manifest['encoder']['id']}, {manifest['certification']['status']}, feasible τ "
          f"[{lo:.4f}, {hi if hi is None else round(hi, 4)}]")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "out"])
    app.run(main)
