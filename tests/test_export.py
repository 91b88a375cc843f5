"""Export: artifact layout, manifest, the serialised routing function, certification input."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from proteus import operating, serving
from proteus.serving import artifact
from proteus.training import export, networks

pytest_plugins = ["tests.serving_fixtures"]

MANIFEST_KEYS = {
    "format", "format_version", "created", "models", "prices", "mean_cost_usd", "encoder",
    "feature_dim", "spec", "lambda", "operating", "certification", "feasible_tau", "fallback",
    "function", "params", "training", "versions", "files", "manifest_sha256", "tasks",
}


def _manifest(path: str) -> dict:
    with open(os.path.join(path, artifact.MANIFEST_FILE)) as f:
        return json.load(f)


def test_artifact_layout_and_manifest(tiny_artifact):
    assert sorted(os.listdir(tiny_artifact)) == ["manifest.json", "params", "route.jaxexport"]
    m = _manifest(tiny_artifact)
    assert set(m) == MANIFEST_KEYS
    assert (m["format"], m["format_version"]) == ("proteus-router", 2)
    assert m["models"] == ["small", "medium", "large"] and m["feature_dim"] == 4
    assert m["tasks"] == []  # trained without a task prior
    assert m["prices"]["large"] == {"usd_per_input_token": 1e-5, "usd_per_output_token": 3e-5}
    assert m["encoder"] == {"id": "precomputed:dim=4", "kind": "precomputed", "dim": 4}
    assert m["spec"] == {"n_models": 3, "feature_dim": 4, "hidden": 8, "policy_hidden": 8,
                         "use_tau_input": True, "use_lambda_input": True, "static_cost": False,
                         "folds": 1, "groups": 0, "tasks": 0}
    # float32 values survive the JSON round trip exactly
    assert np.array_equal(np.float32(m["lambda"]["taus"]), np.float32([0.5, 0.7, 0.9]))
    assert m["lambda"]["lams"] == [1.0, 3.0, 2.0]
    assert m["certification"] == {"status": "uncertified", "table": None}
    assert m["operating"]["model"] == [-1, 2, -1] and m["operating"]["tau"] == [0.9, None, 0.6]
    assert m["feasible_tau"]["min"] == 0.0  # see tiny_bundle: the root for 0.86, n=400, z=1
    assert m["feasible_tau"]["max"] == pytest.approx(0.84175, abs=1e-5)
    assert m["fallback"] == "best_effort"
    assert m["versions"]["jax"] == jax.__version__
    assert m["training"] == {"note": "hand-built"}


def test_serialised_function_has_symbolic_batch(tiny_artifact):
    m = _manifest(tiny_artifact)
    with open(os.path.join(tiny_artifact, m["function"]["file"]), "rb") as f:
        blob = f.read()
    exported = jax.export.deserialize(bytearray(blob))
    features, tau, fixed = exported.in_avals[-3:]
    assert str(features.shape[0]) == "b" and features.shape[1] == 4 and str(tau.shape[0]) == "b"
    assert str(fixed.shape[0]) == "b" and fixed.dtype == np.int32
    assert m["function"]["calling_convention_version"] == exported.calling_convention_version
    assert set(m["function"]["platforms"]) == {"cpu", "cuda"}
    params = artifact.load_params(os.path.join(tiny_artifact, "params"))
    lanes = (np.float32([0.5, 0.7, 0.9]), np.float32([1.0, 3.0, 2.0]))
    for batch in (1, 5):  # one serialised function, any batch size
        x, t = np.zeros((batch, 4), np.float32), np.full(batch, 0.7, np.float32)
        fixed = np.full(batch, -1, np.int32)
        model, mu, p_hat, c_hat, lam = exported.call(params, *lanes, x, t, fixed)
        assert model.shape == (batch,) and p_hat.shape == (batch, 3)
        forced = exported.call(params, *lanes, x, t, np.full(batch, 1, np.int32))[0]
        assert np.asarray(forced).tolist() == [1] * batch  # a fixed-model point overrides
        np.testing.assert_allclose(lam, 3.0, rtol=1e-5)  # τ on the second lane: its λ
        np.testing.assert_allclose(mu, 0.75, rtol=1e-5)  # δ = 0: μ = λ / (1 + λ)


def test_params_round_trip(tiny_artifact, tiny_bundle):
    bundle = tiny_bundle
    restored = artifact.load_params(os.path.join(tiny_artifact, "params"))
    jax.tree.map(np.testing.assert_array_equal, restored, jax.device_get(bundle.params))


def test_routing_function_is_training_route(tiny_bundle):
    bundle = tiny_bundle
    x = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    tau = np.float32([0.4, 0.5, 0.6, 0.7, 0.9, 0.95])
    fixed = np.int32([-1, -1, 2, -1, 0, -1])
    got = jax.jit(export.routing_function(bundle.spec))(bundle.params, bundle.lane_taus,
                                                        bundle.lane_lams, x, tau, fixed)
    lam = jax.jit(networks.lambda_of_tau)(bundle.lane_taus, bundle.lane_lams, tau)
    # by hand: the lanes' own λ at their τ, the end values beyond them
    np.testing.assert_allclose(np.asarray(lam)[[0, 1, 3, 4, 5]], [1, 1, 3, 2, 2], rtol=1e-5)
    want = jax.jit(networks.route, static_argnums=0)(bundle.spec, bundle.params, x, tau, lam)
    np.testing.assert_array_equal(got[4], lam)
    np.testing.assert_array_equal(got[0], np.where(fixed >= 0, fixed, want.model))
    np.testing.assert_allclose(got[1], np.asarray(lam) / (1 + np.asarray(lam)), rtol=1e-5)


def test_write_refuses_to_clobber(tmp_path, tiny_bundle, tiny_certification, tiny_cert_operating):
    out = str(tmp_path / "a")
    export.write_artifact(tiny_bundle, out, verify=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        export.write_artifact(tiny_bundle, out)
    certified = dataclasses.replace(tiny_bundle, operating=tiny_cert_operating,
                                    certification=tiny_certification)
    export.write_artifact(certified, out, overwrite=True, verify=False)
    assert _manifest(out)["certification"]["status"] == "certified"
    assert sorted(os.listdir(tmp_path)) == ["a"]  # no partial directories left behind


def test_overwrite_replaces_only_an_artifact(tmp_path, tiny_bundle):
    """Issue 26 item 8: `--overwrite` emptied a directory holding data.txt, and `--out=<the
    workdir>` wiped its results and checkpoints. Only an artifact is replaced; anything else at
    --out is refused, untouched, before any work."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.txt").write_text("precious")
    workdir = tmp_path / "workdir"
    (workdir / "checkpoints" / "40").mkdir(parents=True)
    (workdir / "results.json").write_text("{}")
    (workdir / "config.json").write_text("{}")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    fake = tmp_path / "fake"  # looks like an artifact, holds something more
    fake.mkdir()
    (fake / "manifest.json").write_text('{"format": "proteus-router"}')
    (fake / "mine.csv").write_text("1,2")
    for out, why in ((data, "data.txt"), (workdir, "checkpoints"), (a_file, "not a directory"),
                     (fake, "mine.csv")):
        before = sorted(str(p.relative_to(tmp_path)) for p in out.parent.rglob("*"))
        with pytest.raises(FileExistsError, match=f"not a router artifact .*{why}"):
            export.write_artifact(tiny_bundle, str(out), overwrite=True, verify=False)
        assert sorted(str(p.relative_to(tmp_path)) for p in out.parent.rglob("*")) == before
    art = str(tmp_path / "artifact")
    export.write_artifact(tiny_bundle, art, verify=False)
    first = _manifest(art)["manifest_sha256"]
    export.write_artifact(dataclasses.replace(tiny_bundle, training={"note": "second"}), art,
                          overwrite=True, verify=False)
    assert _manifest(art)["manifest_sha256"] != first and _manifest(art)["training"] == {
        "note": "second"}
    assert sorted(os.listdir(tmp_path)) == ["artifact", "data", "fake", "notes.txt", "workdir"]
    serving.Router.load(art, warmup=0)  # the replaced artifact loads


def test_an_artifact_that_cannot_route_text_is_refused(tmp_path, tiny_bundle):
    """Issue 26 item 10: the smoke artifact answered 500 (ĉ = inf) on ordinary questions. Its
    features probe passes (features like its training data), but text lands far away: here the
    training features sit at 100 with a tiny spread, so a question's hashing features standardise
    to ~-1e8 and overflow. Export refuses it and leaves nothing behind."""
    from proteus.encoders import get_encoder  # noqa: PLC0415 (text artifacts only)

    params = jax.tree.map(np.array, tiny_bundle.params)
    params["stats"]["mean"] = np.full(4, 100.0, np.float32)
    params["stats"]["scale"] = np.full(4, 1e-6, np.float32)
    far = dataclasses.replace(tiny_bundle, params=params,
                              encoder=get_encoder("hashing:dim=4").to_config())
    out = str(tmp_path / "far")
    with pytest.raises(artifact.ArtifactError, match=r"non-finite decisions .* of 9 ordinary"):
        export.write_artifact(far, out)
    assert not os.listdir(tmp_path)


def test_bad_bundles_are_rejected(tmp_path, tiny_bundle):
    with pytest.raises(ValueError, match="3 models"):
        export.write_artifact(dataclasses.replace(tiny_bundle, models=("a", "b")),
                              str(tmp_path / "x"))
    wrong_dim = {"id": "precomputed:dim=8", "kind": "precomputed", "dim": 8}
    with pytest.raises(ValueError, match="8-d features"):
        export.write_artifact(dataclasses.replace(tiny_bundle, encoder=wrong_dim),
                              str(tmp_path / "y"))
    nan_lams = np.float32([1.0, np.nan, 2.0])
    with pytest.raises(artifact.ArtifactError, match="lambda.lams must be finite"):
        export.write_artifact(dataclasses.replace(tiny_bundle, lane_lams=nan_lams),
                              str(tmp_path / "z"))
    nan_params = jax.tree.map(np.array, tiny_bundle.params)
    nan_params["policy"]["params"]["beta_params"]["kernel"][0, 0] = np.nan
    with pytest.raises(artifact.ArtifactError, match="parameter .* non-finite"):
        export.write_artifact(dataclasses.replace(tiny_bundle, params=nan_params),
                              str(tmp_path / "w"))
    assert not os.listdir(tmp_path)


def test_verify_artifact_catches_a_different_router(tiny_artifact, tiny_bundle):
    export.verify_artifact(tiny_artifact, tiny_bundle)  # the bundle it was written from
    other = jax.tree.map(lambda x: x * 1.5 + 0.1, tiny_bundle.params)  # another router
    with pytest.raises(AssertionError, match="disagrees"):
        export.verify_artifact(tiny_artifact, dataclasses.replace(tiny_bundle, params=other))


def test_read_operating(tmp_path, tiny_certification):
    path = str(tmp_path / "certification.json")
    with pytest.raises(FileNotFoundError, match="launch.evaluate"):
        export.read_operating(path)
    table = {"tau": [0.9, 0.6], "model": [-1, -1], "accuracy": [1.0, 0.5], "cost": [2.0, 1.0],
             "n_heldout": 200, "margin_z": 1.0}
    with open(path, "w") as f:
        json.dump({"operating": table, "certification": tiny_certification}, f)
    got, cert = export.read_operating(path)
    assert got == table and list(cert["route_to"]) == [1, 0, 0]
    with open(path, "w") as f:
        json.dump({"operating": {**table, "cost": [2.0]}}, f)
    with pytest.raises(ValueError, match="differ in length"):
        export.read_operating(path)
    with open(path, "w") as f:
        json.dump({"taus": [0.5]}, f)
    with pytest.raises(ValueError, match="no operating table"):
        export.read_operating(path)


def test_workdir_export_manifest(trained, text_artifact):
    m = _manifest(text_artifact)
    one = trained.one
    assert m["lambda"]["taus"] == [float(t) for t in np.asarray(one.lane_taus)]
    assert m["lambda"]["lams"] == [float(t) for t in np.asarray(one.duals.lam_avg)]
    assert m["lambda"]["lane_accuracy"] == [float(t) for t in np.asarray(one.duals.acc_avg)]
    assert m["operating"] == trained.operating
    assert m["feasible_tau"] == pytest.approx(dict(zip(
        ("min", "max"), operating.feasible_range(trained.operating, None), strict=True)))
    assert m["encoder"]["id"] == "hashing:dim=64,word=1-2,char=3-5,seed=0,v=1"
    assert m["models"] == list(trained.splits["test"].models) and m["feature_dim"] == 64
    t = m["training"]
    assert t["workdir"] == str(trained.workdir) and t["run"] == 0 and t["step"] > 0
    assert t["split_fingerprints"]["test"] == trained.splits["test"].fingerprint()
    assert len(t["data_fingerprint"]) == 16 and t["config"]["data"]["encoder"] == "hashing:dim=64"


def test_certified_workdir_export(certified_artifact):
    path, payload = certified_artifact
    m = _manifest(path)
    assert m["certification"]["status"] == "certified"
    assert m["certification"]["table"] == payload and m["operating"]
    certified = [t for t, ok in zip(payload["taus"], payload["feasible"], strict=True) if ok]
    assert m["feasible_tau"] == {"min": payload["taus"][0],
                                 "max": max(certified) if certified else None}
    assert m["fallback"] == payload["fallback"]
