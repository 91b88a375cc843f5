"""Hub ids reach HF (faked here: tests never touch the network)."""

import datasets
import huggingface_hub
import pytest

from proteus.data import load_routerbench, load_sprout, load_table


@pytest.fixture
def fake_hub(monkeypatch, sprout_table):
    calls = []

    def load_dataset(name, split=None, cache_dir=None, **kwargs):
        calls.append((name, split))
        if kwargs.get("data_files") is not None:
            raise AssertionError("local files must not reach the fake")
        table = sprout_table() if "SPROUT" in name else None
        if table is None:
            rows = {"query_id": ["a", "a"], "model": ["x", "y"], "score": [1.0, 0.0],
                    "cost": [0.1, 0.2]}
            return datasets.Dataset.from_dict(rows)
        return datasets.Dataset(datasets.table.InMemoryTable(table))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_sprout_hub_id(fake_hub):
    ds = load_sprout("CARROT-LLM-Routing/SPROUT", split="test")
    assert fake_hub == [("CARROT-LLM-Routing/SPROUT", "test")]
    assert ds.n_queries == 3 and ds.source == "CARROT-LLM-Routing/SPROUT[test]"
    load_sprout("CARROT-LLM-Routing/SPROUT")
    assert fake_hub[-1] == ("CARROT-LLM-Routing/SPROUT", "train+validation+test")


def test_table_hub_id(fake_hub):
    ds = load_table("someone/routing-table")
    assert fake_hub == [("someone/routing-table", "train")]
    assert ds.models == ("x", "y")


def test_routerbench_hub_id(monkeypatch, routerbench_pkl):
    calls = []

    def download(repo_id, filename, repo_type=None, cache_dir=None):
        calls.append((repo_id, filename, repo_type))
        return str(routerbench_pkl)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert load_routerbench("withmartian/routerbench", allow_pickle=True).n_queries == 3
    load_routerbench("withmartian/routerbench/routerbench_5shot.pkl", allow_pickle=True)
    assert calls == [
        ("withmartian/routerbench", "routerbench_0shot.pkl", "dataset"),
        ("withmartian/routerbench", "routerbench_5shot.pkl", "dataset"),
    ]


def test_a_missing_local_looking_path_never_reaches_the_hub(monkeypatch, tmp_path):
    """`data/x.pkl` (no repository is named like a pickle) and a path under an existing local
    directory are typos of local files: refused as missing, where they used to be downloaded."""
    def download(*args, **kwargs):
        raise AssertionError(f"sent to the hub: {args}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for spec in ("data/x.pkl", "other/x.pkl", "data/routerbench/x.pkl"):
        with pytest.raises(FileNotFoundError, match=f"^{spec}: no such file"):
            load_routerbench(spec, allow_pickle=True)
