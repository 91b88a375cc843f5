"""Reading and verifying an exported router artifact on disk (the load-time half of serving).

An artifact directory holds `manifest.json`, `params/` and `route.jaxexport` (see
`proteus.serving`). The manifest records every other file of the directory with its size and
sha256 (`files`), and a digest of its own content (`manifest_sha256`: the sha256 of the manifest's
canonical JSON without that key; a file cannot hold its own hash). `Router.load` checks, in order:

  1. the manifest parses (no NaN/Infinity), has this format and version and every required key;
  2. its digest matches its content (an edited manifest is refused, naming the file);
  3. the files on disk are exactly the recorded ones: a missing, extra, resized or modified file
     is refused, naming it;
  4. the content is consistent: models, λ table, certification block, feasible τ range;
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
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from proteus.operating import FALLBACKS, feasible_range
from proteus.operating.bounds import METHODS

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


# ------------------------------------------------------------------ content checks


def _numbers(value: Any, field: str, n: int | None = None, lo: float = -math.inf,
             hi: float = math.inf) -> list[float]:
    """`value` as a list of finite numbers in [lo, hi] (of length n); ArtifactError naming field."""
    ok = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not value or (n is not None and len(value) != n):
        want = f"{n} numbers" if n is not None else "a non-empty list of numbers"
        raise ArtifactError(f"manifest {field} must be {want}, got {value!r:.120}")
    bad = [v for v in value if not (math.isfinite(v) and lo <= v <= hi)]
    if bad:
        raise ArtifactError(f"manifest {field} must be finite and within [{lo}, {hi}], got "
                            f"{bad[0]!r}")
    return [float(v) for v in value]


def _check_tasks(tasks: Any) -> None:
    """The task prior's vocabulary: unique non-empty names (absent or [] without a task prior)."""
    if (not isinstance(tasks, list) or len(set(tasks)) != len(tasks)
            or not all(isinstance(t, str) and t for t in tasks)):
        raise ArtifactError(f"manifest tasks must be a list of unique non-empty names, got "
                            f"{tasks!r:.120}")


def _check_lambda(lam: Any) -> int:
    """The λ table: K lane τ strictly increasing in [0, 1], K finite λ >= 0, K accuracies.

    τ = 0 is allowed: training puts the lowest lane at the cheapest model's accuracy, which is 0
    when that model never succeeds.
    """
    if not isinstance(lam, dict):
        raise ArtifactError(f"manifest lambda must be an object, got {lam!r:.80}")
    taus = _numbers(lam.get("taus"), "lambda.taus", lo=0.0, hi=1.0)
    k = len(taus)
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ArtifactError(f"manifest lambda.taus must increase strictly, got {taus}")
    _numbers(lam.get("lams"), "lambda.lams", n=k, lo=0.0)
    _numbers(lam.get("lane_accuracy"), "lambda.lane_accuracy", n=k, lo=0.0, hi=1.0)
    return k


def _check_operating(table: Any, n_models: int) -> int:
    """The operating-point table (`proteus.operating.table`); returns its number of points C."""
    if not isinstance(table, dict):
        raise ArtifactError(f"manifest operating must be an object, got {table!r:.80}")
    f = "operating."
    models = _numbers(table.get("model"), f + "model", lo=-1, hi=n_models - 1)
    c = len(models)
    if c == 0 or any(m != int(m) for m in models):
        raise ArtifactError(f"manifest {f}model must be point kinds: −1 or a model index")
    taus = table.get("tau")
    if not isinstance(taus, list) or len(taus) != c or any(
            (t is None) != (m >= 0) for t, m in zip(taus, models, strict=True)):
        raise ArtifactError(f"manifest {f}tau must be a τ' for each policy point and null for "
                            "each fixed-model point")
    _numbers([t for t in taus if t is not None], f + "tau", lo=0.0, hi=1.0)
    _numbers(table.get("accuracy"), f + "accuracy", n=c, lo=-1.0, hi=1.0)
    _numbers(table.get("cost"), f + "cost", n=c, lo=0.0)
    _numbers([table.get("n_heldout")], f + "n_heldout", lo=1)
    _numbers([table.get("margin_z")], f + "margin_z", lo=0.0)
    return c


def _check_certification(cert: Any) -> dict | None:
    """The certification block: {"status": "uncertified", "table": null} or a consistent table."""
    if not isinstance(cert, dict) or cert.get("status") not in ("certified", "uncertified"):
        raise ArtifactError("manifest certification.status must be 'certified' or "
                            f"'uncertified', got {cert!r:.80}")
    table = cert.get("table")
    if cert["status"] == "uncertified":
        if table is not None:
            raise ArtifactError("manifest certification: 'uncertified' with a table")
        return None
    if not isinstance(table, dict):
        raise ArtifactError("manifest certification: 'certified' without a table")
    f = "certification.table."
    taus = _numbers(table.get("taus"), f + "taus", lo=0.0, hi=1.0)
    if any(b <= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ArtifactError(f"manifest {f}taus must increase strictly, got {taus}")
    n_t, n_p = len(taus), len(_numbers(table.get("accuracy"), f + "accuracy", lo=0.0, hi=1.0))
    _numbers(table.get("lcb"), f + "lcb", n=n_p, hi=1.0)  # a Hoeffding bound may be below 0
    _numbers(table.get("cost"), f + "cost", n=n_p, lo=0.0)
    _numbers([table.get("delta")], f + "delta", lo=0.0, hi=1.0)
    # the window promise (absent in tables certified before windows: the population promise)
    window = _numbers([table.get("window", 0)], f + "window", lo=0)[0]
    if window != int(window):
        raise ArtifactError(f"manifest {f}window must be a whole number of requests, got {window}")
    _numbers([table.get("tolerance", 0.0)], f + "tolerance", lo=0.0, hi=1.0)
    route_to = _numbers(table.get("route_to"), f + "route_to", n=n_t, lo=-1, hi=n_p - 1)
    chosen = _numbers(table.get("chosen"), f + "chosen", n=n_t, lo=-1, hi=n_p - 1)
    feasible = table.get("feasible")
    if not isinstance(feasible, list) or len(feasible) != n_t or not all(
            isinstance(v, bool) for v in feasible):
        raise ArtifactError(f"manifest {f}feasible must be {n_t} booleans")
    if any(ok != (c >= 0) for ok, c in zip(feasible, chosen, strict=True)) or any(
            ok and r != c for ok, r, c in zip(feasible, route_to, chosen, strict=True)):
        raise ArtifactError(f"manifest {f}feasible, chosen and route_to disagree")
    if table.get("method") not in METHODS or table.get("fallback") not in FALLBACKS:
        raise ArtifactError(f"manifest {f}method/fallback must be one of {METHODS}/{FALLBACKS}")
    reasons = table.get("reasons")
    if not isinstance(reasons, list) or len(reasons) != n_t:
        raise ArtifactError(f"manifest {f}reasons must be {n_t} strings")
    return table


def validate_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Check the manifest's content for consistency; ArtifactError naming the field otherwise.

    Checks: M unique model names, M mean costs >= 0, prices of known models, feature_dim >= 1,
    the λ table (`_check_lambda`), the operating points (`_check_operating`), the certification
    block over them (`_check_certification`), the fallback, and that `feasible_tau` is what the
    operating table and certification imply.
    """
    try:
        models = manifest["models"]
        if (not isinstance(models, list) or not models or len(set(models)) != len(models)
                or not all(isinstance(m, str) and m for m in models)):
            raise ArtifactError(f"manifest models must be unique non-empty names, got "
                                f"{models!r:.120}")
        _numbers(manifest["mean_cost_usd"], "mean_cost_usd", n=len(models), lo=0.0)
        prices = manifest["prices"]
        if not isinstance(prices, dict) or not set(prices) <= set(models):
            raise ArtifactError("manifest prices must map model names (of 'models') to prices")
        for name, price in prices.items():
            _numbers(list(price.values()) if isinstance(price, dict) else price,
                     f"prices[{name!r}]", n=2, lo=0.0)
        dim = manifest["feature_dim"]
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ArtifactError(f"manifest feature_dim must be a positive integer, got {dim!r}")
        if not isinstance(manifest["encoder"], dict) or "kind" not in manifest["encoder"]:
            raise ArtifactError("manifest encoder must be an object with a 'kind'")
        _check_tasks(manifest.get("tasks", []))
        _check_lambda(manifest["lambda"])
        n_points = _check_operating(manifest["operating"], len(models))
        table = _check_certification(manifest["certification"])
        if table is not None and len(table["accuracy"]) != n_points:
            raise ArtifactError(f"manifest certification.table has {len(table['accuracy'])} "
                                f"points, the operating table {n_points}")
        if manifest["fallback"] not in FALLBACKS:
            raise ArtifactError(f"manifest fallback must be one of {FALLBACKS}, got "
                                f"{manifest['fallback']!r}")
        want = feasible_range(manifest["operating"], table)
        got = manifest["feasible_tau"]
        if not isinstance(got, dict) or (got.get("min"), got.get("max")) != want:
            raise ArtifactError(f"manifest feasible_tau {got!r} disagrees with the operating "
                                f"table and certification, which give min={want[0]}, "
                                f"max={want[1]}")
    except ArtifactError as err:
        raise ArtifactError(f"{os.path.join(path, MANIFEST_FILE)}: {err}") from None


def check_finite_params(path: str, leaves: Sequence[tuple[str, Any]]) -> None:
    """Every floating-point parameter is finite; ArtifactError naming the first bad leaf.

    Args:
      leaves: (key path, numpy array) pairs, e.g. from `jax.tree_util.tree_flatten_with_path`.
    """
    for name, leaf in leaves:
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ArtifactError(f"{path}: parameter {name} holds {int(np.sum(~np.isfinite(arr)))} "
                                f"non-finite value(s) (corrupted {PARAMS_DIR}/?)")


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
