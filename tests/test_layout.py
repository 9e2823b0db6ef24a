"""Who may import what, read from the source with `ast` (every import statement, also those inside functions,
relative ones resolved, and `importlib.import_module("...")` / `__import__("...")` with a literal name):

- bench/ imports nothing from tests/ (the benchmarks carry their own config, bench/_common.py);
- in the installed package (every folder of `[tool.setuptools.package-dir]`, and worker.py) only
  closeloop/standins/ itself, closeloop/cli/standin.py and closeloop/cli/dev.py (the local sign-in provider of
  `closeloop dev`) import `closeloop.standins`: the worker and the
  web app never load a stand-in;
- the stand-ins only tests use (tests/standins/pagerduty.py, google_calendar.py and its discovery.py) are
  imported from tests/ alone. (Slack's is in closeloop/standins/: bench/reminders.py measures delivery to it.)
"""

from __future__ import annotations

import ast
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STANDINS = "closeloop.standins"
TEST_ONLY_STANDINS = ("tests.standins.pagerduty", "tests.standins.google_calendar", "tests.standins.discovery")
SKIPPED_DIRS = {"__pycache__", "build", "dist", "node_modules", "site-packages", "venv"}


def imported_modules(source: str, module: str = "", *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `source` imports; `from a import b` yields both `a` and `a.b` (b may
    be a module). `module` is the source's own dotted name, for resolving relative imports."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base:
                yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def python_files(folder: Path) -> list[Path]:
    """The .py files under `folder`, without virtualenvs, caches, build output and hidden folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames
                       if not (d.startswith(".") or d in SKIPPED_DIRS or d.endswith(".egg-info"))]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(found)


def package_modules() -> list[tuple[Path, str]]:
    """(file, dotted module name) of every module the project installs, from pyproject.toml's package-dir
    mapping (closeloop/, workflows/, activities/, integrations/), plus the worker.py launcher."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out: list[tuple[Path, str]] = []
    for package, folder in mapping.items():
        for path in python_files(ROOT / folder):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            out.append((path, ".".join([package, *rel]).removesuffix(".__init__")))
    out.append((ROOT / "worker.py", "worker"))
    return out


def offenders(files: list[tuple[Path, str]], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path, module in files:
        for line, name in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py"):
            if any(within(name, f) for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    return sorted(set(found))


def test_bench_imports_nothing_from_tests() -> None:
    files = [(p, "") for p in python_files(ROOT / "bench")]
    assert files, "no benchmark found under bench/"
    assert offenders(files, ("tests",)) == []


def test_only_the_standin_command_imports_the_standins() -> None:
    modules = package_modules()
    assert any(name == "closeloop.cli.standin" for _, name in modules)
    assert any(name == "closeloop.worker" for _, name in modules)
    allowed = {ROOT / "closeloop" / "cli" / "standin.py", ROOT / "closeloop" / "cli" / "dev.py"}
    others = [(p, n) for p, n in modules if p not in allowed and not within(n, STANDINS)]
    assert offenders(others, (STANDINS,)) == []


def test_the_test_only_standins_are_imported_from_tests_alone() -> None:
    for name in TEST_ONLY_STANDINS:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name
    files = [(p, "") for p in python_files(ROOT) if p.relative_to(ROOT).parts[0] != "tests"]
    assert offenders(files, TEST_ONLY_STANDINS) == []


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("import tests.temporal_env", "", "tests.temporal_env"),
    ("def f():\n    from tests import temporal_env", "", "tests.temporal_env"),
    ("from tests.standins import slack", "", "tests.standins.slack"),
    ("import importlib\nimportlib.import_module('tests.standins.pagerduty')", "", "tests.standins.pagerduty"),
    ("from ..standins.jira import JiraStandin", "closeloop.web.app", "closeloop.standins.jira"),
    ("from .. import standins", "closeloop.cli.main", "closeloop.standins"),
])
def test_every_kind_of_import_is_seen(source: str, module: str, expected: str) -> None:
    assert expected in {name for _, name in imported_modules(source, module)}
