"""The package's shape holds: wings import only the wings below them, the base modules import no wing,
every module sits in a wing or the base, no two modules import each other round a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

from asr_helpers import paths

PACKAGE = paths.REPO_ROOT / "asr_helpers"
BASE = {"paths", "runtime", "plots"}
WINGS = ["data", "decoding", "models", "training", "inference", "report", "tools"]  # low to high


def module_files() -> dict[str, Path]:
    """Dotted name (``data.audio``, ``paths``) -> file, for every module but the package's own dunders."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts != ("__main__",):
            found[".".join(parts)] = path
    return found


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (``from X import m`` counts ``X.m``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def package_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's own modules a file imports (dotted names relative to ``asr_helpers``)."""
    names = {name.removeprefix("asr_helpers.") for name in imported_modules(path) if name.startswith("asr_helpers.")}
    return names & modules


def wing_of(module: str) -> str:
    return module.split(".")[0]


def test_every_module_is_in_a_wing_or_the_base():
    modules = module_files()
    unplaced = {m for m in modules if wing_of(m) not in BASE and wing_of(m) not in WINGS}
    assert not unplaced
    assert BASE <= set(modules) and set(WINGS) <= set(modules)


def test_each_wing_says_what_it_may_import():
    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        assert doc and "May import:" in doc, f"{wing}/__init__.py must open with its job and what it may import"


def test_wings_import_only_wings_below_them_and_the_base_imports_no_wing():
    modules = module_files()
    wrong = {}
    for module, path in modules.items():
        wing = wing_of(module)
        allowed = set(BASE) | (set(WINGS[:WINGS.index(wing) + 1]) if wing in WINGS else set())
        above = {m for m in package_imports(path, set(modules)) if wing_of(m) not in allowed}
        if above:
            wrong[module] = sorted(above)
    assert not wrong


def test_no_import_cycles():
    modules = module_files()
    graph = {m: {i for i in package_imports(p, set(modules)) if i in modules and i not in WINGS}
             for m, p in modules.items()}
    cycles = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, trail + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert not cycles


def test_only_tracking_imports_wandb():
    users = {m for m, p in module_files().items() if any(n.split(".")[0] == "wandb" for n in imported_modules(p))}
    assert users <= {"training.tracking"}


def test_the_import_check_sees_imports_inside_functions():
    modules = set(module_files())
    corpora = PACKAGE / "data" / "corpora.py"
    assert "decoding.lm" not in package_imports(corpora, modules)
    assert "data.synthetic" in package_imports(corpora, modules)  # imported inside prepare_corpus
