r"""Print the dataset card of a data source.

    python -m launch.data_summary \
        --source=routerbench:../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl
    python -m launch.data_summary --source='synthetic:routerbench?n=20000&seed=0&signal=0.9'

See `proteus.data.sources` for the spec grammar.
"""

from collections.abc import Sequence

from absl import app, flags

from proteus.data import dataset_card, load_source

_SOURCE = flags.DEFINE_string(
    "source", "synthetic:routerbench", "data source spec, e.g. routerbench:<path> or "
    "synthetic:<preset>[?n=..&seed=..&signal=..] (see proteus.data.sources)"
)
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "HF Arrow cache directory (default: HF's)")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(dataset_card(load_source(_SOURCE.value, cache_dir=_CACHE_DIR.value)))


if __name__ == "__main__":
    app.run(main)
