"""The package's import graph: one-way, every import counted, the package root imported by none.

Parsed with :mod:`ast`, not imported: function-level (lazy) imports count as much as
module-level ones, because a lazy import hides a circle rather than removing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daskreg"
ROOT = "daskreg"


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path) -> dict[str, Path]:
    return {_module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The daskreg modules one import statement loads (``from pkg import sub`` is ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == ROOT]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        # Relative: level 1 is the module's own package.
        base = module.split(".")[: len(module.split(".")) - node.level + is_package]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source.split(".")[0] != ROOT:
        return []
    return [
        f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
        for alias in node.names
    ]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the daskreg modules it imports anywhere in its body."""
    modules = _modules(package)
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {
            target
            for node in ast.walk(tree)
            for target in _imported(node, name, is_package, known)
            if target != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_lazy_and_relative_imports(tmp_path):
    # The checker itself: a circle closed only by a function-level import is found.
    package = tmp_path / ROOT
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from daskreg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    graph = import_graph(package)
    assert graph["daskreg.a"] == {"daskreg.sub.b"}
    assert graph["daskreg.sub.b"] == {"daskreg.a"}
    assert find_cycle(graph) == ["daskreg.a", "daskreg.sub.b", "daskreg.a"]


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_nothing_imports_the_package_root():
    # daskreg/__init__ imports the public API; a module importing it back closes a circle
    # through everything (the version lives in daskreg/_version.py for that reason).
    importers = sorted(name for name, targets in import_graph().items() if ROOT in targets)
    assert importers == [], f"these modules import the package root daskreg: {importers}"


# A module over this many lines holds more than one job: split it (issue 16).
MAX_LINES = 500
# Modules still over the limit, each being split by its own change. An entry is removed
# when that change lands: the test fails for a listed module that is now short enough,
# so that the list only ever shrinks.
KNOWN_LONG: set[str] = set()


def long_modules(package: Path = PACKAGE, limit: int = MAX_LINES) -> dict[str, int]:
    """Modules of more than ``limit`` lines -> their length (paths from the package's parent)."""
    lengths = {
        path.relative_to(package.parent).as_posix(): len(path.read_text().splitlines())
        for path in sorted(package.rglob("*.py"))
    }
    return {name: n for name, n in lengths.items() if n > limit}


def test_long_modules_are_found(tmp_path):
    # The checker itself: the limit is inclusive, subpackages are searched.
    package = tmp_path / ROOT
    (package / "sub").mkdir(parents=True)
    (package / "short.py").write_text("x = 1\n" * 3)
    (package / "sub" / "long.py").write_text("x = 1\n" * 4)
    assert long_modules(package, limit=3) == {"daskreg/sub/long.py": 4}


def test_no_module_over_the_line_limit():
    long = long_modules()
    new = {name: n for name, n in long.items() if name not in KNOWN_LONG}
    assert not new, f"modules over {MAX_LINES} lines (split them by job): {new}"
    shortened = sorted(KNOWN_LONG - set(long))
    assert not shortened, f"now at most {MAX_LINES} lines: remove {shortened} from KNOWN_LONG"
