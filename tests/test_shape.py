"""The code's shape (issue 14's bar), read from the source itself: no import cycle between
product modules, no arrow from a lower layer to one above it, no product function over 60
lines, the environment read in the settings module alone, and bench/ independent of tests/.

Product code: every module outside tests/, bench/ and docs/ (support/ is the helpers tests
and bench share, and is held to the same bar).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .conftest import REPO

_SKIPPED = {"tests", "bench", "docs", "build", "dist"}
# Each top-level part and the layer it stands on: a module may import its own layer's and lower
# ones, never a higher one. support/ (test and bench helpers) sits above the product it drives.
LAYERS = {
    "vqa": 0,  # the ground: contracts, settings, the stitching of windows
    "detectors": 1,
    "workflows": 1,
    "activities": 2,
    "cli": 3,
    "worker": 4,
    "starter": 4,
    "support": 5,
}
MAX_FUNCTION_LINES = 60


def _product_files() -> dict[str, Path]:
    """Module name -> file, for every product module."""
    files = {}
    for path in sorted(REPO.rglob("*.py")):
        parts = path.relative_to(REPO).parts
        if parts[0] in _SKIPPED or parts[0].startswith(".") or "site-packages" in parts:
            continue
        name = ".".join(Path(*parts).with_suffix("").parts).removesuffix(".__init__")
        files[name] = path
    return files


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules `name` imports (relative imports resolved; `from pkg import mod` is pkg.mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found |= submodules or {base}
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    files = _product_files()
    return {name: _imports(name, path, set(files)) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_graph_is_read() -> None:
    # The checks below mean something only if imports are seen, relative ones included.
    graph = _graph()
    assert "activities.sources.transports" in graph["activities.sources"]
    assert "activities.policy" in graph["activities.sources.http"]
    assert "vqa.settings" in graph["activities.store"]
    assert {name.split(".")[0] for name in graph} <= set(LAYERS)


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_layer_above_it() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in _graph().items()
        for target in targets
        if LAYERS[target.split(".")[0]] > LAYERS[name.split(".")[0]]
    ]
    assert upward == []


def test_workflows_and_detectors_do_not_import_each_other() -> None:
    # Same floor, apart: orchestration never computes, computation never orchestrates.
    crossing = [
        f"{name} -> {target}"
        for name, targets in _graph().items()
        for target in targets
        if {name.split(".")[0], target.split(".")[0]} == {"workflows", "detectors"}
    ]
    assert crossing == []


def _long_functions() -> list[str]:
    found = []
    for path in _product_files().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_product_function_is_longer_than_60_lines() -> None:
    assert _long_functions() == []


_ENV_READ = re.compile(r"os\.environ|os\.getenv|\bgetenv\(")


@pytest.mark.parametrize("exempt", ["vqa/settings.py"])
def test_only_the_settings_module_reads_the_environment(exempt: str) -> None:
    readers = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _product_files().values()
        if path.relative_to(REPO).as_posix() != exempt
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _ENV_READ.search(line) and not line.lstrip().startswith("#")
    ]
    assert readers == []
    assert _ENV_READ.search((REPO / exempt).read_text())  # the settings module is where it is read


def test_bench_does_not_import_tests() -> None:
    importers = [
        str(path.relative_to(REPO))
        for path in (REPO / "bench").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+tests\b", path.read_text(), re.M)
    ]
    assert importers == []


def test_every_product_package_is_installed() -> None:
    # `pip install .` (the Dockerfile's) installs only the packages pyproject.toml lists.
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(path.parent.relative_to(REPO).parts)
        for path in REPO.glob("*/**/__init__.py")
        if path.relative_to(REPO).parts[0] in LAYERS and path.relative_to(REPO).parts[0] != "support"
    }
    assert packages == listed
