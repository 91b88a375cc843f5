r"""Print the dataset card of a data source (and optionally convert a RouterBench pickle).

    python -m launch.data_summary --source=routerbench:data/routerbench_0shot.parquet
    python -m launch.data_summary --source='synthetic:routerbench?n=20000&seed=0&signal=0.9'
    # one-time conversion of a pickle you trust to parquet (pickles run code when read):
    python -m launch.data_summary --allow_pickle \
        --source=routerbench:../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl \
        --to_parquet=/tmp/rb_slice.parquet

See `proteus.data.sources` for the spec grammar.
"""

import sys
from collections.abc import Sequence

from absl import app, flags

from experiments import logs, outputs
from proteus.data import DataValidationError, source_card

_SOURCE = flags.DEFINE_string(
    "source", "synthetic:routerbench", "data source spec, e.g. routerbench:<path> or "
    "synthetic:<preset>[?n=..&seed=..&signal=..] (see proteus.data.sources)"
)
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "HF Arrow cache directory (default: HF's)")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Read a pickle source. Unpickling runs code from the file: only for "
    "files you trust (same as ?allow_pickle=1 in the spec).")
_TO_PARQUET = flags.DEFINE_string(
    "to_parquet", None, "routerbench sources: also write the routing columns to this parquet "
    "file, loadable as routerbench:<file> without any opt-in.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --to_parquet file.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logs.job_logging()  # warnings only: no library noise around the output
    try:
        outputs.check_new_file(_TO_PARQUET.value, "to_parquet", _OVERWRITE.value)
        print(source_card(_SOURCE.value, _CACHE_DIR.value, _ALLOW_PICKLE.value,
                          _TO_PARQUET.value))
    except (DataValidationError, ValueError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"launch.data_summary: {e}")  # one line naming the cause, exit code 1


if __name__ == "__main__":
    app.run(main)
