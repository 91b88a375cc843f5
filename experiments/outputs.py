"""What a launcher's output-file flags may write over: nothing, unless the user says so."""

from __future__ import annotations

import os


def check_new_file(path: str | None, flag: str, overwrite: bool = False) -> None:
    """Raise FileExistsError when `path` (the value of the flag `--<flag>`) exists and
    `overwrite` is not given: a rerun never replaces a file it did not write this time.
    None or "" (the flag not given): nothing to check. A device or a pipe (`/dev/null`) is
    written to, not replaced: allowed."""
    if not path or overwrite or not os.path.lexists(path):
        return
    target = os.path.realpath(path)  # a dangling link's target does not exist: refused
    if os.path.exists(target) and not (os.path.isfile(target) or os.path.isdir(target)):
        return
    raise FileExistsError(f"--{flag}={path} exists; pass --overwrite to replace it")
