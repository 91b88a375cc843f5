"""The `serve` extra: one message naming it wherever a serving dependency is missing.

`pip install -e .` installs the library (train, evaluate, export, route from Python and the
command line); HTTP serving, the gateway and the online service need the `serve` extra (FastAPI,
uvicorn, httpx, prometheus-client; setup.cfg). A module that imports them does so inside
`serve_extra(...)`, and a launcher wraps its imports in `serve_extra(..., launcher=True)`, so
that a missing package reads

    launch.serve needs the serving dependencies (No module named 'uvicorn'):
    pip install -e '.[serve]'

instead of a traceback: once, from the command line; as a `MissingExtraError` (a
`ModuleNotFoundError`) from Python.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

INSTALL = "pip install -e '.[serve]'"
# Top-level packages of the serve extra and of what it pulls in (pydantic and starlette come with
# FastAPI); a missing module of another name is not ours to explain and is re-raised as it is.
SERVE_PACKAGES = frozenset({"fastapi", "starlette", "pydantic", "uvicorn", "httpx",
                            "prometheus_client"})


class MissingExtraError(ModuleNotFoundError):
    """A serving dependency is not installed; the message names the extra that installs it."""


def message(what: str, err: ModuleNotFoundError) -> str:
    """'<what> needs the serving dependencies (No module named ...): pip install -e '.[serve]''."""
    return f"{what} needs the serving dependencies (No module named {err.name!r}): {INSTALL}"


def is_serving_module(err: ModuleNotFoundError) -> bool:
    """Whether `err` is about a package of the serve extra."""
    return (err.name or "").partition(".")[0] in SERVE_PACKAGES


@contextlib.contextmanager
def serve_extra(what: str, launcher: bool = False) -> Iterator[None]:
    """Imports inside the block that need the serve extra: a missing one raises
    `MissingExtraError` naming `what` and the install command, or with `launcher` (a launcher's
    imports) ends the process with that one line on stderr, exit status 1."""
    try:
        yield
    except ModuleNotFoundError as err:
        if not is_serving_module(err):
            raise
        if launcher:  # a command's user needs the install line, not the import chain behind it
            sys.exit(message(what, err))
        raise MissingExtraError(message(what, err), name=err.name) from None
