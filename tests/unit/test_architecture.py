"""The shape of the tree (ARCHITECTURE.md, STYLE.md): no service imports another, shared/ never
imports or names the services, nothing in the control plane imports the agent's code (it ships
alone, read as data), and the agent imports nothing of the control plane."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules(folder):
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _imports(path):
    """Every module ``path`` imports, absolute (``from . import x`` resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            yield from (f"{base}.{alias.name}" for alias in node.names)
            yield base


def _top(name, depth):
    return ".".join(name.split(".")[:depth])


def _strings(path):
    """Every string constant in the code, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/service.py"))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_not_the_agent(service):
    found = set()
    for path in _modules(f"services/{service}"):
        for name in _imports(path):
            if name.startswith("services.") and _top(name, 2) != f"services.{service}":
                found.add(f"{path.relative_to(ROOT)} imports {name}")
            if name == "agent" or name.startswith("agent."):
                found.add(f"{path.relative_to(ROOT)} imports the agent's {name}")
    assert not found


def test_shared_neither_imports_nor_names_the_services():
    found = set()
    for path in _modules("shared"):
        for name in _imports(path):
            if name == "services" or name.startswith("services.") or name == "agent" or name.startswith("agent."):
                found.add(f"{path.relative_to(ROOT)} imports {name}")
        for value in _strings(path):
            if value == "services" or value.startswith(("services.", "services/")):
                found.add(f"{path.relative_to(ROOT)} names {value!r}")
    assert not found


@pytest.mark.parametrize("part", ["gateway", "cli"])
def test_the_gateway_and_the_cli_reach_services_only_by_rpc(part):
    found = {f"{path.relative_to(ROOT)} imports {name}" for path in _modules(part) for name in _imports(path)
             if name.startswith(("services.", "agent."))}
    assert not found


def test_the_agent_imports_only_itself_the_standard_library_and_pika():
    allowed_third_party = {"pika"}
    found = set()
    for path in _modules("agent"):
        for name in _imports(path):
            top = _top(name, 1)
            if top in {"shared", "services", "gateway", "cli"} or (
                    top not in allowed_third_party and top != "agent" and not _stdlib(top) and top):
                found.add(f"{path.relative_to(ROOT)} imports {name}")
    assert not found


def _stdlib(name):
    import sys

    return name in sys.stdlib_module_names or name == "__future__"
