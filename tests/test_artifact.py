"""Artifact integrity: every file hashed, the manifest digested and validated, decisions finite.

Each test reproduces a failure found by probing the served artifact (issue: params bit flips
loaded silently and served NaN; edited manifests, NaN or scaled λ tables and fake certification
blocks loaded silently) and checks that it is now refused with an error naming the file or field.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus.serving import artifact, manifest_checks
from proteus.serving import router as serving
from proteus.serving.artifact import ArtifactError

pytest_plugins = ["tests.serving_fixtures"]


def _copy(src: str, tmp_path, name: str = "a") -> str:
    dst = str(tmp_path / name)
    shutil.copytree(src, dst)
    return dst


def _manifest(path: str) -> dict:
    with open(os.path.join(path, artifact.MANIFEST_FILE)) as f:
        return json.load(f)


def _write(path: str, manifest: dict, reseal: bool) -> None:
    """Write `manifest`; with `reseal`, recompute the digest and hashes (a deliberate edit)."""
    if reseal:
        manifest = artifact.seal(manifest, path)
    with open(os.path.join(path, artifact.MANIFEST_FILE), "w") as f:
        json.dump(manifest, f)


def _largest_params_file(path: str) -> str:
    files = _manifest(path)["files"]
    return max((rel for rel in files if rel.startswith("params/")), key=lambda r: files[r]["bytes"])


def test_manifest_lists_every_file(tiny_artifact):
    m = _manifest(tiny_artifact)
    on_disk = {os.path.relpath(os.path.join(d, f), tiny_artifact)
               for d, _, fs in os.walk(tiny_artifact) for f in fs} - {"manifest.json"}
    assert set(m["files"]) == on_disk and "route.jaxexport" in on_disk
    assert any(rel.startswith("params/") for rel in on_disk)
    for rel, entry in m["files"].items():
        assert entry["bytes"] == os.path.getsize(os.path.join(tiny_artifact, rel))
        assert entry["sha256"] == artifact.file_sha256(os.path.join(tiny_artifact, rel))
    assert m["manifest_sha256"] == artifact.manifest_digest(m)


def test_flipped_params_bytes_are_refused(tiny_artifact, tmp_path):
    # the probe: flip 4 bytes in params/ -> loaded, NaN decisions. Now: refused, naming the file.
    path = _copy(tiny_artifact, tmp_path)
    rel = _largest_params_file(path)
    with open(os.path.join(path, rel), "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
        f.seek(0)
        f.write(data)
    with pytest.raises(ArtifactError, match=f"{rel} does not match its sha256"):
        serving.Router.load(path, warmup=0)


def test_missing_extra_and_truncated_files_are_refused(tiny_artifact, tmp_path):
    path = _copy(tiny_artifact, tmp_path, "missing")
    rel = _largest_params_file(path)
    os.remove(os.path.join(path, rel))
    with pytest.raises(ArtifactError, match=f"{rel} is listed in the manifest but missing"):
        serving.Router.load(path, warmup=0)
    path = _copy(tiny_artifact, tmp_path, "extra")
    with open(os.path.join(path, "params", "notes.txt"), "w") as f:
        f.write("hello")
    with pytest.raises(ArtifactError, match="params/notes.txt is not listed"):
        serving.Router.load(path, warmup=0)
    path = _copy(tiny_artifact, tmp_path, "truncated")
    with open(os.path.join(path, rel), "r+b") as f:
        f.truncate(max(0, os.path.getsize(os.path.join(path, rel)) - 3))
    with pytest.raises(ArtifactError, match=f"{rel} has .* bytes.*truncated"):
        serving.Router.load(path, warmup=0)
    path = _copy(tiny_artifact, tmp_path, "link")
    os.symlink("/etc/hostname", os.path.join(path, "params", "link"))
    with pytest.raises(ArtifactError, match="params/link is a link"):
        serving.Router.load(path, warmup=0)


def test_edited_manifest_is_refused(tiny_artifact, tmp_path):
    # the probe: the model list reversed mislabelled most decisions. Now: the digest catches it.
    path = _copy(tiny_artifact, tmp_path)
    m = _manifest(path)
    _write(path, {**m, "models": m["models"][::-1]}, reseal=False)
    with pytest.raises(ArtifactError, match="manifest.json was modified after export"):
        serving.Router.load(path, warmup=0)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write(json.dumps(m).replace('"lams": [1.0', '"lams": [NaN'))
    with pytest.raises(ArtifactError, match="not valid JSON: non-finite number NaN"):
        serving.Router.load(path, warmup=0)
    _write(path, {**m, "format_version": 1}, reseal=True)
    with pytest.raises(ArtifactError, match="v1 .* re-export"):
        serving.Router.load(path, warmup=0)


def _certified_table(m: dict, **changes) -> dict:
    cert = {"status": "certified", "table": {**m["certification"]["table"], **changes}}
    return {**m, "certification": cert}


@pytest.mark.parametrize("edit, match", [
    (lambda m: {**m, "models": m["models"][:2], "mean_cost_usd": m["mean_cost_usd"][:2],
                "prices": {}}, "operating.model must be finite and within \\[-1, 1\\]"),
    (lambda m: {**m, "operating": {**m["operating"], "tau": [0.9, 0.5, 0.6]}},
     "operating.tau must be a τ' for each policy point and null"),
    (lambda m: {**m, "models": ["a", "a", "b"]}, "models must be unique"),
    (lambda m: {**m, "lambda": {**m["lambda"], "lams": [-1.0, 3.0, 2.0]}}, "lambda.lams"),
    (lambda m: {**m, "lambda": {**m["lambda"], "lams": [1.0, 3.0]}}, "lambda.lams must be 3"),
    (lambda m: {**m, "lambda": {**m["lambda"], "taus": [0.5, 0.9, 0.7]}}, "increase strictly"),
    (lambda m: {**m, "lambda": {**m["lambda"], "taus": [-0.1, 0.7, 0.9]}}, "within \\[0.0, 1.0\\]"),
    (lambda m: {**m, "mean_cost_usd": [1e-4, -1.0, 1e-3]}, "mean_cost_usd"),
    (lambda m: {**m, "feasible_tau": {"min": 0.0, "max": 1.0}}, "feasible_tau .* disagrees"),
    (lambda m: {**m, "fallback": "maybe"}, "fallback must be one of"),
    (lambda m: {**m, "certification": {"status": "certified", "table": None}}, "without a table"),
    (lambda m: {**m, "certification": {"status": "trusted", "table": None}}, "status must be"),
])
def test_inconsistent_manifest_content_is_refused(tiny_artifact, tmp_path, edit, match):
    # resealed, so these get past the digest: the content checks must catch them
    path = _copy(tiny_artifact, tmp_path)
    _write(path, edit(_manifest(path)), reseal=True)
    with pytest.raises(ArtifactError, match=match) as err:
        serving.Router.load(path, warmup=0)
    assert "manifest.json" in str(err.value) or "routing function" in str(err.value)


@pytest.mark.parametrize("changes, match", [
    ({"accuracy": [1.0, 1.5]}, "accuracy must be finite and within \\[0.0, 1.0\\]"),
    ({"feasible": [False, True, True]}, "feasible, chosen and route_to disagree"),
    ({"route_to": [5, 0, 0]}, "route_to"),
    ({"accuracy": [1.0]}, "lcb must be 1 numbers"),
    ({"delta": 2.0}, "delta"),
    ({"window": -5}, "window must be finite and within"),
    ({"window": 10.5}, "window must be a whole number"),
    ({"tolerance": 1.5}, "tolerance"),
])
def test_fake_certification_block_is_refused(tiny_certified_artifact, tmp_path, changes, match):
    path = _copy(tiny_certified_artifact, tmp_path)
    manifest = _certified_table(_manifest(path), **changes)
    _write(path, manifest, reseal=True)
    with pytest.raises(ArtifactError, match=match):
        serving.Router.load(path, warmup=0)


def test_non_finite_params_are_refused(tiny_artifact, tmp_path):
    path = _copy(tiny_artifact, tmp_path)
    params = artifact.load_params(os.path.join(path, "params"))
    kernel = params["policy"]["params"]["beta_params"]["kernel"]
    kernel[0, 0] = np.nan
    shutil.rmtree(os.path.join(path, "params"))
    artifact.save_params(os.path.join(path, "params"), params)
    _write(path, _manifest(path), reseal=True)
    with pytest.raises(ArtifactError, match="parameter .*beta_params.*kernel.* non-finite"):
        serving.Router.load(path, warmup=0)


def test_non_finite_decisions_are_an_error(tiny_artifact):
    router = serving.Router.load(tiny_artifact, warmup=0)
    real = router._fn

    def nan_mu(*args):
        out = np.array(real(*args))
        out[1, 1] = np.nan  # row 1's μ
        return out

    router._fn = nan_mu
    with pytest.raises(serving.RoutingError, match=r"non-finite .* 1 of 3 queries \(first: \[1\]"):
        router.route(np.zeros((3, 4)), 0.6)
    assert not serving.finite_rows(router.run(np.zeros((3, 4)), np.full(3, 0.6, np.float32)))[1]


def test_save_and_load_params(tmp_path):
    tree = {"predictor": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "stats": {"c_ref": np.float32(2.5), "n": np.array([1, 2], np.int32)}}
    path = str(tmp_path / "params")
    artifact.save_params(path, jax.tree.map(jnp.asarray, tree))
    loaded = artifact.load_params(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(tree)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(tree), strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.asarray(want).dtype
    with pytest.raises(Exception):  # noqa: B017 (orbax raises its own error types)
        artifact.save_params(path, tree)  # the directory exists: no silent overwrite


# ------------------------------------------------------------------ units on hand-made directories

SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256(b"abc")
SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256(b"")


def _tiny_dir(tmp_path) -> str:
    """route.jaxexport (b"abc"), params/p (empty) and a manifest.json that is not listed."""
    (tmp_path / "params").mkdir()
    (tmp_path / "route.jaxexport").write_bytes(b"abc")
    (tmp_path / "params" / "p").write_bytes(b"")
    (tmp_path / artifact.MANIFEST_FILE).write_text("{}")
    return str(tmp_path)


def test_list_files_sizes_and_hashes_every_file_but_the_manifest(tmp_path):
    path = _tiny_dir(tmp_path)
    got = artifact.list_files(path)
    assert got == {"params/p": {"bytes": 0, "sha256": SHA_EMPTY},
                   "route.jaxexport": {"bytes": 3, "sha256": SHA_ABC}}
    assert list(got) == ["params/p", "route.jaxexport"]  # sorted
    os.symlink("/etc/hostname", os.path.join(path, "params", "link"))
    with pytest.raises(ArtifactError, match="params/link is a link or special file"):
        artifact.list_files(path)


def _tiny_files_manifest() -> dict:
    return {"files": {"params/p": {"bytes": 0, "sha256": SHA_EMPTY},
                      "route.jaxexport": {"bytes": 3, "sha256": SHA_ABC}},
            "function": {"file": "route.jaxexport"}}


def test_verify_files_accepts_exactly_the_recorded_files(tmp_path):
    path = _tiny_dir(tmp_path)
    assert artifact.verify_files(path, _tiny_files_manifest()) is None


@pytest.mark.parametrize("edit, match", [
    (lambda m: {**m, "files": {"route.jaxexport": {"bytes": 3}}},
     r"'files' must map paths to \{bytes, sha256\}"),
    (lambda m: {**m, "files": {**m["files"], "params/q": {"bytes": 0, "sha256": SHA_EMPTY}}},
     r"params/q is listed in the manifest but missing \(1 file\(s\) missing\)"),
    (lambda m: {**m, "files": {"route.jaxexport": m["files"]["route.jaxexport"]}},
     r"params/p is not listed in the manifest .*1 such file\(s\)"),
    (lambda m: {**m, "files": {**m["files"], "route.jaxexport": {"bytes": 4, "sha256": SHA_ABC}}},
     "route.jaxexport has 3 bytes, the manifest records 4"),
    (lambda m: {**m, "files": {**m["files"], "params/p": {"bytes": 0, "sha256": SHA_ABC}}},
     "params/p does not match its sha256"),
    (lambda m: {**m, "function": {"file": "other.jaxexport"}},
     "routing function file 'other.jaxexport' is not among"),
    (lambda m: {**m, "function": "route.jaxexport"},
     "routing function file None is not among"),
])
def test_verify_files_refuses_a_mismatch_naming_it(tmp_path, edit, match):
    path = _tiny_dir(tmp_path)
    with pytest.raises(ArtifactError, match=match):
        artifact.verify_files(path, edit(_tiny_files_manifest()))


def test_verify_files_needs_params(tmp_path):
    (tmp_path / "route.jaxexport").write_bytes(b"abc")
    manifest = {"files": {"route.jaxexport": {"bytes": 3, "sha256": SHA_ABC}},
                "function": {"file": "route.jaxexport"}}
    with pytest.raises(ArtifactError, match="no params/ files in the manifest"):
        artifact.verify_files(str(tmp_path), manifest)


def test_read_heldout_files_as_stored_or_none(tmp_path):
    assert artifact.read_heldout_files(str(tmp_path), {"models": ["a"]}) is None
    assert artifact.read_heldout_files(str(tmp_path), {"heldout": None}) is None
    folder = tmp_path / "rows"
    folder.mkdir()
    queries = {"models": ["a", "b"], "split": ["val", "calib"], "texts": None}
    (folder / artifact.HELDOUT_QUERIES).write_text(json.dumps(queries))
    np.savez(folder / artifact.HELDOUT_ARRAYS, scores=np.array([[1.0, 0.0], [0.5, 1.0]]),
             pool_folds=np.array([0, 1], np.int32))
    got_queries, arrays = artifact.read_heldout_files(str(tmp_path), {"heldout": {"dir": "rows"}})
    assert got_queries == queries
    assert sorted(arrays) == ["pool_folds", "scores"]
    np.testing.assert_array_equal(arrays["scores"], [[1.0, 0.0], [0.5, 1.0]])
    assert arrays["pool_folds"].dtype == np.int32


def test_fitted_on_val_follows_the_lineage():
    add = lambda m, n=0: {"added": m, "removed": None, "n_val_fitted": n}
    drop = lambda m: {"added": None, "removed": m, "n_train": 0}
    manifest = lambda steps, models: {"lineage": steps, "models": models}
    assert artifact.fitted_on_val({"models": ["a", "b"]}) == ()  # trained, no lineage
    assert artifact.fitted_on_val(manifest([add("x", 5), add("y")], ["a", "x", "y"])) == ("x",)
    assert artifact.fitted_on_val(manifest([add("x", 5), drop("x")], ["a"])) == ()
    assert artifact.fitted_on_val(manifest([add("x", 5), add("y", 5), drop("x")],
                                           ["a", "y"])) == ("y",)
    # an artifact from before the field (lineage steps without "n_val_fitted"): held out
    assert artifact.fitted_on_val(manifest([{"added": "x", "removed": None}], ["x"])) == ()


def test_lowering_platform_names_gpus_by_their_runtime(monkeypatch):
    # the machine's own backend (CPU in the tests) names itself
    backend = jax.default_backend()
    if backend != "gpu":
        assert artifact.lowering_platform() == backend

    def gpu_with(version: str):
        device = type("Device", (), {"client": type("Client", (), {
            "platform_version": version})()})()
        monkeypatch.setattr(artifact.jax, "default_backend", lambda: "gpu")
        monkeypatch.setattr(artifact.jax, "devices", lambda: [device])

    gpu_with("rocm 6.0.2")
    assert artifact.lowering_platform() == "rocm"
    gpu_with("cuda 12040")
    assert artifact.lowering_platform() == "cuda"
    monkeypatch.setattr(artifact.jax, "default_backend", lambda: "tpu")
    assert artifact.lowering_platform() == "tpu"


# ------------------------------------------------------------------ manifest content checks


def _valid_manifest() -> dict:
    """The smallest consistent manifest: 2 models, an uncertified table whose best point has
    accuracy 0.75; with margin_z 0 the uncertified rule's largest feasible τ is that 0.75."""
    return {"models": ["a", "b"], "mean_cost_usd": [1e-4, 2e-4], "prices": {"a": [1e-7, 2e-7]},
            "feature_dim": 4, "encoder": {"kind": "precomputed"},
            "lambda": {"taus": [0.5, 0.9], "lams": [1.0, 2.0], "lane_accuracy": [0.6, 0.8]},
            "operating": {"tau": [0.9, None], "model": [-1, 1], "accuracy": [0.75, 0.5],
                          "cost": [1e-4, 2e-4], "n_heldout": 100, "margin_z": 0.0},
            "certification": {"status": "uncertified", "table": None},
            "fallback": "best_effort", "feasible_tau": {"min": 0.0, "max": 0.75}}


@pytest.mark.parametrize("edit, match", [
    (lambda m: {**m, "models": ["a", "a"]}, "models must be unique non-empty names"),
    (lambda m: {**m, "mean_cost_usd": [1e-4, -1.0]},
     r"mean_cost_usd must be finite and within \[0.0, inf\], got -1.0"),
    (lambda m: {**m, "mean_cost_usd": [1e-4]}, "mean_cost_usd must be 2 numbers"),
    (lambda m: {**m, "prices": {"c": [0.0, 0.0]}}, "prices must map model names"),
    (lambda m: {**m, "feature_dim": True}, "feature_dim must be a positive integer, got True"),
    (lambda m: {**m, "encoder": {"id": "x"}}, "encoder must be an object with a 'kind'"),
    (lambda m: {**m, "tasks": ["t", "t"]}, "tasks must be a list of unique non-empty names"),
    (lambda m: {**m, "lambda": {**m["lambda"], "taus": [0.9, 0.5]}},
     "lambda.taus must increase strictly"),
    (lambda m: {**m, "operating": {**m["operating"], "tau": [0.9, 0.5]}},
     "operating.tau must be a τ' for each policy point and null for each fixed-model point"),
    (lambda m: {**m, "certification": {"status": "uncertified", "table": {}}},
     "'uncertified' with a table"),
    # what a point routes around: model indices of a policy point, never a fixed point's
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[1]]}},
     r"operating.excluded must list, for each of the 2 points, the distinct model indices \(0 "
     r"to 1\)"),
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[2], []]}},
     "operating.excluded must list"),
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[], [0]]}},
     "none for a fixed-model point"),
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[0, 1], []]}},
     "never every model"),
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[True], []]}},
     "operating.excluded must list"),
    (lambda m: {**m, "operating": {**m["operating"], "excluded": [[[1]], []]}},
     "operating.excluded must list"),
    (lambda m: {**m, "fallback": "retry"}, "fallback must be one of .*, got 'retry'"),
    (lambda m: {**m, "feasible_tau": {"min": 0.0, "max": 0.8}},
     "feasible_tau .* disagrees .* which give min=0.0, max=0.75"),
])
def test_validate_manifest_names_the_bad_field(edit, match):
    manifest_checks.validate_manifest("art", _valid_manifest())  # the unedited one passes
    around = _valid_manifest()
    around["operating"]["excluded"] = [[1], []]  # a policy point routing around model 1: valid
    manifest_checks.validate_manifest("art", around)
    with pytest.raises(ArtifactError, match=f"^art/manifest.json: manifest .*{match}"):
        manifest_checks.validate_manifest("art", edit(_valid_manifest()))


def test_check_finite_params_names_the_first_bad_leaf():
    leaves = [("['ok']", np.array([1.0, -2.0], np.float32)), ("['ints']", np.array([1, 2])),
              ("['w']", np.array([1.0, np.nan, np.inf])), ("['v']", np.array([np.nan]))]
    assert manifest_checks.check_finite_params("art", leaves[:2]) is None
    # ['w'] is the first bad leaf, with 2 non-finite values (NaN and inf)
    with pytest.raises(ArtifactError, match=r"^art: parameter \['w'\] holds 2 non-finite "
                                            r"value\(s\) \(corrupted params/\?\)"):
        manifest_checks.check_finite_params("art", leaves)
    with pytest.raises(ArtifactError, match="1 non-finite"):  # complex leaves are checked too
        manifest_checks.check_finite_params("art", [("c", np.array([1 + 1j, complex(np.nan)]))])
