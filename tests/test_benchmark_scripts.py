"""The benchmark scripts' imports resolve as the docs run them: `python benchmarks/<name>.py`.

Run that way, Python puts benchmarks/ (not the repository root) on sys.path: a script may import
its siblings by their own names and the installed packages, never `benchmarks.<sibling>`
(benchmarks/profile_policy.py did, and failed at its first line). Read from the source (ast and
importlib's finders, nothing imported), so it costs milliseconds where running every script would
cost seconds each.
"""

import ast
import importlib.util
import pathlib

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted((pathlib.Path(REPO_ROOT) / "benchmarks").glob("*.py"))


def top_level_imports(path: pathlib.Path) -> set[str]:
    """The top-level module names a script imports at module level (absolute imports only;
    an import inside a function may be an optional dependency, imported only where used)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_top_level_imports_hand_checked(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import os.path, json\nfrom a.b import c\nfrom . import d\n"
                      "def f():\n    import bench_core\n")
    assert top_level_imports(script) == {"os", "json", "a"}  # not f's bench_core


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_imports_what_a_script_run_can_find(script):
    siblings = {p.stem for p in SCRIPTS}
    for name in sorted(top_level_imports(script) - {"__future__"}):
        assert name != "benchmarks", f"{script.name}: `benchmarks.` is not importable when run " \
                                     "as a script; import the sibling by its name"
        assert name in siblings or importlib.util.find_spec(name) is not None, \
            f"{script.name}: cannot find module {name!r}"
