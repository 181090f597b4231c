"""The package's layout rules, checked over its source: no import cycles, no private names imported from another
package, the pipeline and the CLI independent of the benchmark, small files and functions, and a library that
speaks of the method rather than of our benchmark items, issues or folders."""

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "v2m4"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in the file, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            # `from package import module` imports the module
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
            out += [(s, []) for s in subs] + [(mod, [n for n in names if f"{mod}.{n}" not in MODULES])]
    return [(m, n) for m, n in out if m.split(".")[0] == "v2m4"]


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(name, path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, cycles


def _package(module: str) -> str:
    """The pipeline-level package a module belongs to: v2m4.stages.camera, v2m4.render, v2m4 (top-level files)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "stages":
        return ".".join(parts[:3])
    return ".".join(parts[:2]) if len(parts) > 2 or module in MODULES and MODULES[module].name == "__init__.py" \
        else "v2m4"


def test_no_private_names_imported_across_packages():
    bad = []
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            if mod in MODULES and _package(mod) != _package(name):
                bad += [f"{name} imports {mod}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


@pytest.mark.parametrize("front", ["v2m4.pipeline", "v2m4.cli", "v2m4.config"])
def test_pipeline_and_cli_do_not_import_the_bench(front):
    graph = _graph()
    seen, todo = set(), [front]
    while todo:  # everything the module reaches, lazily or not, except through the bench itself
        n = todo.pop()
        seen.add(n)
        todo += [m for m in graph[n] if m not in seen]
    assert not [m for m in seen if m == "v2m4.bench" or m.startswith("v2m4.bench.")]


def test_files_and_functions_are_small():
    long_files = [f"{p}: {n}" for p in MODULES.values() if (n := p.read_text().count("\n")) > 600]
    long_funcs = []
    for p in MODULES.values():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_funcs.append(f"{p.name}:{node.lineno} {node.name}")
    assert not long_files and not long_funcs, (long_files, long_funcs)


def test_the_library_carries_no_lab_notebook():
    pattern = re.compile(r"p0[0-9]|p10|issue [0-9]|\.\./shared")
    hits = [f"{p.relative_to(PKG.parent)}:{i + 1}" for p in PKG.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines()) if pattern.search(line)]
    assert not hits, hits
