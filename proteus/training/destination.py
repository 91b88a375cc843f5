"""Where an artifact goes: a finished artifact directory put at its path, refusing what must not
be replaced, and replacing an artifact in one step.

`export.write_artifact` assembles an artifact next to its destination, then calls
`move_into_place`. Only a directory that is an artifact (`check_replaceable`) is ever replaced,
so a workdir, a directory holding anything else, a file or a link at `out` is never deleted;
`check_out` is that rule for callers that have slow work to do first (loading a workdir, fitting
an onboarded column) and should fail before it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil

from proteus.serving import artifact

ARTIFACT_ENTRIES = frozenset({artifact.MANIFEST_FILE, artifact.FUNCTION_FILE,
                              artifact.PARAMS_DIR, artifact.HELDOUT_DIR})


def check_out(out: str, overwrite: bool) -> None:
    """Raise FileExistsError unless an artifact may be written at `out`: nothing is there, or
    `overwrite` and an artifact is there (`check_replaceable`). Callers with slow work before
    `write_artifact` (loading a workdir) call it first too, to fail before that work."""
    if os.path.lexists(out):
        if not overwrite:
            raise FileExistsError(f"{os.path.abspath(out)} exists; pass overwrite=True "
                                  "(--overwrite) to replace it (only an artifact can be replaced)")
        check_replaceable(out)


def check_replaceable(out: str) -> None:
    """Raise FileExistsError unless `out` is an artifact directory: a manifest.json of this
    format and nothing but the artifact's own entries (so a workdir, a directory holding other
    files, a file, or a link is never deleted by an overwrite)."""
    why = None
    if os.path.islink(out) or not os.path.isdir(out):
        why = "it is not a directory"
    else:
        entries = set(os.listdir(out))
        manifest = os.path.join(out, artifact.MANIFEST_FILE)
        if entries - ARTIFACT_ENTRIES:
            why = f"it holds {sorted(entries - ARTIFACT_ENTRIES)[:5]}, which an artifact does not"
        elif not os.path.isfile(manifest):
            why = f"it has no {artifact.MANIFEST_FILE}"
        else:
            try:
                with open(manifest) as f:
                    fmt = json.load(f).get("format")
            except (OSError, ValueError, AttributeError):
                fmt = None
            if fmt != artifact.FORMAT:
                why = f"its {artifact.MANIFEST_FILE} is not a {artifact.FORMAT!r} manifest"
    if why:
        raise FileExistsError(f"{out} exists and is not a router artifact ({why}); --overwrite "
                              "only replaces an artifact: choose another --out")


def move_into_place(tmp: str, out: str) -> None:
    """Put the finished artifact `tmp` at `out`, replacing the artifact there (checked)."""
    if not os.path.exists(out):
        os.replace(tmp, out)
        return
    if not _exchange(tmp, out):  # no atomic exchange here: the old one waits aside
        aside = f"{out}.replaced-{os.getpid()}"
        os.replace(out, aside)
        os.replace(tmp, out)
        tmp = aside
    shutil.rmtree(tmp)  # the old artifact, now at `tmp`


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False when unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
