"""Export helpers checked by hand, without a training run or a written artifact: the manifest of a
bundle, which paths an overwrite may replace, the text probe, and the check of a loaded routing
function against its manifest (a tiny hand-made `jax.export` function)."""

import hashlib
import json
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import runs
from proteus.environment import library_versions
from proteus.serving import artifact
from proteus.training import destination, export, networks
from proteus.types import Decisions

# ------------------------------------------------------------------ build_manifest

SPEC = networks.RouterSpec(n_models=2, feature_dim=3, hidden=4, policy_hidden=4,
                           use_tau_input=True, use_lambda_input=True, static_cost=False, folds=1,
                           groups=0)
# the policy at τ' 0.9 (accuracy 0.8) and the fixed model "big" (0.5); z = 0, so the uncertified
# feasible τ end exactly at the best accuracy, 0.8 (τ + 0·s.e. <= 0.8)
OPERATING = {"tau": [0.9, None], "model": [-1, 1], "accuracy": [0.8, 0.5], "cost": [2e-4, 9e-4],
             "n_heldout": 100, "margin_z": 0.0}
BLOB = b"abc"  # its sha256 is the FIPS 180-2 test vector below
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _bundle(**changes) -> export.RouterBundle:
    """A bundle whose numbers are exact in float32 (the manifest stores them as float32)."""
    fields = dict(spec=SPEC, params={"stats": {"mean_cost": np.asarray([0.125, 0.5])}},
                  lane_taus=np.asarray([0.5, 0.75]), lane_lams=np.asarray([1.0, 3.0]),
                  lane_accuracy=np.asarray([0.5, 0.625]), models=("small", "big"),
                  encoder={"id": "precomputed:dim=3", "kind": "precomputed", "dim": 3},
                  operating=OPERATING, prices={"big": (1e-6, 2e-6)}, training={"step": 7})
    return export.RouterBundle(**{**fields, **changes})


def test_build_manifest_of_an_uncertified_bundle_with_tasks_and_lineage():
    exported = types.SimpleNamespace(platforms=("cpu", "cuda"), calling_convention_version=9)
    bundle = _bundle(spec=SPEC._replace(tasks=2), tasks=("math", "code"),
                     lineage=({"parent": "a1", "added": ["big"]},))
    got = export.build_manifest(bundle, exported, BLOB)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", got.pop("created"))
    assert got == {
        "format": "proteus-router", "format_version": 2,
        "models": ["small", "big"],
        "prices": {"big": {"usd_per_input_token": 1e-6, "usd_per_output_token": 2e-6}},
        "mean_cost_usd": [0.125, 0.5],
        "encoder": {"id": "precomputed:dim=3", "kind": "precomputed", "dim": 3},
        "feature_dim": 3, "spec": SPEC._replace(tasks=2)._asdict(), "tasks": ["math", "code"],
        "lambda": {"taus": [0.5, 0.75], "lams": [1.0, 3.0], "lane_accuracy": [0.5, 0.625]},
        "operating": OPERATING,
        "certification": {"status": "uncertified", "table": None},
        "feasible_tau": {"min": 0.0, "max": 0.8}, "fallback": "best_effort",
        "function": {"file": "route.jaxexport", "sha256": ABC_SHA256,
                     "platforms": ["cpu", "cuda"], "calling_convention_version": 9,
                     "inputs": ["params", "lane_taus[K]", "lane_lams[K]", "features[b,D]",
                                "tau[b]", "fixed[b]", "task[b]"],  # a task prior's 7th input
                     "outputs": ["model[b]", "mu[b]", "p_hat[b,M]", "c_hat[b,M]", "lam[b]"]},
        "params": {"dir": "params"}, "training": {"step": 7}, "versions": library_versions(),
        "lineage": [{"parent": "a1", "added": ["big"]}]}
    assert list(got)[-3:] == ["training", "versions", "lineage"]  # the documented key order


def test_build_manifest_of_a_certified_bundle():
    """Certified: feasible τ from the grid's lowest τ to its highest certified one, the table's
    fallback; no task input, and no lineage or heldout keys."""
    cert = {"taus": [0.3, 0.6, 0.9], "feasible": [True, True, False], "fallback": "refuse"}
    exported = types.SimpleNamespace(platforms=("cpu",), calling_convention_version=9)
    got = export.build_manifest(_bundle(certification=cert), exported, BLOB)
    assert got["certification"] == {"status": "certified", "table": cert}
    assert got["feasible_tau"] == {"min": 0.3, "max": 0.6}
    assert got["fallback"] == "refuse"
    assert got["function"]["inputs"] == list(export.FUNCTION_INPUTS)
    assert got["function"]["platforms"] == ["cpu"] and got["tasks"] == []
    assert "lineage" not in got and "heldout" not in got


# ------------------------------------------------------------------ check_replaceable


def _artifact_dir(path, manifest: str = '{"format": "proteus-router"}'):
    path.mkdir()
    (path / "params").mkdir()
    (path / "manifest.json").write_text(manifest)
    return path


def test_check_replaceable_accepts_only_an_artifact_directory(tmp_path):
    ok = _artifact_dir(tmp_path / "ok")
    (ok / "route.jaxexport").write_bytes(b"")
    (ok / "heldout").mkdir()
    assert destination.check_replaceable(str(ok)) is None  # only the artifact's own entries


@pytest.mark.parametrize("make, why", [
    (lambda p: p.write_text("x"), "it is not a directory"),
    (lambda p: os.symlink(_artifact_dir(p.with_name("real")), p), "it is not a directory"),
    (lambda p: (_artifact_dir(p) / "notes.txt").write_text("x"),
     r"it holds \['notes.txt'\], which an artifact does not"),
    (lambda p: p.mkdir(), "it has no manifest.json"),
    (lambda p: _artifact_dir(p, '{"format": "other"}'),
     "its manifest.json is not a 'proteus-router' manifest"),
    (lambda p: _artifact_dir(p, "{not json"),
     "its manifest.json is not a 'proteus-router' manifest"),
    (lambda p: _artifact_dir(p, '["proteus-router"]'),  # a list: no .get
     "its manifest.json is not a 'proteus-router' manifest"),
])
def test_check_replaceable_refuses_anything_else(tmp_path, make, why):
    out = tmp_path / "out"
    make(out)
    with pytest.raises(FileExistsError, match=f"^{re.escape(str(out))} exists and is not a "
                                              rf"router artifact \({why}\); --overwrite only"):
        destination.check_replaceable(str(out))


def test_check_replaceable_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileExistsError, match=r"\(it is not a directory\)"):
        destination.check_replaceable(str(tmp_path / "absent"))


def test_check_out_allows_a_new_path_or_a_replaceable_artifact(tmp_path):
    assert destination.check_out(str(tmp_path / "new"), overwrite=False) is None
    old = _artifact_dir(tmp_path / "old")
    with pytest.raises(FileExistsError, match=rf"^{re.escape(str(old))} exists; pass "
                                              r"overwrite=True \(--overwrite\)"):
        destination.check_out(str(old), overwrite=False)
    assert destination.check_out(str(old), overwrite=True) is None
    (old / "notes.txt").write_text("x")  # no longer only an artifact: not replaced
    with pytest.raises(FileExistsError, match="is not a router artifact"):
        destination.check_out(str(old), overwrite=True)


def test_runs_export_refuses_an_existing_out_before_loading_the_workdir(tmp_path, monkeypatch):
    def load_trained(workdir):  # loading data and checkpoints is the slow part it must skip
        raise AssertionError("the workdir was loaded")

    monkeypatch.setattr(runs, "load_trained", load_trained)
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        runs.export(str(tmp_path / "workdir"), str(_artifact_dir(tmp_path / "art")))


# ------------------------------------------------------------------ probe_texts


class _ProbeRouter:
    """A stand-in router: two operating points (the policy at τ' 0.9, fixed model 1 with τ' NaN);
    a text encodes to [its length]; μ is inf for the texts in `bad_at_fixed` at the fixed point."""

    path, manifest = "/art", {"encoder": {"id": "hashing:dim=1"}}

    def __init__(self, bad_at_fixed=()):
        self.policy = types.SimpleNamespace(taus=np.asarray([0.9, np.nan]),
                                            models=np.asarray([-1, 1]))
        self.bad, self.calls = set(bad_at_fixed), []

    def encode(self, texts):
        return np.asarray([[len(t)] for t in texts], np.float32)

    def run(self, x, taus, fixed):
        self.calls.append((x.tolist(), taus.tolist(), fixed.tolist()))
        mu = np.asarray([np.inf if f == 1 and int(n) in self.bad else 0.5
                         for (n,), f in zip(x, fixed, strict=True)])
        b = len(x)
        return Decisions(model=np.zeros(b, np.int32), mu=mu, p_hat=np.zeros((b, 2)),
                         c_hat=np.zeros((b, 2)), lam=np.ones(b))


def test_probe_texts_routes_every_text_at_every_point():
    router = _ProbeRouter()
    assert export.probe_texts(router, ["a", "bb", "ccc"]) is None
    # by hand: 3 texts x 2 points, point-major; the fixed point's NaN τ' is routed at 0
    assert router.calls == [([[1.0], [2.0], [3.0], [1.0], [2.0], [3.0]],
                             [pytest.approx(0.9), pytest.approx(0.9), pytest.approx(0.9),
                              0.0, 0.0, 0.0],
                             [-1, -1, -1, 1, 1, 1])]
    export.probe_texts(router)  # the default probe: nine ordinary questions at both points
    assert len(export.PROBE_TEXTS) == 9 and len(router.calls[1][0]) == 18


def test_probe_texts_names_the_questions_with_non_finite_decisions():
    router = _ProbeRouter(bad_at_fixed={2})  # "bb" at the fixed point only
    with pytest.raises(artifact.ArtifactError,
                       match=r"^/art: the router answers non-finite decisions \(ĉ, p̂ or μ\) for "
                             r"1 of 3 ordinary questions \(e.g. 'bb'\): the features its "
                             r"encoder 'hashing:dim=1' gives"):
        export.probe_texts(router, ["a", "bb", "ccc"])


# ------------------------------------------------------------------ load_function


@pytest.fixture(scope="module")
def tiny_function(tmp_path_factory):
    """(artifact dir, manifest) of a hand-made six-input routing function: D=3 features, M=2
    models, K=2 lanes; p_hat = features @ w."""

    def fn(params, lane_taus, lane_lams, features, tau, fixed):
        p_hat = features @ params["w"]
        return fixed, tau, p_hat, p_hat, tau

    (b,) = jax.export.symbolic_shape("b")
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    exported = jax.export.export(jax.jit(fn), platforms=("cpu",))(
        {"w": f32(3, 2)}, f32(2), f32(2), f32(b, 3), f32(b), jax.ShapeDtypeStruct((b,), jnp.int32))
    blob = bytes(exported.serialize())
    path = tmp_path_factory.mktemp("function")
    (path / "route.jaxexport").write_bytes(blob)
    manifest = {"function": {"file": "route.jaxexport", "sha256": hashlib.sha256(blob).hexdigest(),
                             "calling_convention_version": exported.calling_convention_version},
                "feature_dim": 3, "models": ["a", "b"], "lambda": {"taus": [0.5, 0.9]}}
    return str(path), manifest


def test_load_function_returns_the_checked_function(tiny_function):
    path, manifest = tiny_function
    exported = artifact.load_function(path, manifest)
    w = np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    out = exported.call({"w": w}, np.zeros(2, np.float32), np.zeros(2, np.float32),
                        np.asarray([[1.0, 2.0, 3.0]], np.float32), np.asarray([0.5], np.float32),
                        np.asarray([-1], np.int32))
    np.testing.assert_allclose(out[2], [[4.0, 5.0]])  # [1, 2, 3] @ w = [1 + 3, 2 + 3]


def _changed(manifest: dict, **changes) -> dict:
    return json.loads(json.dumps({**manifest, **changes}))


@pytest.mark.parametrize("changes, match", [
    ({"function": {"sha256": "0" * 64}},
     r"route.jaxexport does not match the manifest's sha256"),
    ({"function": {"calling_convention_version": 10**6}},
     r"uses jax.export calling convention 1000000; this jax .* reads \d+\.\.\d+: re-export"),
    ({"tasks": ["math"]},
     r"the routing function takes 6 inputs; the manifest \(1 tasks\) needs 7"),
    ({"feature_dim": 4}, "the manifest says feature_dim=4, the routing function takes 3-d"),
    ({"models": ["a", "b", "c"]},
     r"the routing function expects 2 models, \(2,\) lanes; the manifest has 3, 2"),
    ({"lambda": {"taus": [0.5, 0.7, 0.9]}},
     r"the routing function expects 2 models, \(2,\) lanes; the manifest has 2, 3"),
])
def test_load_function_refuses_a_function_unlike_its_manifest(tiny_function, changes, match):
    path, manifest = tiny_function
    if "function" in changes:
        changes = {"function": {**manifest["function"], **changes["function"]}}
    with pytest.raises(artifact.ArtifactError, match=f"^{re.escape(path)}: .*{match}"):
        artifact.load_function(path, _changed(manifest, **changes))


def test_load_function_refuses_another_platforms_function(tiny_function, monkeypatch):
    path, manifest = tiny_function
    monkeypatch.setattr(artifact, "lowering_platform", lambda: "tpu")
    with pytest.raises(artifact.ArtifactError, match=r"exported for \('cpu',\), not for this "
                                                     r"machine's 'tpu'; re-export with it"):
        artifact.load_function(path, manifest)


def test_platforms_are_checked_before_any_export_work():
    assert export.platforms_known(("cpu",)) and export.platforms_known(("cpu", "cuda", "tpu"))
    assert not export.platforms_known(()) and not export.platforms_known(("cpu", "gpu"))
    export.check_platforms(export.DEFAULT_PLATFORMS)
    with pytest.raises(ValueError, match=r"^platforms \['gpu'\]: give one or more of \['cpu', "):
        export.check_platforms(["gpu"])
