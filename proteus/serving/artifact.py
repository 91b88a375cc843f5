"""Reading and verifying an exported router artifact on disk (the load-time half of serving).

An artifact directory holds `manifest.json`, `params/` and `route.jaxexport` (see
`proteus.serving`). The manifest records every other file of the directory with its size and
sha256 (`files`), and a digest of its own content (`manifest_sha256`: the sha256 of the manifest's
canonical JSON without that key; a file cannot hold its own hash). `Router.load` checks, in order:

  1. the manifest parses (no NaN/Infinity), has this format and version and every required key;
  2. its digest matches its content (an edited manifest is refused, naming the file);
  3. the files on disk are exactly the recorded ones: a missing, extra, resized or modified file
     is refused, naming it;
  4. the content is consistent: models, λ table, certification block, feasible τ range
     (`proteus.serving.manifest_checks`);
  5. (in `proteus.serving`) the routing function agrees with the manifest and this machine, and the
     parameters have the function's structure and are finite.

Threat model: this detects corruption (bit flips, truncated copies, partial syncs) and careless
or accidental edits (a hand-edited model list, λ table or certification block, a stray file). It
does NOT authenticate the artifact: anyone who can write the directory can rewrite the files AND
recompute every hash. Serve only artifacts from a trusted source, and protect the directory with
file permissions (or sign it out of band) where that matters.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

FORMAT = "proteus-router"
# 2: every file hashed in `files`, the manifest digested in `manifest_sha256`; the operating-point
# table with fixed-model points; cross-fitted predictor ensembles
FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
PARAMS_DIR = "params"
FUNCTION_FILE = "route.jaxexport"
# the held-out rows an export carries (`proteus.training.reopen` writes them; the online service
# reads them, `proteus.online.heldout`)
HELDOUT_DIR, HELDOUT_QUERIES, HELDOUT_ARRAYS = "heldout", "queries.json", "arrays.npz"
DIGEST_KEY = "manifest_sha256"
REQUIRED_KEYS = ("models", "prices", "mean_cost_usd", "encoder", "feature_dim", "lambda",
                 "operating",
                 "certification", "fallback", "function", "feasible_tau", "files", DIGEST_KEY)


class ArtifactError(ValueError):
    """The artifact is missing, malformed, corrupted, or inconsistent with this code or machine."""


# ------------------------------------------------------------------ hashing (export and load)


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: str) -> dict[str, str]:
    """{relative path ('/'-separated): absolute path} of every file under `root` but the manifest.

    Raises:
      ArtifactError: a symlink or a special file (an artifact holds plain files only, so hashing
        never follows a link out of the directory).
    """
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full) or not (os.path.isdir(full) or os.path.isfile(full)):
                raise ArtifactError(f"{root}: {rel} is a link or special file; an artifact holds "
                                    "plain files only")
            if name in files and rel != MANIFEST_FILE:
                found[rel] = full
    return found


def list_files(root: str) -> dict[str, dict[str, Any]]:
    """The `files` entry of a manifest: {relative path: {"bytes": size, "sha256": hex}}, sorted."""
    return {rel: {"bytes": os.path.getsize(full), "sha256": file_sha256(full)}
            for rel, full in sorted(_walk(root).items())}


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces) without `DIGEST_KEY`."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(manifest: dict[str, Any], root: str) -> dict[str, Any]:
    """`manifest` plus the hashes of every file now under `root` and its own digest (export)."""
    sealed = {k: v for k, v in manifest.items() if k not in ("files", DIGEST_KEY)}
    sealed["files"] = list_files(root)
    sealed[DIGEST_KEY] = manifest_digest(sealed)
    return sealed


# ------------------------------------------------------------------ reading and verifying


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of the artifact at `path`: parsed, format/version/keys and digest checked."""
    file = os.path.join(path, MANIFEST_FILE)
    if not os.path.isfile(file):
        raise ArtifactError(f"{file} not found: is {path!r} a PROTEUS router artifact?")
    try:
        with open(file, encoding="utf-8") as f:
            manifest = json.load(f, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ArtifactError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    fmt, version = manifest.get("format"), manifest.get("format_version")
    if fmt == FORMAT and version == 1:
        raise ArtifactError(f"{file}: format v1 artifacts record no file hashes and cannot be "
                            "verified; re-export the run with this code (launch.export)")
    if fmt != FORMAT or version != FORMAT_VERSION:
        raise ArtifactError(f"{file}: format {fmt!r} v{version!r}, expected {FORMAT!r} "
                            f"v{FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{file}: missing {missing}")
    if manifest[DIGEST_KEY] != manifest_digest(manifest):
        raise ArtifactError(f"{file} was modified after export: its content does not match its "
                            f"{DIGEST_KEY}; re-export the artifact instead of editing it")
    return manifest


def verify_files(path: str, manifest: dict[str, Any]) -> None:
    """The files under `path` are exactly the manifest's `files`, with their sizes and sha256."""
    recorded = manifest["files"]
    if not isinstance(recorded, dict) or not all(
            isinstance(v, dict) and {"bytes", "sha256"} <= set(v) for v in recorded.values()):
        raise ArtifactError(f"{path}: manifest 'files' must map paths to {{bytes, sha256}}")
    found = _walk(path)
    missing = sorted(set(recorded) - set(found))
    if missing:
        raise ArtifactError(f"{path}: {missing[0]} is listed in the manifest but missing "
                            f"({len(missing)} file(s) missing)")
    extra = sorted(set(found) - set(recorded))
    if extra:
        raise ArtifactError(f"{path}: {extra[0]} is not listed in the manifest (added or "
                            f"renamed after export; {len(extra)} such file(s))")
    for rel in sorted(recorded):
        size = os.path.getsize(found[rel])
        if size != recorded[rel]["bytes"]:
            raise ArtifactError(f"{path}: {rel} has {size} bytes, the manifest records "
                                f"{recorded[rel]['bytes']} (truncated or modified after export)")
        if file_sha256(found[rel]) != recorded[rel]["sha256"]:
            raise ArtifactError(f"{path}: {rel} does not match its sha256 in the manifest "
                                "(corrupted or modified after export)")
    function_file = manifest["function"].get("file") if isinstance(manifest["function"],
                                                                   dict) else None
    if function_file not in recorded:
        raise ArtifactError(f"{path}: the routing function file {function_file!r} is not among "
                            "the manifest's files")
    if not any(rel.startswith(PARAMS_DIR + "/") for rel in recorded):
        raise ArtifactError(f"{path}: no {PARAMS_DIR}/ files in the manifest")


# ------------------------------------------------------------------ the routing function


def load_function(path: str, manifest: dict[str, Any]) -> jax.export.Exported:
    """Deserialise the routing function and check it against the manifest and this machine."""
    info = manifest["function"]
    with open(os.path.join(path, info["file"]), "rb") as f:  # a listed file (`verify_files`)
        blob = f.read()
    if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
        raise ArtifactError(f"{path}: {info['file']} does not match the manifest's sha256")
    version = info["calling_convention_version"]
    lo = jax.export.minimum_supported_calling_convention_version
    hi = jax.export.maximum_supported_calling_convention_version
    if not lo <= version <= hi:
        raise ArtifactError(f"{path}: the routing function uses jax.export calling convention "
                            f"{version}; this jax {jax.__version__} reads {lo}..{hi}: re-export "
                            "it with this jax, or serve with the jax it was exported with")
    exported = jax.export.deserialize(bytearray(blob))
    platform = lowering_platform()
    if platform not in exported.platforms:
        raise ArtifactError(f"{path}: the routing function was exported for {exported.platforms},"
                            f" not for this machine's {platform!r}; re-export with it")
    d, m, k = manifest["feature_dim"], len(manifest["models"]), len(manifest["lambda"]["taus"])
    extra = 1 if manifest.get("tasks") else 0  # a task prior's seventh input, task [b]
    n_args = len(exported.in_tree.children()[0].children())
    if n_args != 6 + extra:
        raise ArtifactError(f"{path}: the routing function takes {n_args} inputs; the manifest "
                            f"({len(manifest.get('tasks', []))} tasks) needs {6 + extra}")
    feats, outs = exported.in_avals[-3 - extra], exported.out_avals
    if feats.shape[1] != d:
        raise ArtifactError(f"{path}: the manifest says feature_dim={d}, the routing function "
                            f"takes {feats.shape[1]}-d features")
    lanes = exported.in_avals[-4 - extra].shape
    if outs[2].shape[1] != m or lanes != (k,):
        raise ArtifactError(f"{path}: the routing function expects {outs[2].shape[1]} models, "
                            f"{lanes} lanes; the manifest has {m}, {k}")
    return exported


def lowering_platform() -> str:
    """This machine's platform as `jax.export` names it ("cpu", "cuda", "rocm", "tpu")."""
    backend = jax.default_backend()
    if backend != "gpu":
        return backend
    client = getattr(jax.devices()[0], "client", None)
    version = str(getattr(client, "platform_version", "")).lower()
    return "rocm" if "rocm" in version else "cuda"


def save_params(path: str, tree: Any) -> None:
    """Write the router's parameters (a pytree of arrays) to `path`, a new directory (Orbax)."""
    import orbax.checkpoint as ocp  # noqa: PLC0415 (Orbax only when an artifact is written/read)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(path), jax.device_get(tree))
    checkpointer.wait_until_finished()


def load_params(path: str) -> Any:
    """Read parameters written by `save_params` as nested dicts of numpy arrays."""
    import orbax.checkpoint as ocp  # noqa: PLC0415 (`import proteus.serving` stays light)

    restored = ocp.StandardCheckpointer().restore(os.path.abspath(path))
    return jax.tree.map(np.asarray, restored)


def read_heldout_files(path: str, manifest: dict[str, Any]
                       ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The held-out rows the artifact at `path` carries, as stored: (queries.json's dict,
    arrays.npz's arrays by name); None when it carries none. Written by
    `proteus.training.reopen.write_heldout`; read by it and by `proteus.online.heldout`."""
    entry = manifest.get("heldout")
    if not entry:
        return None
    folder = os.path.join(path, entry["dir"])
    with open(os.path.join(folder, HELDOUT_QUERIES), encoding="utf-8") as f:
        queries = json.load(f)
    with np.load(os.path.join(folder, HELDOUT_ARRAYS), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return queries, arrays


def fitted_on_val(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The models of the artifact whose column was fitted on its carried `val` rows (a model
    added by `pipeline.onboard`, lineage "n_val_fitted" > 0): on `val` their predictions are not
    held out, so what measures the router on held-out rows reads `calib` alone."""
    fitted: dict[str, None] = {}
    for step in manifest.get("lineage") or ():
        if step.get("removed"):
            fitted.pop(step["removed"], None)
        if step.get("added") and step.get("n_val_fitted"):
            fitted[step["added"]] = None
    return tuple(m for m in fitted if m in manifest["models"])
