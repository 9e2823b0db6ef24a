"""The structure the README's architecture section describes, checked on the source:

- no import cycle among closeloop's own modules (imports inside functions count; `if TYPE_CHECKING:` ones,
  which never run, do not);
- the CLI and the web app never import the workflows or the activities, and the web app never imports the
  store: they go through closeloop.contract and closeloop.client (the CLI's commands that administer the store
  itself, `db` and the local adapters' views, import it inside the command; `dev` composes the whole stack);
- workflows import nothing that does I/O at module level besides through `imports_passed_through`;
- pyproject.toml lists every package of the installed distribution.

The graph is built with `ast` from the files, by module name (closeloop.workflows is workflows/, etc.)."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

# The commands that start or administer the stack itself may import the store inside the command.
STORE_ADMIN_COMMANDS = {"closeloop.cli.db", "closeloop.cli.dev", "closeloop.cli._common"}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def modules() -> dict[str, Path]:
    """Every module of the distribution, by import name."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports when it runs (function bodies included, TYPE_CHECKING blocks not)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def resolve(target: str) -> None:
        # the longest known module prefix: `from a.b import c` may import module a.b.c or name c of a.b
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                resolve(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, name, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_the_checker_sees_cycles_and_type_checking_imports(tmp_path: Path) -> None:
    """The checks below can fail: a planted cycle is found, a TYPE_CHECKING import is not an edge."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import m.b\ndef f():\n    import m.b\n")
    b.write_text("import m.a\n")
    edges = {"m.a": imports(a, "m.a", {"m.a", "m.b"}), "m.b": imports(b, "m.b", {"m.a", "m.b"})}
    assert cycles(edges) == [["m.a", "m.b"]]
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import m.b\n")
    assert cycles({"m.a": imports(a, "m.a", {"m.a", "m.b"}), "m.b": {"m.a"}}) == []


def test_no_import_cycle_among_our_modules() -> None:
    found = cycles(graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(group) for group in found)


def test_cli_and_web_go_through_the_contract_and_the_client() -> None:
    edges = graph()
    bad: list[str] = []
    for module, targets in sorted(edges.items()):
        if not in_package(module, "closeloop.cli") and not in_package(module, "closeloop.web"):
            continue
        for target in sorted(targets):
            if in_package(target, "closeloop.workflows") or in_package(target, "closeloop.activities"):
                bad.append(f"{module} imports {target}")
            if in_package(target, "closeloop.store") and (in_package(module, "closeloop.web")
                                                          or module not in STORE_ADMIN_COMMANDS):
                bad.append(f"{module} imports {target}")
    assert bad == []


def test_acting_cli_modules_import_no_worker_stack_at_module_level() -> None:
    """What `closeloop <command>` loads before the command runs: click and the shared plumbing only."""
    mods = modules()
    heavy = ("closeloop.store", "closeloop.workflows", "closeloop.activities", "closeloop.integrations",
             "temporalio", "sqlalchemy", "fastapi")
    bad = []
    for name, path in mods.items():
        if not in_package(name, "closeloop.cli"):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{name}: {t}" for t in targets if t.startswith(heavy)]
    assert bad == []


def test_pyproject_lists_every_package() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages == listed, f"missing: {sorted(packages - listed)}; extra: {sorted(listed - packages)}"


def test_every_vendor_is_one_folder_registered_by_name() -> None:
    """integrations/<vendor>/__init__.py registers exactly one plugin named after its folder."""
    from closeloop.integrations.plugin import discover

    found = discover()
    folders = sorted(p.name for p in (ROOT / "integrations").iterdir() if (p / "__init__.py").exists())
    assert sorted(found) == folders
    by_module: dict[str, list[str]] = defaultdict(list)
    for name, cls in found.items():
        by_module[cls.__module__].append(name)
    assert {module: names for module, names in by_module.items()} == \
        {f"closeloop.integrations.{folder}": [folder] for folder in folders}
