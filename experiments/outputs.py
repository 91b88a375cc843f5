"""What a launcher's output flags may write over (nothing, unless the user says so), and the
directories they write into."""

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


class OutputDirError(OSError):
    """A directory a launcher writes into (a workdir) cannot be one: the message names it."""


def make_dir(path: str) -> None:
    """Create the directory `path` and its parents if missing; OutputDirError naming `path` when
    it is a file or cannot be created (os.makedirs' own error names neither the flag nor why)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputDirError(f"{path}: exists and is not a directory (a workdir must be one)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"{path}: cannot create the directory: {e.strerror or e}") from None
