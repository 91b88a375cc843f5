"""The library API (`proteus.pipeline`): load data -> train -> evaluate -> export -> route in five
calls with no workdir, on the smoke config; its callbacks; the library's layering."""

from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pytest

from experiments.configs import quickstart
from proteus import operating, pipeline
from proteus.pipeline import routing
from proteus.serving import Router
from proteus.training import checkpoint, export
from tests import core_helpers
from tests.conftest import REPO_ROOT


def _config():
    """The smoke config on 2,000 synthetic queries, 64-d hashed text: the shapes of the serving
    fixtures' run (tests/serving_fixtures.py), so their compiled programs are shared (the
    suite's persistent compile cache)."""
    config = quickstart.get_config("smoke")
    config.data.source = "synthetic:routerbench?n=2000&seed=0&signal=0.9"
    config.data.encoder = "hashing:dim=64"
    return config


@pytest.fixture(scope="module")
def five_calls(tmp_path_factory):
    """The five calls of `proteus.pipeline`'s docstring, with three callbacks attached."""
    root = tmp_path_factory.mktemp("api")
    config = _config()
    history, seen = pipeline.History(), []
    ckpt = checkpoint.CheckpointCallback(str(root / "ckpt"), every_steps=20, max_to_keep=2)
    out = str(root / "router")

    splits = pipeline.load_splits(config)                                            # 1
    trained = pipeline.train(config, splits, progress=False, callbacks=[             # 2
        ckpt, history, lambda phase, step, metrics: seen.append((phase, step))])
    evaluation = pipeline.evaluate(trained)                                          # 3
    manifest = pipeline.export(trained, evaluation, out)                             # 4
    test = splits["test"]
    routed = Router.load(out).route(test.features[:64], tau=0.8)                     # 5

    return dict(root=root, config=config, splits=splits, trained=trained,
                evaluation=evaluation, manifest=manifest, routed=routed, out=out,
                history=history, seen=seen)


def test_the_five_calls_route_as_the_trained_run(five_calls):
    trained, evaluation, routed = five_calls["trained"], five_calls["evaluation"], \
        five_calls["routed"]
    test = five_calls["splits"]["test"]
    assert len(routed) == 64 and routed[0]["certified"]
    # the artifact's decision is the evaluation's routing at the operating point τ resolves to
    point = operating.OperatingPolicy(evaluation.operating, evaluation.certification,
                                      trained.config.certify.fallback, test.models).resolve(0.8)
    assert [r["operating_point"] for r in routed] == [point.point] * 64
    choices, _ = routing.candidate_routes(trained.setup, trained.state, 0, test.subset(
        np.arange(64)), evaluation.operating)
    assert [r["model_index"] for r in routed] == choices[point.point].tolist()
    # the results are the DESIGN.md contract with every router, and nothing went to a workdir
    assert {"proteus", "proteus_certified", "carrot", "oracle"} <= set(evaluation.results[
        "routers"])
    assert sorted(p.name for p in five_calls["root"].iterdir()) == ["ckpt", "router"]


def test_an_export_from_memory_equals_one_from_certification_json(five_calls, tmp_path):
    """What the workdir layer writes and `launch.export` reads back is what `evaluate` returned,
    so both exports hold the same operating points and certificate."""
    evaluation = five_calls["evaluation"]
    path = tmp_path / "certification.json"
    path.write_text(json.dumps(evaluation.certificate(), allow_nan=False))
    operating_table, certification = export.read_operating(str(path))
    assert (operating_table, certification) == (evaluation.operating, evaluation.certification)
    manifest = five_calls["manifest"]
    assert manifest["operating"] == evaluation.operating
    assert manifest["certification"] == {"status": "certified", "table": certification}
    assert manifest["training"]["workdir"] == ""  # no workdir behind it


def test_callbacks_see_every_chunk_and_a_checkpoint_resumes(five_calls):
    config, trained = five_calls["config"], five_calls["trained"]
    records = five_calls["history"].records
    chunk = config.train.chunk_size
    steps = [r["step"] for r in records]
    assert steps == list(range(chunk, steps[-1] + 1, chunk))
    assert steps[-1] == int(trained.state.step[0])
    assert [(r["phase"], r["step"]) for r in records] == five_calls["seen"]
    assert {"val_loss", "bce"} <= set(records[0]) and {"lam", "lam_avg"} <= set(records[-1])
    # training again on the same checkpoints resumes the finished run: nothing more to do
    again_seen = []
    ckpt = checkpoint.CheckpointCallback(str(five_calls["root"] / "ckpt"), every_steps=20,
                                         max_to_keep=2)
    again = pipeline.train(config, five_calls["splits"], progress=False,
                           callbacks=[ckpt, lambda *rec: again_seen.append(rec)])
    assert again_seen == []
    assert core_helpers.tree_diff(again.state, trained.state) == []


def test_the_library_has_no_flags_and_no_experiments():
    """`proteus/` is the pure library: it imports no absl flags or app and nothing of
    `experiments` (the layer above it)."""
    banned = ("experiments", "absl.flags", "absl.app", "ml_collections.config_flags")
    offenders = []
    for path in sorted(pathlib.Path(REPO_ROOT, "proteus").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            offenders += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names
                          if name.split(".")[0] == "experiments" or name in banned]
    assert offenders == []
