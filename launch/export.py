"""Export a finished training workdir as a self-contained router artifact.

    python -m launch.export --workdir=runs/quickstart --out=artifacts/quickstart
    python -m launch.route --artifact=artifacts/quickstart --tau=0.9 --features=...

Reads DIR/config.json, DIR/checkpoints/ and DIR/certification.json (the operating points that
`launch.train` / `launch.evaluate` measured); writes the artifact described in
`proteus.training.export` (the serving side is `proteus.serving.Router.load`). `--overwrite`
replaces an existing artifact only (a directory holding anything else, or the workdir itself, is
refused, untouched); an artifact that takes text must route ordinary questions to finite
decisions, or nothing is written. Flags and one call: `experiments.runs.export` (the library's
`proteus.pipeline.export` on a workdir).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import logs, runs
from proteus.training import export

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished training workdir.")
_OUT = flags.DEFINE_string("out", None, "The artifact directory to write.")
_RUN = flags.DEFINE_integer("run", 0, "Which of the workdir's vmapped runs to export.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing artifact.")
_CERTIFIED = flags.DEFINE_bool("certified", True, "Serve the certified operating rule (False: "
                                "the uncertified rule on held-out accuracy).")
_PLATFORMS = flags.DEFINE_list("platforms", list(export.DEFAULT_PLATFORMS),
                               "Platforms the routing function is lowered for.")
flags.register_validator("platforms", export.platforms_known,
                         f"--platforms: one or more of {list(export.PLATFORMS)}")


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise between the progress bars
    try:  # ArtifactError is a ValueError; each names the path and what is wrong
        manifest = runs.export(_WORKDIR.value, _OUT.value, _RUN.value, _OVERWRITE.value,
                               tuple(_PLATFORMS.value), _CERTIFIED.value)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        sys.exit(f"launch.export: {err}")
    lo, hi = manifest["feasible_tau"]["min"], manifest["feasible_tau"]["max"]
    print(f"wrote {os.path.abspath(_OUT.value)}: {len(manifest['models'])} models, encoder "
          f"{manifest['encoder']['id']}, {manifest['certification']['status']}, feasible τ "
          f"[{lo:.4f}, {hi if hi is None else round(hi, 4)}]")


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "out"])
    app.run(main)
