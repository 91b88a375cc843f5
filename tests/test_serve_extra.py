"""proteus.serving.extras: without the `serve` extra, every serving command and module says which
extra to install, in one line, never a traceback. The missing packages are simulated in a
subprocess by an import blocker (`BLOCKER`)."""

import re
import subprocess
import sys

import pytest

from proteus.serving import extras
from tests.conftest import REPO_ROOT

# What `pip install -e .` lacks and the serve extra brings (prometheus-client comes with the core
# dependencies' own requirements, so a plain install has it).
NOT_IN_CORE = "fastapi,starlette,uvicorn,httpx,pydantic"
# `python -c BLOCKER <packages> <module> <args>`: run <module> as __main__ with <packages> missing.
BLOCKER = """
import runpy, sys
blocked = set(sys.argv[1].split(","))

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_without(packages: str, module: str, *args: str,
                env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m module args` with `packages` (comma-separated) not importable."""
    return subprocess.Popen([sys.executable, "-c", BLOCKER, packages, module, *args],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_serve_extra_names_the_extra_for_its_packages_only():
    with pytest.raises(extras.MissingExtraError, match=r"thing needs the serving dependencies "
                       r"\(No module named 'uvicorn'\): pip install -e '\.\[serve\]'") as caught:
        with extras.serve_extra("thing"):
            raise ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
    assert isinstance(caught.value, ModuleNotFoundError) and caught.value.name == "uvicorn"
    with pytest.raises(ModuleNotFoundError) as other:  # not ours to explain: as it was
        with extras.serve_extra("thing"):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
    assert not isinstance(other.value, extras.MissingExtraError)
    with pytest.raises(SystemExit, match=r"^launch.x needs .*'\.\[serve\]'$"):
        with extras.serve_extra("launch.x", launcher=True):
            raise ModuleNotFoundError("No module named 'fastapi.routing'", name="fastapi.routing")


def test_commands_without_the_serve_extra_say_which_extra_to_install():
    runs = {"launch.serve": run_without("uvicorn", "launch.serve", "--artifact=x"),
            "launch.gateway": run_without(NOT_IN_CORE, "launch.gateway", "--artifact=x"),
            "launch.replay": run_without(NOT_IN_CORE, "launch.replay", "--helpshort"),
            "module": run_without(NOT_IN_CORE, "proteus.serving.server")}
    done = {name: (*p.communicate(timeout=240), p.returncode) for name, p in runs.items()}
    for name, missing in (("launch.serve", "uvicorn"), ("launch.gateway", "[a-z]+")):
        out, err, status = done[name]
        assert status == 1 and out == "", (name, err)
        assert re.fullmatch(rf"{name} needs the serving dependencies \(No module named "
                            rf"'{missing}'\): pip install -e '\.\[serve\]'\n", err), err
    out, err, status = done["launch.replay"]  # it needs none of them today: its help shows
    assert "Traceback" not in err and ("--artifact" in out + err or extras.INSTALL in err)
    _, err, status = done["module"]  # from Python: the import error itself names the extra
    assert status == 1 and "MissingExtraError: proteus.serving.server needs the serving " \
                           "dependencies (No module named 'uvicorn')" in err


def test_is_serving_module_by_top_level_package():
    def err(name):
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert extras.is_serving_module(err("uvicorn"))
    assert extras.is_serving_module(err("fastapi.routing"))  # a submodule of a serve package
    assert extras.is_serving_module(err("prometheus_client"))
    assert not extras.is_serving_module(err("torch"))
    assert not extras.is_serving_module(err("httpxx"))  # a prefix is not the package
    assert not extras.is_serving_module(err("orbax.fastapi"))  # only the top level counts
    assert not extras.is_serving_module(ModuleNotFoundError("no name"))  # name None
