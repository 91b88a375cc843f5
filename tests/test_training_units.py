"""Hand-checked unit tests of small proteus.training helpers that have no natural test module."""

import dataclasses
import json

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.serving import artifact
from proteus.training import reopen

MODELS = ("small", "large")
PRICES = {"small": (1e-7, 2e-7), "large": (3e-6, 6e-6)}


def _rows(split: str, n: int, start: int) -> RoutingDataset:
    """n rows of 2 models, every number distinct, so a row read back out of place shows."""
    ids = np.arange(start, start + n)
    return RoutingDataset(
        name=f"toy:{split}", models=MODELS,
        scores=np.stack([ids % 2, 1 - ids % 2], axis=1).astype(np.float32),
        costs=np.stack([ids * 1e-4, ids * 1e-3], axis=1).astype(np.float32),
        query_ids=np.array([f"q{i}" for i in ids]), tasks=np.array(["math", ""] * n)[:n],
        texts=np.array([f"prompt {i} é" for i in ids], object),
        features=np.stack([ids, -ids], axis=1).astype(np.float32), prices=PRICES)


def _heldout() -> reopen.HeldoutRows:
    return reopen.HeldoutRows(val=_rows("val", 2, 0), calib=_rows("calib", 1, 2),
                              pool_ids=np.array(["p0", "p1", "p2"]),
                              pool_folds=np.array([1, 0, 1]))


def _manifest(rows: reopen.HeldoutRows, **changes) -> dict:
    """The parts of an artifact manifest `read_heldout` reads."""
    manifest = {"models": list(MODELS), "heldout": rows.summary(),
                "prices": {m: {"usd_per_input_token": i, "usd_per_output_token": o}
                           for m, (i, o) in PRICES.items()},
                "training": {"dataset": "toy"}}
    manifest.update(changes)
    return manifest


def test_write_heldout_stores_val_then_calib_in_two_files(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    folder = tmp_path / artifact.HELDOUT_DIR
    queries = json.loads((folder / artifact.HELDOUT_QUERIES).read_text(encoding="utf-8"))
    assert queries == {"models": ["small", "large"], "split": ["val", "val", "calib"],
                       "query_ids": ["q0", "q1", "q2"], "tasks": ["math", "", "math"],
                       "texts": ["prompt 0 é", "prompt 1 é", "prompt 2 é"],
                       "pool_ids": ["p0", "p1", "p2"]}
    with np.load(folder / artifact.HELDOUT_ARRAYS) as arrays:
        np.testing.assert_array_equal(arrays["features"], [[0, 0], [1, -1], [2, -2]])
        np.testing.assert_array_equal(arrays["scores"], [[0, 1], [1, 0], [0, 1]])
        np.testing.assert_allclose(arrays["costs"], [[0, 0], [1e-4, 1e-3], [2e-4, 2e-3]])
        assert arrays["pool_folds"].dtype == np.int32
        np.testing.assert_array_equal(arrays["pool_folds"], [1, 0, 1])
    with pytest.raises(FileExistsError):  # never written over
        reopen.write_heldout(rows, str(tmp_path))


def test_heldout_rows_round_trip(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    back = reopen.read_heldout(str(tmp_path), _manifest(rows))
    for name in ("val", "calib"):
        want, got = getattr(rows, name), getattr(back, name)
        assert got.name == f"toy:{name}" and got.models == MODELS
        for field in ("scores", "costs", "query_ids", "tasks", "texts", "features"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field),
                                          err_msg=f"{name}.{field}")
        assert dict(got.prices) == PRICES
    np.testing.assert_array_equal(back.pool_ids, ["p0", "p1", "p2"])
    np.testing.assert_array_equal(back.pool_folds, [1, 0, 1])


def test_heldout_rows_without_texts_come_back_without_texts(tmp_path):
    rows = _heldout()
    rows = dataclasses.replace(rows, calib=dataclasses.replace(rows.calib, texts=None))
    reopen.write_heldout(rows, str(tmp_path))  # one split without texts: none are stored
    back = reopen.read_heldout(str(tmp_path), _manifest(rows))
    assert back.val.texts is None and back.calib.texts is None


def test_read_heldout_checks_the_manifest(tmp_path):
    rows = _heldout()
    reopen.write_heldout(rows, str(tmp_path))
    assert reopen.read_heldout(str(tmp_path), _manifest(rows, heldout=None)) is None
    with pytest.raises(artifact.ArtifactError,
                       match=r"held-out rows' models \['small', 'large'\] are not the "
                             r"manifest's \['large', 'small'\]"):
        reopen.read_heldout(str(tmp_path), _manifest(rows, models=["large", "small"]))
    with pytest.raises(artifact.ArtifactError,
                       match="1 held-out calib rows, the manifest records 2"):
        reopen.read_heldout(str(tmp_path),
                            _manifest(rows, heldout={**rows.summary(), "calib": 2}))
