"""The gateway and the CLI import in one direction: no module imports one that imports it back,
not even inside a function, where a lazy import would hide the circle until it is called."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package):
    """Each module of ``package`` (dotted name) and the modules of the package it imports, anywhere in it."""
    graph = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = names
    return {module: {name for name in names if name in graph and name != module} for module, names in graph.items()}


def _cycle(graph):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return trail[trail.index(imported):] + [imported]
            if imported not in state:
                found = visit(imported, trail + [imported])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


@pytest.mark.parametrize("package", ["cli", "gateway"])
def test_no_import_circle(package):
    graph = _imports(package)
    assert len(graph) > 5
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
