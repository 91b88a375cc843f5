"""An exported artifact reopened on the training side: its bundle and the held-out rows it carries.

Onboarding a model (or removing one) changes the model pool of a trained router without
retraining it, and must then re-measure its operating points (on `val`) and re-certify them (on
`calib`) on rows that carry every model's labels. The export therefore stores the evaluation's
held-out rows inside the artifact, hashed like every other file (`manifest["files"]`):

    heldout/queries.json   {"models": [M], "split": [n] "val" | "calib", "query_ids": [n],
                            "tasks": [n] ("" unknown), "texts": [n] or null,
                            "pool_ids": [P]}   the training pool's query ids (cross-fitting)
    heldout/arrays.npz     features [n, D] float32, scores [n, M], costs [n, M] float32,
                           pool_folds [P] int32 (each pool query's cross-fitting fold)

The manifest's "heldout" entry says where they are and how many there are; artifacts exported
before this (or with `heldout=False`) have none, and onboarding then needs the rows passed in.
The serving side never reads these files (`Router.load` only checks their hashes).

`read_bundle(path)` is `write_artifact`'s inverse: the verified artifact as a `RouterBundle`,
with its held-out rows and lineage, ready to be changed and written again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from proteus.data.dataset import RoutingDataset
from proteus.serving import artifact, manifest_checks
from proteus.training import networks

SPLITS = ("val", "calib")


@dataclasses.dataclass(frozen=True)
class HeldoutRows:
    """The held-out rows of an evaluation, with every model's labels.

    Attributes:
      val: the rows the operating points are measured on ([n_val, M] scores and costs,
        [n_val, D] features).
      calib: the rows they are certified on.
      pool_ids: [P] the training pool's query ids (`proteus.pipeline.setup.training_pool`).
      pool_folds: [P] int32 each pool query's cross-fitting fold: a new model's label on a pool
        query is fitted out of the fold whose predictor never saw that query.
    """

    val: RoutingDataset
    calib: RoutingDataset
    pool_ids: np.ndarray
    pool_folds: np.ndarray

    @property
    def models(self) -> tuple[str, ...]:
        return self.val.models

    def splits(self) -> dict[str, RoutingDataset]:
        return {"val": self.val, "calib": self.calib}

    def replace_models(self, models: Sequence[str], scores: dict[str, np.ndarray],
                       costs: dict[str, np.ndarray]) -> HeldoutRows:
        """The rows with the models `models`: scores[split], costs[split] [n, len(models)]."""
        def one(name, ds):
            return dataclasses.replace(ds, models=tuple(models), scores=scores[name],
                                       costs=costs[name],
                                       prices={k: v for k, v in ds.prices.items()
                                               if k in set(models)})
        return dataclasses.replace(self, val=one("val", self.val), calib=one("calib", self.calib))

    def summary(self) -> dict[str, Any]:
        """The manifest's "heldout" entry."""
        return {"dir": artifact.HELDOUT_DIR, "val": self.val.n_queries,
                "calib": self.calib.n_queries, "pool": int(len(self.pool_ids)),
                "texts": self.val.texts is not None}


def write_heldout(rows: HeldoutRows, directory: str) -> None:
    """Write `rows` as `directory`/heldout/ (the two files of the module docstring)."""
    folder = os.path.join(directory, artifact.HELDOUT_DIR)
    os.makedirs(folder)
    parts = [rows.val, rows.calib]
    texts = None if any(p.texts is None for p in parts) else [
        str(t) for p in parts for t in p.texts]
    queries = {"models": list(rows.models),
               "split": [name for name, p in zip(SPLITS, parts, strict=True)
                         for _ in range(p.n_queries)],
               "query_ids": [str(q) for p in parts for q in p.query_ids],
               "tasks": [str(t) for p in parts for t in p.tasks], "texts": texts,
               "pool_ids": [str(q) for q in rows.pool_ids]}
    with open(os.path.join(folder, artifact.HELDOUT_QUERIES), "w", encoding="utf-8") as f:
        json.dump(queries, f, ensure_ascii=False)
    cat = lambda field, dtype: np.concatenate([np.asarray(getattr(p, field), dtype)
                                               for p in parts])
    np.savez(os.path.join(folder, artifact.HELDOUT_ARRAYS), features=cat("features", np.float32),
             scores=cat("scores", np.float32), costs=cat("costs", np.float32),
             pool_folds=np.asarray(rows.pool_folds, np.int32))


def read_heldout(path: str, manifest: dict[str, Any]) -> HeldoutRows | None:
    """The held-out rows of the (verified) artifact at `path`; None when it carries none.

    Raises:
      ArtifactError: the files disagree with the manifest (models, row counts).
    """
    stored = artifact.read_heldout_files(path, manifest)
    if stored is None:
        return None
    q, arrays = stored
    entry = manifest["heldout"]
    if q["models"] != manifest["models"]:
        raise artifact.ArtifactError(f"{path}: the held-out rows' models {q['models']} are not "
                                     f"the manifest's {manifest['models']}")
    split = np.asarray(q["split"])
    prices = {m: (p["usd_per_input_token"], p["usd_per_output_token"])
              for m, p in manifest["prices"].items()}
    parts = {}
    for name in SPLITS:
        rows = np.flatnonzero(split == name)
        if len(rows) != entry[name]:
            raise artifact.ArtifactError(f"{path}: {len(rows)} held-out {name} rows, the "
                                         f"manifest records {entry[name]}")
        texts = None if q["texts"] is None else np.asarray(q["texts"], object)[rows]
        parts[name] = RoutingDataset(
            name=f"{manifest['training'].get('dataset', 'artifact')}:{name}",
            models=tuple(q["models"]), scores=arrays["scores"][rows],
            costs=arrays["costs"][rows], query_ids=np.asarray(q["query_ids"])[rows],
            tasks=np.asarray(q["tasks"])[rows], texts=texts, features=arrays["features"][rows],
            prices=prices)
    return HeldoutRows(parts["val"], parts["calib"], np.asarray(q["pool_ids"]),
                       arrays["pool_folds"])


def read_bundle(path: str):
    """The artifact at `path`, verified as `Router.load` verifies it (manifest digest, every
    file's hash, content), as (RouterBundle, HeldoutRows or None, manifest).

    The bundle's `training` and `lineage` are the manifest's; its params are numpy arrays.
    """
    from proteus.training.export import RouterBundle  # noqa: PLC0415 (export imports this)

    manifest = artifact.read_manifest(path)
    artifact.verify_files(path, manifest)
    manifest_checks.validate_manifest(path, manifest)
    params = artifact.load_params(os.path.join(path, artifact.PARAMS_DIR))
    spec = networks.RouterSpec(**manifest["spec"])
    lam = manifest["lambda"]
    cert = manifest["certification"]
    bundle = RouterBundle(
        spec=spec, params=params, lane_taus=np.asarray(lam["taus"], np.float32),
        lane_lams=np.asarray(lam["lams"], np.float32),
        lane_accuracy=np.asarray(lam["lane_accuracy"], np.float32),
        models=tuple(manifest["models"]), encoder=manifest["encoder"],
        operating=manifest["operating"],
        prices={m: (p["usd_per_input_token"], p["usd_per_output_token"])
                for m, p in manifest["prices"].items()},
        certification=cert["table"], training=manifest["training"],
        tasks=tuple(manifest.get("tasks", ())), lineage=tuple(manifest.get("lineage", ())))
    return bundle, read_heldout(path, manifest), manifest
