"""Add a model to an exported router, or remove one, without retraining it (docs/onboard.md).

    python -m launch.onboard --artifact=artifacts/rb --list_heldout=heldout.jsonl
    python -m launch.onboard --artifact=artifacts/rb --add=new-model --labels=labels.jsonl \
        --price_in=1e-6 --price_out=3e-6 --out=artifacts/rb+new
    python -m launch.onboard --artifact=artifacts/rb --remove=claude-v2 --out=artifacts/rb-v2

`--list_heldout` writes the artifact's held-out queries (id, split, task, query): run the new
model on each and put its score (and cost) in the labels file, with a few hundred training
queries of your own (format: `proteus.data.labels`). `--add` fits the model's column out of fold
on the router's frozen trunks (from the training queries and the `val` rows), re-measures the
operating points on `val` (each row routed by a column fitted without it) and re-certifies them
on `calib`; `--remove` drops a model's column and does the same. `--add --transfer` also fits
on the router's training pool, whose queries get soft labels from the old models' labels.
Either writes a new artifact whose manifest records its lineage; serve it, or reload a running
server onto it (`kill -HUP <pid of launch.serve>` after pointing it at the new directory, see
docs/onboard.md).
Flags and one call: `proteus.pipeline.onboard` / `remove_model` / `heldout_queries`.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

from experiments import logs, outputs
from proteus import pipeline
from proteus.data.labels import read_labels, write_jsonl
from proteus.pipeline.onboarding import certified_around
from proteus.training import export

_ARTIFACT = flags.DEFINE_string("artifact", None, "The exported router to change.")
_LIST = flags.DEFINE_string("list_heldout", None, "Write the held-out queries (JSON Lines) the "
                            "new model must be run on, and stop.")
_ADD = flags.DEFINE_string("add", None, "Name of the model to add.")
_REMOVE = flags.DEFINE_string("remove", None, "Name of the model to remove.")
_LABELS = flags.DEFINE_string("labels", None, "The new model's labelled queries (JSON Lines).")
_PRICE_IN = flags.DEFINE_float("price_in", None, "USD per input token of the new model.")
_PRICE_OUT = flags.DEFINE_float("price_out", None, "USD per output token of the new model.")
_TRANSFER = flags.DEFINE_bool("transfer", False, "With --add: fit on the router's training pool "
                              "too, its queries labelled with soft labels transferred from the "
                              "old models' labels (reads the training data from the config the "
                              "artifact records; docs/onboard.md).")
_OUT = flags.DEFINE_string("out", None, "The new artifact's directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing artifact at --out "
                                "(or file at --list_heldout).")
_PLATFORMS = flags.DEFINE_list("platforms", list(export.DEFAULT_PLATFORMS),
                               "Platforms the routing function is lowered for.")
flags.register_validator("platforms", export.platforms_known,
                         f"--platforms: one or more of {list(export.PLATFORMS)}")


def main(argv):
    del argv
    logs.job_logging()
    start = time.perf_counter()
    try:  # OnboardError, ArtifactError and DataValidationError are ValueErrors naming the cause
        if _LIST.value:
            outputs.check_new_file(_LIST.value, "list_heldout", _OVERWRITE.value)
            n = write_jsonl(pipeline.heldout_queries(_ARTIFACT.value), _LIST.value)
            print(f"wrote {n} held-out queries to {_LIST.value}")
            return
        if bool(_ADD.value) == bool(_REMOVE.value) or not _OUT.value:
            sys.exit("launch.onboard: give --out and one of --add (with --labels) or --remove "
                     "(or --list_heldout)")
        if _ADD.value:
            if not _LABELS.value:
                sys.exit("launch.onboard: --add needs --labels")
            if (_PRICE_IN.value is None) != (_PRICE_OUT.value is None):
                sys.exit("launch.onboard: give both --price_in and --price_out (USD per token), "
                         "or neither")
            price = None if _PRICE_IN.value is None else (_PRICE_IN.value, _PRICE_OUT.value)
            labels = read_labels(_LABELS.value)
            pool = pipeline.training_pool(_ARTIFACT.value) if _TRANSFER.value else None
            manifest = pipeline.onboard(_ARTIFACT.value, _ADD.value, labels, _OUT.value,
                                        price=price, pool=pool, overwrite=_OVERWRITE.value,
                                        platforms=tuple(_PLATFORMS.value))
        else:
            manifest = pipeline.remove_model(_ARTIFACT.value, _REMOVE.value, _OUT.value,
                                             overwrite=_OVERWRITE.value,
                                             platforms=tuple(_PLATFORMS.value))
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        sys.exit(f"launch.onboard: {err}")
    step = manifest["lineage"][-1]
    what = (f"added {step['added']} ({step['n_train']} training queries"
            + (f" + {step['n_val_fitted']} val rows" if step.get("n_val_fitted") else "")
            + (f" + {step['n_transferred']} pool queries with transferred labels"
               if step.get("n_transferred") else "") + ")"
            if step["added"] else f"removed {step['removed']}")
    hi = manifest["feasible_tau"]["max"]
    print(f"wrote {os.path.abspath(_OUT.value)} in {time.perf_counter() - start:.1f} s: {what}, "
          f"{len(manifest['models'])} models, "
          f"{manifest['certification']['status']}, feasible τ up to "
          f"{'none' if hi is None else round(hi, 4)}{around_note(manifest)}")


def around_note(manifest: dict) -> str:
    """'; K of the N certified τ are served around <the added model>', or '' (nothing certified,
    or no point routes around it)."""
    counts = certified_around(manifest)
    if counts is None:
        return ""
    return (f"; {counts[0]} of the {counts[1]} certified τ are served around "
            f"{manifest['lineage'][-1]['added']} (better on val without it)")


if __name__ == "__main__":
    flags.mark_flags_as_required(["artifact"])
    app.run(main)
