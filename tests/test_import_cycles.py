"""No import cycles in the app code, including imports written inside functions.

A cycle makes each module of it depend on the import order of the others and
hides which one is the service and which the caller. The graph is read from
each module's source (every ``import`` anywhere in it, except under
``if TYPE_CHECKING:``, which never runs), so a function-level import that
closes a circle counts like a top-level one.
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
APP_PACKAGES = ("organizations", "patients", "calls", "campaigns", "botrunner", "botkit", "myrobot", "webhooks", "audit", "fhir")
# Read for the graph, not imported: it loads the whole Pipecat pipeline.
NOT_IMPORTED = {"bot"}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules() -> dict[str, pathlib.Path]:
    """Every module of our apps, by dotted name, bot.py and the shared top-level modules."""
    found = {"bot": ROOT / "bot.py", "masking": ROOT / "masking.py", "background": ROOT / "background.py"}
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _parse(path: pathlib.Path) -> ast.AST:
    # CPython 3.11.7's AST builder can raise a spurious SystemError ("recursion
    # depth mismatch") when another thread is running Python code meanwhile (the
    # suite's background loops): parse again, it is the same file.
    for attempt in range(3):
        try:
            return ast.parse(path.read_text(), filename=str(path))
        except SystemError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in the tree, at any depth, outside TYPE_CHECKING blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if not _is_type_checking_block(child):
                stack.append(child)


def _resolve(name: str, path: pathlib.Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _with_packages(target: str, modules) -> set[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first: they are imported too."""
    parts = target.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def import_graph(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """module → the app modules it imports (directly, anywhere in its source)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in _import_nodes(_parse(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _with_packages(alias.name, modules)
                continue
            base = _resolve(name, path, node)
            edges |= _with_packages(base, modules)
            for alias in node.names:
                # `from calls import tasks` imports the module calls.tasks
                if f"{base}.{alias.name}" in modules:
                    edges.add(f"{base}.{alias.name}")
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, …, a], or None (depth-first search, three colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, BLACK) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE:
            found = visit(start)
            if found:
                return found
    return None


def test_every_app_module_imports():
    for name in app_modules():
        if name not in NOT_IMPORTED:
            importlib.import_module(name)


def test_the_graph_holds_the_start_path():
    """A sanity check of the reader on the real code: services → tasks → starting → botrunner."""
    graph = import_graph(app_modules())
    assert "calls.tasks" in graph["calls.services"]
    assert "calls.starting" in graph["calls.tasks"]
    assert {"botrunner.agent_request", "botrunner.start"} <= graph["calls.starting"]
    assert "calls.tasks" not in graph["calls.starting"] | graph["calls.reaper"] | graph["calls.events"]


def without_own_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without each module's edges to its own packages: Python has begun
    running those before the module itself, so reaching a sibling through them
    (``from .audio import x`` in a package whose ``__init__`` imports the module)
    runs nothing again and is no cycle."""
    def ancestors(name):
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}
    return {name: edges - ancestors(name) for name, edges in graph.items()}


def test_no_import_cycles_in_app_code():
    cycle = find_cycle(without_own_packages(import_graph(app_modules())))
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def function_level_imports(modules: dict[str, pathlib.Path]):
    """(module, line, source line) of each import of one of our modules inside a function."""
    app_roots = {name.split(".")[0] for name in modules}
    for name, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        for fn in ast.walk(ast.parse(source)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in _import_nodes(fn):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    targets = [_resolve(name, path, node)]
                if any(t.split(".")[0] in app_roots for t in targets):
                    yield name, node.lineno, lines, node


def test_function_level_imports_of_our_modules_say_why():
    """An import inside a function hides a dependency: allowed only with a comment
    (on the line or just above) saying why it cannot sit at the top."""
    silent = set()
    for name, lineno, lines, node in function_level_imports(app_modules()):
        here, above = lines[lineno - 1], lines[lineno - 2] if lineno > 1 else ""
        if "#" not in here and not above.strip().startswith("#"):
            silent.add(f"{name}:{lineno}: {ast.unparse(node)}")
    assert not silent, "function-level imports without a reason:\n" + "\n".join(sorted(silent))


def test_a_function_level_import_that_closes_a_circle_is_found():
    """The checker itself: a circle through an import inside a function fails it."""
    graph = {"calls.reaper": {"calls.models"}, "calls.tasks": {"calls.reaper"}, "calls.models": set()}
    assert find_cycle(graph) is None
    graph["calls.reaper"].add("calls.tasks")  # `from .tasks import …` inside a function
    assert find_cycle(graph) == ["calls.reaper", "calls.tasks", "calls.reaper"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n    from .tasks import start_call\n", {"calls", "calls.tasks"}),
        ("from . import tasks\n", {"calls", "calls.tasks"}),
        ("import calls.tasks as t\n", {"calls", "calls.tasks"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .tasks import x\n", set()),
    ],
)
def test_imports_are_read_from_the_source(tmp_path, source, expected):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "tasks.py").write_text("")
    (tmp_path / "reaper.py").write_text(source)
    modules = {"calls": tmp_path / "__init__.py", "calls.tasks": tmp_path / "tasks.py", "calls.reaper": tmp_path / "reaper.py"}
    assert import_graph(modules)["calls.reaper"] == expected
