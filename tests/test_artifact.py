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

from proteus.serving import artifact
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
