"""The package's shape holds: no import loops, modules of a readable size that say what
they own, every setting read in one module and listed in the README."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from crm_pipeline import settings

PACKAGE = Path(settings.PROJECT_ROOT) / "plugins" / "crm_pipeline"
README = Path(settings.PROJECT_ROOT) / "README.md"
MAX_LINES = 550  # "about 500": a module past this is split along its responsibilities


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules imported at module level, modules imported inside functions) of the package."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: set[str] = set()

    def targets(node) -> set[str]:
        found = set()
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                if f"{module}.{alias.name}" in known:
                    found.add(f"{module}.{alias.name}")
                elif module in known:
                    found.add(module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        return found - {name, "crm_pipeline"}

    def visit(node, inside_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (nested if inside_function else top).update(targets(child))
            visit(child, inside_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return top, nested


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    known = set(modules)
    top, nested = {}, {}
    for name, path in modules.items():
        top[name], nested[name] = _imports(name, path, known)
    return top, nested


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif not state.get(nxt):
                walk(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            walk(node, [])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loops_in_the_package():
    top, nested = _graph()
    both = {name: top[name] | nested[name] for name in top}
    assert _cycles(both) == []


def test_package_imports_are_made_at_module_top():
    """No module hides an import inside a function: the import graph is what the tops say."""
    _, nested = _graph()
    offenders = {name: sorted(found) for name, found in nested.items() if found}
    assert offenders == {}


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_is_small_and_says_what_it_owns(name):
    path = _modules()[name]
    source = path.read_text()
    lines = source.count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
    if lines > 5:
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring and len(docstring.split()) >= 6, f"{name} does not open with what it owns"


def test_crm_variables_are_read_only_in_the_settings_module():
    pattern = re.compile(r"""(os\.environ(\.get)?|os\.getenv)\s*[\[(]\s*f?["']CRM_""")
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path.name != "settings.py" and pattern.search(path.read_text())]
    assert offenders == []


def test_every_declared_setting_is_read_through_the_registry(monkeypatch):
    monkeypatch.setenv("CRM_NOT_A_SETTING", "1")
    with pytest.raises(KeyError, match="not a declared setting"):
        settings.raw("CRM_NOT_A_SETTING")


def test_the_readme_lists_every_setting_with_its_default():
    text = README.read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(CRM_[A-Z_]+)`\s*\|\s*(.*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip("` ")
    assert set(rows) == set(settings.VARIABLES)
    for name, variable in settings.VARIABLES.items():
        assert rows[name] == variable.default, name


def test_uv_run_prints_nothing_before_a_command():
    """Once installed, `uv run crm …` shows the command's output only: no install or
    bytecode-compile chatter (the environment is already synced by the test run itself)."""
    import shutil
    import subprocess

    uv = shutil.which("uv")
    assert uv is not None, "the tests run through uv (the README's test command)"
    done = subprocess.run([uv, "run", "--locked", "python", "-c", "print('ok')"], cwd=settings.PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert done.stderr == ""


def _commands():
    """Every ``crm`` command as its words (``("run",)``, ``("clv", "fit")``)."""
    import typer.main

    from crm_pipeline.cli import app

    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found.extend((name, sub) for sub in subcommands)
        else:
            found.append((name,))
    return found


def test_every_command_shows_its_flags_as_flags_and_is_in_the_readme():
    from typer.testing import CliRunner

    from crm_pipeline.cli import app

    commands = _commands()
    assert ("run",) in commands and ("clv", "fit") in commands and ("status",) in commands
    table = README.read_text()
    for words in commands:
        shown = CliRunner().invoke(app, [*words, "--help"], terminal_width=80)
        assert shown.exit_code == 0, shown.output
        assert "<bool>" not in shown.output, f"crm {' '.join(words)} --help shows a flag as taking a value"
        assert max(len(line) for line in shown.output.splitlines()) <= 80
        assert f"| `crm {' '.join(words)}" in table, f"crm {' '.join(words)} is not in the README's command table"
