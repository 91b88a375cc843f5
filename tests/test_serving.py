"""Serving: decisions equal training-time routing, τ resolution, input checks, load-time checks."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from proteus import operating
from proteus.pipeline import routing
from proteus.serving import artifact, server
from proteus.serving import router as serving
from tests.conftest import REPO_ROOT

pytest_plugins = ["tests.serving_fixtures"]


@pytest.fixture(scope="module")
def tiny_router(tiny_artifact) -> serving.Router:
    return serving.Router.load(tiny_artifact)


def test_decisions_equal_training_time_routing(trained, text_router):
    test = trained.splits["test"]
    taus = np.asarray(routing.eval_taus(trained.config, trained.one.lane_taus), np.float32)
    want = np.asarray(routing.route_split(trained.setup, trained.state, 0, test, taus).model)
    for t, tau in enumerate(taus):  # the exported function at the same (features, τ)
        got = text_router.run(test.features, np.full(test.n_queries, tau, np.float32))
        np.testing.assert_array_equal(got.model, want[t], err_msg=f"tau={tau}")
    # the full path, τ resolved to an operating point, equals evaluation's candidate routing
    choices, _ = routing.candidate_routes(trained.setup, trained.state, 0, test,
                                             trained.operating)
    for tau in (0.05, 0.5, 0.99):
        d = text_router.decide(test.features, tau)
        np.testing.assert_array_equal(d.model, choices[d.point[0]], err_msg=f"tau={tau}")
    d = text_router.decide(test.features, 0.5)
    texts = [str(q) for q in test.texts[:32]]
    routed = text_router.route(texts, 0.5)
    assert [r["model_index"] for r in routed] == d.model[:32].tolist()
    assert [r["model"] for r in routed] == [text_router.models[m] for m in d.model[:32]]


def test_certified_decisions_follow_the_table(trained, certified_artifact):
    path, payload = certified_artifact
    router = serving.Router.load(path)
    test = trained.splits["test"]
    want, _ = routing.candidate_routes(trained.setup, trained.state, 0, test,
                                          trained.operating)
    for tau, route_to, feasible in zip(payload["taus"], payload["route_to"], payload["feasible"],
                                       strict=True):
        d = router.decide(test.features, tau)
        j = route_to if feasible else 0
        assert d.point[0] == j and d.feasible[0] == feasible
        op = trained.operating["tau"][j]
        assert (np.isnan(d.operating_tau[0]) if op is None else d.operating_tau[0] == op)
        np.testing.assert_array_equal(d.model, want[j])


def test_uncertified_resolution_by_hand(tiny_router):
    # points (testing order): policy τ'=0.9 (0.86, 2e-4), "large" (0.84, 9e-4), policy τ'=0.6
    # (0.62, 1e-4), n=400, z=1: τ is feasible while τ + sqrt(τ(1 − τ)/400) <= 0.86
    lo, hi = tiny_router.policy.tau_range
    assert lo == 0.0 and hi + np.sqrt(hi * (1 - hi) / 400) == pytest.approx(0.86)
    cheap = tiny_router.resolve(0.59)  # 0.59 + 0.0246 <= 0.62: the cheapest point
    assert (cheap.operating_tau, cheap.point, cheap.feasible) == (0.6, 2, True)
    mid = tiny_router.resolve(0.7)  # 0.7 + 0.0229 > 0.62: the τ'=0.9 point (cheaper than large)
    assert (mid.operating_tau, mid.point, mid.operating_model) == (0.9, 0, -1)
    assert "uncertified" in mid.reason
    above = tiny_router.resolve(0.85)
    assert above.point == 0 and not above.feasible
    assert "infeasible" in above.reason and "best effort" in above.reason


def test_certified_resolution_by_hand(tiny_certified_artifact):
    router = serving.Router.load(tiny_certified_artifact, warmup=0)
    # see tiny_certification: τ <= 0.3 -> point 1 (τ'=0.6), up to 0.9 -> point 0 (τ'=0.9)
    assert [tuple(router.resolve(t)[1:4]) for t in (0.1, 0.3, 0.31, 0.9)] == [
        (0.6, 1, True), (0.6, 1, True), (0.9, 0, True), (0.9, 0, True)]
    above = router.resolve(0.95)
    assert tuple(above[1:4]) == (0.9, 0, False) and "above the certified grid" in above.reason
    assert router.policy.tau_range == (0.3, 0.9)
    refusing = serving.Router.load(tiny_certified_artifact, fallback="refuse", warmup=0)
    with pytest.raises(operating.InfeasibleTauError, match="refused") as err:
        refusing.resolve(0.95)
    assert err.value.point.tau == 0.95
    assert refusing.resolve(0.5).point == 0


@pytest.mark.parametrize("tau", [float("nan"), -0.01, 1.01, "0.9", True, None, float("inf")])
def test_invalid_tau_is_rejected(tiny_router, tau):
    with pytest.raises(ValueError, match="tau must be a number in"):
        tiny_router.resolve(tau)


def test_refuse_policy_raises(tiny_artifact):
    router = serving.Router.load(tiny_artifact, fallback="refuse", warmup=0)
    with pytest.raises(operating.InfeasibleTauError, match="no point reaches"):
        router.decide(np.zeros(4), 0.9)
    assert router.decide(np.zeros(4), 0.8).feasible.tolist() == [True]
    with pytest.raises(ValueError, match="fallback must be one of"):
        serving.Router.load(tiny_artifact, fallback="maybe", warmup=0)


def test_lambda_and_mu_by_hand(tiny_router):
    # zeroed policy output: μ = λ / (1 + λ); at the lanes λ is the lane's own [1, 3, 2]
    d = tiny_router.run(np.zeros((3, 4), np.float32), np.float32([0.5, 0.7, 0.8]))
    np.testing.assert_allclose(d.lam, [1.0, 3.0, 3.0 ** 0.5 * 2.0 ** 0.5], rtol=1e-3)
    np.testing.assert_allclose(d.mu, d.lam / (1 + d.lam), rtol=1e-5)
    np.testing.assert_allclose(d.mu[:2], [0.5, 0.75], rtol=1e-5)
    utility = d.mu[:, None] * d.p_hat - (1 - d.mu[:, None]) * d.c_hat / d.c_hat.max()
    assert d.model.shape == (3,) and d.p_hat.shape == d.c_hat.shape == (3, 3)
    assert np.all((d.p_hat > 0) & (d.p_hat < 1) & (d.c_hat > 0)) and np.isfinite(utility).all()


def test_route_features_and_records(tiny_router):
    x = np.random.default_rng(0).normal(size=(2, 4))
    routed = tiny_router.route(x, [0.55, 0.9])  # 0.55 + 0.0249 <= 0.62: point 2 (τ'=0.6)
    assert [r["tau"] for r in routed] == [0.55, 0.9]
    assert [r["feasible"] for r in routed] == [True, False]
    first = routed[0]
    schema = server.RouteDecisionModel.model_json_schema()["properties"]  # the HTTP docs
    assert set(first) == set(schema)
    lam = tiny_router.decide(x, [0.55, 0.9]).lam
    assert first["lambda"] == pytest.approx(float(lam[0])) and "lam" not in first
    assert set(first["p_hat"]) == {"small", "medium", "large"}
    assert first["model"] == tiny_router.models[first["model_index"]]
    assert first["operating_point"] == 2 and first["certified"] is False
    assert first["operating_tau"] == pytest.approx(0.6) and first["operating_model"] is None
    single = tiny_router.route(x[0], 0.55)[0]  # one [D] row (another bucket: equal to an ulp)
    assert single["model"] == first["model"] and single["mu"] == pytest.approx(first["mu"])


def test_feature_and_text_errors(tiny_router, text_router):
    for bad, match in [(np.zeros(3), "4 values per query"), (np.zeros((2, 5)), "4 values"),
                       ([np.nan, 0, 0, 0], "finite"), (["a", "b", "c", "d"], "precomputed")]:
        with pytest.raises(ValueError, match=match):
            tiny_router.route(bad, 0.6)
    with pytest.raises(ValueError, match="trained on precomputed features"):
        tiny_router.route("what is 2 + 2?", 0.6)
    with pytest.raises(ValueError, match="one number per query"):
        tiny_router.decide(np.zeros((2, 4)), [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="empty"):
        text_router.route(["fine", "  "], 0.5)
    assert text_router.accepts_text and not tiny_router.accepts_text
    with pytest.raises(ValueError, match="nothing to route: the list of queries is empty"):
        text_router.route([], 0.5)  # used to read as a features row of the wrong length


def test_an_empty_feature_batch_routes_to_no_decisions(tiny_router):
    """[0, D] features used to end in numpy's 'need at least one array to concatenate'."""
    assert tiny_router.route(np.zeros((0, 4), np.float32), 0.6) == []
    d = tiny_router.decide(np.zeros((0, 4), np.float32), np.zeros(0))
    assert d.model.shape == (0,) and d.p_hat.shape == (0, len(tiny_router.models))


def test_no_recompile_within_a_bucket(tiny_router):
    tiny_router.decide(np.zeros((3, 4)), 0.6)  # bucket 4
    size = tiny_router._fn._cache_size()
    tiny_router.decide(np.zeros((4, 4)), 0.7)
    tiny_router.decide(np.zeros((3, 4)), [0.5, 0.6, 0.9])
    assert tiny_router._fn._cache_size() == size


def test_large_batches_are_chunked(tiny_router, monkeypatch):
    x = np.random.default_rng(1).normal(size=(11, 4))
    whole = tiny_router.decide(x, 0.65)
    monkeypatch.setattr(serving, "MAX_BUCKET", 4)
    chunked = tiny_router.decide(x, 0.65)
    np.testing.assert_array_equal(chunked.model, whole.model)
    np.testing.assert_allclose(chunked.p_hat, whole.p_hat, rtol=1e-6)


def test_batch_invariance_benchmark(tiny_router, tiny_artifact):
    """benchmarks/batch_invariance.py: routed in one batch of all rows, every decision is the
    whole batch's (0 differences, by construction); the count is rows x τ' x batch sizes; an
    artifact without held-out rows is probed on N(0, 1) rows of its feature dimension."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import batch_invariance  # noqa: PLC0415 (a benchmark script)
    finally:
        sys.path.pop(0)
    x = batch_invariance.feature_rows(tiny_router, 6)
    assert x.shape == (6, 4) and x.dtype == np.float32  # tiny_artifact stores no held-out rows
    same = batch_invariance.compare(tiny_router, x, taus=np.array([0.6, 0.8]), batches=(6,))
    assert same == {"decisions": 12, "model_differs": 0, "max_abs_mu": 0.0, "max_abs_p_hat": 0.0}
    split = batch_invariance.compare(tiny_router, x, taus=np.array([0.6]), batches=(1, 2, 4))
    assert split["decisions"] == 18 and split["max_abs_mu"] < 1e-5


def test_info(tiny_router):
    info = tiny_router.info()
    assert [m["name"] for m in info["models"]] == ["small", "medium", "large"]
    assert info["models"][2]["price"] == {"usd_per_input_token": 1e-5, "usd_per_output_token": 3e-5}
    assert info["feasible_tau"] == pytest.approx({"min": 0.0, "max": 0.84175}, abs=1e-5)
    assert (info["certified"], info["fallback"], info["feature_dim"]) == (False, "best_effort", 4)
    assert info["promise"] is None  # uncertified: nothing is promised


def test_info_states_the_certified_promise(tiny_certified_artifact):
    info = serving.Router.load(tiny_certified_artifact, warmup=0).info()
    assert info["certified"] and info["promise"] == "P(expected accuracy < τ) <= 0.05"


def _copy(src: str, dst: str) -> str:
    shutil.copytree(src, dst)
    return dst


def _rewrite(path: str, manifest: dict) -> None:
    """Write `manifest` with a fresh digest (as a careful editor would: gets past the digest)."""
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(artifact.seal(manifest, path), f)


def test_load_time_checks(tiny_artifact, tmp_path):
    with pytest.raises(artifact.ArtifactError, match="not found"):
        serving.Router.load(str(tmp_path / "nothing"))
    bad_dim = _copy(tiny_artifact, str(tmp_path / "dim"))
    manifest = artifact.read_manifest(bad_dim)
    _rewrite(bad_dim, {**manifest, "feature_dim": 5})
    with pytest.raises(artifact.ArtifactError, match="feature_dim=5"):
        serving.Router.load(bad_dim)
    _rewrite(bad_dim, {**manifest, "format_version": 99})
    with pytest.raises(artifact.ArtifactError, match="format"):
        serving.Router.load(bad_dim)
    old_convention = {**manifest["function"], "calling_convention_version": 1}
    _rewrite(bad_dim, {**manifest, "function": old_convention})
    with pytest.raises(artifact.ArtifactError, match="calling convention 1"):
        serving.Router.load(bad_dim)
    _rewrite(bad_dim, {k: v for k, v in manifest.items() if k != "lambda"})
    with pytest.raises(artifact.ArtifactError, match="missing \\['lambda'\\]"):
        serving.Router.load(bad_dim)
    tampered = _copy(tiny_artifact, str(tmp_path / "fn"))
    with open(os.path.join(tampered, "route.jaxexport"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(artifact.ArtifactError, match="route.jaxexport has .* bytes"):
        serving.Router.load(tampered)


def test_feasible_range_and_check_tau():
    # z = 0: feasible up to the best held-out accuracy; z = 2, n = 100: the smaller root of
    # 1.04 τ² − 1.64 τ + 0.64 = 0, i.e. (1.64 − sqrt(0.0272)) / 2.08 = 0.70917
    points = {"accuracy": [0.8, 0.6], "n_heldout": 100, "margin_z": 0.0}
    assert operating.feasible_range(points, None) == pytest.approx((0.0, 0.8))
    lo, hi = operating.feasible_range({**points, "margin_z": 2.0}, None)
    assert hi == pytest.approx(0.70917, abs=1e-5)
    assert hi + 0.2 * np.sqrt(hi * (1 - hi)) == pytest.approx(0.8)
    table = {"taus": [0.2, 0.4, 0.6], "feasible": [True, True, False]}
    assert operating.feasible_range(points, table) == (0.2, 0.4)
    assert operating.feasible_range(points, {**table, "feasible": [False] * 3}) == (0.2, None)
    assert operating.check_tau(np.float32(0.5)) == 0.5 and operating.check_tau(1) == 1.0


def test_serving_needs_no_trainer(tiny_artifact):
    code = ("import sys, numpy as np; from proteus.serving import Router; "
            f"r = Router.load({tiny_artifact!r}); print(r.route(np.zeros(4), 0.6)[0]['model']); "
            "bad = [m for m in ('flax', 'optax', 'experiments', 'proteus.training.train', "
            "'proteus.training.loop', 'proteus.training.networks', 'pandas') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] in ("small", "medium", "large") and out[1] == "[]"


def test_serving_imports_nothing_of_training_or_data_loading(tiny_text_artifact):
    """`import proteus.serving` / `proteus.serving.server` load no data loader, optimiser or Orbax;
    loading a text artifact adds Orbax (the parameters are an Orbax pytree) and nothing else."""
    code = ("import json, sys\n"
            "import proteus.serving.server, proteus.serving\n"
            "heavy = {'pandas', 'pyarrow', 'datasets', 'optax', 'orbax'}\n"
            "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
            "at_import = loaded()\n"
            f"proteus.serving.Router.load({tiny_text_artifact!r}, warmup=0)\n"
            "print(json.dumps([at_import, loaded()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    at_import, after_load = json.loads(out.strip().splitlines()[-1])
    assert at_import == []
    assert after_load == ["orbax"]
