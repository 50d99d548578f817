"""Every module of the package imports on its own in a fresh interpreter (an import cycle shows up as an
ImportError for whichever module of the cycle is imported first), and the layers import one way only
(docs/architecture.md): the engine nothing above it, the facade no private name of the engine."""

from __future__ import annotations

import ast
import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ocitransport

PACKAGE = Path(ocitransport.__file__).resolve().parent


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # importing it runs the CLI
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    for path in sorted(PACKAGE.glob("_*_c.*.so")):  # compiled twins, where built
        names.append("ocitransport." + path.name.split(".")[0])
    return names


def _import_alone(name: str) -> tuple[str, int, str]:
    # The parent's sys.path (the source tree or the installed wheel) is the child's.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=60,
                          env=env)
    return name, proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert "ocitransport.engine.loop" in modules and "ocitransport.client" in modules
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_import_alone, modules))
    failed = [f"{name}: {err}" for name, code, err in results if code != 0 and "dask" not in err]
    assert not failed, "\n".join(failed)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from``-import outside ``if TYPE_CHECKING``, relative ones resolved."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        out.append((module, [a.name for a in node.names]))
    return out


@pytest.mark.parametrize("path", sorted((PACKAGE / "engine").glob("*.py")), ids=lambda p: p.name)
def test_the_engine_imports_nothing_above_it(path: Path) -> None:
    above = ("ocitransport.client", "ocitransport.redirects", "ocitransport.transport", "ocitransport.adapters",
             "ocitransport.mirror", "ocitransport.cli", "ocitransport.authn")
    for module, names in _imports(path):
        assert not module.startswith(above), f"{path.name} imports {module}"
        if module == "ocitransport":
            assert names == ["__version__"], f"{path.name} imports {names} from the package"


def test_the_client_imports_no_private_engine_name() -> None:
    for module, names in _imports(PACKAGE / "client.py"):
        if module.startswith("ocitransport.engine"):
            private = [n for n in names if n.startswith("_")]
            assert not private, f"client.py imports {private} from {module}"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("_*_py.py")), ids=lambda p: p.name)
def test_a_pure_twin_imports_no_other_twin(path: Path) -> None:
    """Twins share pure helpers through their own modules (``_form``, ``_error_text``, ``_values``)."""
    for module, names in _imports(path):
        assert not module.endswith(("_py", "_c")), f"{path.name} imports {names} from {module}"


def test_the_diagnostics_texts_that_are_not_hot_live_once() -> None:
    """Go's status table, format_error's text and is_temporary exist once, in ``_error_text``; both
    diagnostics twins hand them out (the compiled one only where it is built)."""
    import importlib

    from ocitransport import _diagnostics, _diagnostics_py, _error_text

    twins = [_diagnostics_py]
    try:
        twins.append(importlib.import_module("ocitransport._diagnostics_c"))
    except ImportError:
        pass
    for twin in twins:
        assert twin.status_text is _error_text.status_text
        assert twin.is_temporary is _error_text.is_temporary
    assert _diagnostics.status_text is _error_text.status_text
    assert not hasattr(_diagnostics_py, "_STATUS_TEXT")


def _module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def test_no_two_modules_import_each_other() -> None:
    """Counting imports inside functions too (a deferred import hides a cycle from the fresh-interpreter
    test above, not from a reader): the pipeline reads one way, cli -> mirror.api -> plan / execute ->
    session -> transport."""
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names in _imports(path):
            for item in names:
                full = f"{module}.{item}"
                targets.add(full if full in modules else module)
        graph[name] = {t for t in targets if t in modules and t != name}
    pairs = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert not pairs, pairs
