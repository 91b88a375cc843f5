"""Fixtures shared by the export / serving tests: `pytest_plugins = ["tests.serving_fixtures"]`.

`trained`: ONE smoke training run per run of the suite (synthetic data, hashing text encoder),
restored through `runs.load_trained` as the exporter does; under pytest-xdist the first worker
that needs it trains it and the other restores it. Artifacts are exported from it and from a
tiny hand-built router whose numbers the tests check by hand.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types

import filelock
import jax
import numpy as np
import pytest

from experiments import runs
from experiments.configs import quickstart
from proteus import pipeline, serving
from proteus.operating import certificate as calibrate
from proteus.training import export, networks

# The operating points `tiny_certification` certifies: policy τ'=0.9 (always right, cost 2) and
# τ'=0.6 (right half the time, cost 1), in testing order.
TINY_CERT_OPERATING = {"tau": [0.9, 0.6], "model": [-1, -1], "accuracy": [1.0, 0.5],
                       "cost": [2.0, 1.0], "n_heldout": 200, "margin_z": 1.0}
TINY_PRICES = {"small": (1e-7, 2e-7), "medium": (1e-6, 2e-6), "large": (1e-5, 3e-5)}


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> types.SimpleNamespace:
    """A finished smoke workdir (read-only: shared by the suite's processes) and what
    `runs.load_trained` restores from it (`run`: the `pipeline.Trained`; its fields are also
    attributes here). `root`: this process's own directory for what tests derive from it."""
    root = tmp_path_factory.mktemp("serving")
    # Under pytest-xdist the parent of a worker's base temp is this run's, shared by its workers
    # (in a plain run the parent outlives the run: its own base temp then); the lock makes the
    # first worker train and the other wait for it.
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "serving_shared"
    shared.mkdir(exist_ok=True)
    workdir = shared / "workdir"
    with filelock.FileLock(str(shared / "train.lock")):
        if not (workdir / "results.json").exists():
            config = quickstart.get_config("smoke")
            config.data.source = "synthetic:routerbench?n=2000&seed=0&signal=0.9"
            config.data.encoder = "hashing:dim=64"
            config.data.cache_dir = str(shared / "feature_cache")
            workdir.mkdir(exist_ok=True)
            runs.evaluate(config, str(workdir), progress=False, baselines=False)
    run = runs.load_trained(str(workdir))
    operating, certification = export.read_operating(str(workdir / "certification.json"))
    return types.SimpleNamespace(root=root, workdir=workdir, run=run, config=run.config,
                                 splits=run.splits, setup=run.setup, state=run.state,
                                 one=run.run(0), operating=operating, certification=certification)


@pytest.fixture(scope="session")
def text_artifact(trained) -> str:
    """Uncertified artifact of the trained run (hashing encoder: text queries work)."""
    bundle = pipeline.router_bundle(trained.run, trained.operating, None,
                                    workdir=str(trained.workdir))
    out = str(trained.root / "artifact_text")
    export.write_artifact(bundle, out)
    return out


@pytest.fixture(scope="session")
def text_router(text_artifact) -> serving.Router:
    return serving.Router.load(text_artifact)


@pytest.fixture(scope="session")
def certified_artifact(trained) -> tuple[str, dict]:
    """(artifact, certification table): the full `launch.export` path, certified."""
    out = str(trained.root / "artifact_certified")
    runs.export(str(trained.workdir), out)
    return out, trained.certification


@pytest.fixture(scope="session")
def tiny_bundle() -> export.RouterBundle:
    """3 models, 4 precomputed features; lanes τ [0.5, 0.7, 0.9], λ [1, 3, 2], lane accuracy
    [0.55, 0.72, 0.85]. The policy's output kernel is zeroed, so its correction δ is 0 and the
    quality preference is exactly the plug-in prior μ = λ / (1 + λ): checkable by hand.

    Operating points (testing order, held-out n=400, z=1): the policy at τ'=0.9 (accuracy 0.86,
    cost 2e-4), fixed model "large" (0.84, 9e-4), the policy at τ'=0.6 (0.62, 1e-4). By hand:
    τ <= 0.5956 (0.62 − 1 s.e.) -> point 2; then up to 0.8426 -> point 0 (cheaper than "large");
    above -> infeasible, best effort at point 0."""
    spec = networks.RouterSpec(n_models=3, feature_dim=4, hidden=8, policy_hidden=8,
                               use_tau_input=True, use_lambda_input=True, static_cost=False,
                               folds=1, groups=0)
    rng = np.random.default_rng(0)
    stats = networks.data_stats(rng.normal(size=(64, 4)),
                                rng.uniform(1e-4, 1e-3, (64, 3)) * [1.0, 3.0, 9.0])
    params = jax.jit(networks.init_params, static_argnums=0)(spec, jax.random.key(0), stats)
    head = params["policy"]["params"]["beta_params"]
    head["kernel"] = jax.numpy.zeros_like(head["kernel"])
    return export.RouterBundle(
        spec=spec, params=params, lane_taus=np.asarray([0.5, 0.7, 0.9], np.float32),
        lane_lams=np.asarray([1.0, 3.0, 2.0], np.float32),
        lane_accuracy=np.asarray([0.55, 0.72, 0.85], np.float32),
        models=("small", "medium", "large"),
        encoder={"id": "precomputed:dim=4", "kind": "precomputed", "dim": 4},
        operating={"tau": [0.9, None, 0.6], "model": [-1, 2, -1], "accuracy": [0.86, 0.84, 0.62],
                   "cost": [2e-4, 9e-4, 1e-4], "n_heldout": 400, "margin_z": 1.0},
        prices=TINY_PRICES, training={"note": "hand-built"})


@pytest.fixture(scope="session")
def tiny_certification() -> dict:
    """2 operating points, 200 calibration queries: point 0 (τ'=0.9) always right at cost 2,
    point 1 (τ'=0.6) right half the time at cost 1; certified on τ grid [0.3, 0.6, 0.9].

    By hand: point 0 (accuracy 1) is certified for every grid τ; point 1 (accuracy 0.5) only for
    τ=0.3, where it is the cheaper one. So τ <= 0.3 -> point 1, 0.3 < τ <= 0.9 -> point 0, and
    τ > 0.9 is above the grid: infeasible.
    """
    scores = np.stack([np.ones(200), np.tile([0.0, 1.0], 100)])
    costs = np.stack([np.full(200, 2.0), np.full(200, 1.0)])
    table = calibrate.certify(scores, costs, [0.3, 0.6, 0.9], delta=0.05)
    return json.loads(json.dumps(table.to_dict()))  # as a JSON file holds it (lists)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_bundle) -> str:
    out = str(tmp_path_factory.mktemp("tiny") / "artifact")
    export.write_artifact(tiny_bundle, out, verify=False)  # verify_artifact has its own test
    return out


@pytest.fixture(scope="session")
def tiny_lane_artifact(tmp_path_factory, tiny_bundle) -> str:
    """The tiny router with one policy point per lane, at the lanes' own accuracy (n huge, z 0):
    τ resolves to the cheapest lane whose accuracy reaches it (the online tests' knob)."""
    out = str(tmp_path_factory.mktemp("tiny_lanes") / "artifact")
    operating = {"tau": [0.9, 0.7, 0.5], "model": [-1, -1, -1], "accuracy": [0.85, 0.72, 0.55],
                 "cost": [3e-4, 2e-4, 1e-4], "n_heldout": 10**6, "margin_z": 0.0}
    export.write_artifact(dataclasses.replace(tiny_bundle, operating=operating), out,
                          verify=False)
    return out


@pytest.fixture(scope="session")
def tiny_fixed_point_artifact(tmp_path_factory, tiny_bundle) -> str:
    """The tiny router whose only point feasible at τ = 0.8 is the fixed model "large" (index
    2); the policy at τ' 0.6 is the other point."""
    out = str(tmp_path_factory.mktemp("tiny_fixed_point") / "artifact")
    operating = {"tau": [None, 0.6], "model": [2, -1], "accuracy": [0.95, 0.62],
                 "cost": [9e-4, 1e-4], "n_heldout": 400, "margin_z": 1.0}
    export.write_artifact(dataclasses.replace(tiny_bundle, operating=operating), out,
                          verify=False)
    return out


@pytest.fixture(scope="session")
def tiny_cert_operating() -> dict:
    """`TINY_CERT_OPERATING`, for test modules (importing this plugin module would re-import it)."""
    return TINY_CERT_OPERATING


@pytest.fixture(scope="session")
def tiny_certified_artifact(tmp_path_factory, tiny_bundle, tiny_certification) -> str:
    out = str(tmp_path_factory.mktemp("tiny_cert") / "artifact")
    bundle = dataclasses.replace(tiny_bundle, operating=TINY_CERT_OPERATING,
                                 certification=tiny_certification)
    export.write_artifact(bundle, out, verify=False)
    return out


@pytest.fixture(scope="session")
def tiny_text_artifact(tmp_path_factory, tiny_bundle) -> str:
    """The tiny router with a 4-d hashing text encoder: text queries without a training run."""
    from proteus.encoders import get_encoder  # noqa: PLC0415 (text artifacts only)

    out = str(tmp_path_factory.mktemp("tiny_text") / "artifact")
    bundle = dataclasses.replace(tiny_bundle, encoder=get_encoder("hashing:dim=4").to_config())
    export.write_artifact(bundle, out, verify=False)
    return out

