"""The layout stays as docs/architecture.md draws it: the imports of app/ and worker/ are walked
(with ``ast``, function-level imports included, TYPE_CHECKING blocks left out) and checked.

- No import circles, between modules or between packages of app/.
- app/core imports nothing else of app/ (and never worker/).
- worker/ reaches app/ only through app/core.
- No layer imports one above it: core < http < auth < the domains < the entry points.
- app/ never imports torch, transformers, peft or trl (the web image has none of them).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {  # app's top-level packages and modules, lowest first
    "app.core": 0,
    "app.http": 1,
    "app.auth": 2,
    **{
        f"app.{domain}": 3
        for domain in (
            "basemodels",
            "datasets",
            "evals",
            "jobs",
            "ops",
            "playground",
            "presets",
            "v1",
            "webhooks",
        )
    },
    **{f"app.{top}": 4 for top in ("main", "cli", "supervisor", "client")},
}
HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate")


def _modules() -> dict[str, Path]:
    found = {}
    for package in ("app", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imported(path: Path) -> Iterator[str]:
    """Every module name ``path`` imports, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _ours(name: str) -> str | None:
    """The project module ``name`` is (or lies in), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    module: {dep for name in _imported(path) if (dep := _ours(name)) and dep != module}
    for module, path in MODULES.items()
}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _layer(module: str) -> int | None:
    return LAYERS.get(_package(module))


def test_every_app_module_has_a_layer() -> None:
    unplaced = sorted({_package(m) for m in MODULES if m.startswith("app.") and _layer(m) is None})
    assert unplaced == [], f"place these in LAYERS (and in docs/architecture.md): {unplaced}"


def test_there_are_no_import_circles() -> None:
    assert _circles(GRAPH) == []
    packages: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        if module.startswith("app."):
            own = _package(module)
            packages.setdefault(own, set()).update(_package(d) for d in deps if _package(d) != own)
    assert _circles(packages) == [], "packages of app/ import each other in a circle"


def test_the_core_imports_nothing_else_of_the_project() -> None:
    outside = sorted(
        (module, dep)
        for module, deps in GRAPH.items()
        if module.startswith("app.core")
        for dep in deps
        if not dep.startswith("app.core")
    )
    assert outside == []


def test_the_worker_reaches_app_only_through_the_core() -> None:
    outside = sorted(
        (module, dep)
        for module, deps in GRAPH.items()
        if module.startswith("worker")
        for dep in deps
        if dep.startswith("app") and not dep.startswith("app.core")
    )
    assert outside == []


def test_no_layer_imports_one_above_it() -> None:
    upward = sorted(
        (module, dep)
        for module, deps in GRAPH.items()
        if module.startswith("app.")
        for dep in deps
        if dep.startswith("app.") and (_layer(dep) or 0) > (_layer(module) or 0)
    )
    assert upward == []


def test_app_never_imports_worker_or_the_training_stack() -> None:
    offending = sorted(
        (module, name)
        for module, path in MODULES.items()
        if module.startswith("app")
        for name in _imported(path)
        if name.split(".")[0] in ("worker", *HEAVY)
    )
    assert offending == []


def test_the_guard_sees_a_circle_an_upward_import_and_the_worker_going_around_the_core() -> None:
    """The checks above would catch what they are for (a graph made up for the purpose)."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("app.core.db") == 0 and _layer("app.jobs.views") == 3 and _layer("app.main") == 4
    assert "app.core" in {_package(d) for d in GRAPH["worker.training.runner"]}
