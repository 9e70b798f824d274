"""An error message or hint never names an option that the command printing it does not have.

Every string literal in the library that names a ``--option`` is checked against the options of
each command whose code can reach it: a command reaches a module when the module is imported,
directly or through other modelcrunch modules (module-level or inside a function), by the
command's CLI module. The CLI modules' own hints are scanned too; their option declarations and
help texts are not.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import typer

import modelcrunch
from modelcrunch.cli.app import app

PACKAGE = Path(modelcrunch.__file__).parent
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
COMMANDS = ("inspect", "bench", "quantize", "prune", "factorize", "distill")

#: ``(module, option) -> commands`` that import the module but can never print that string.
ALLOWED: dict[tuple[str, str], set[str]] = {
    # raised by io.save_model only; inspect and bench write no model
    ("modelcrunch.io", "--overwrite-input"): {"inspect", "bench"},
    # --distill on prune/factorize builds DistillConfig from defaults and never resumes
    **{
        ("modelcrunch.distill.config", o): {"prune", "factorize"}
        for o in ("--augment", "--feature-match", "--lr", "--temperature", "--checkpoint", "--resume")
    },
    ("modelcrunch.distill.train", "--resume"): {"prune", "factorize"},
    # distill infers output kinds and shapes with no overrides: the override parsers never run
    **{("modelcrunch.runtime.semantics", o): {"distill"} for o in ("--output-kind", "--task")},
    ("modelcrunch.shapes", "--shape"): {"distill"},
    ("modelcrunch.runtime.judge", "--metric"): {"distill"},  # distill's judge has no user metric
    # factorize never asks check_distill_options about sparsity (it has no sparse modes)
    **{
        ("modelcrunch.cli._distill_hook", o): {"factorize"}
        for o in ("--sparsity", "--threshold", "--pattern", "--structured")
    },
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _api_nodes(tree: ast.Module, command: str) -> list[ast.AST]:
    """``modelcrunch.api`` has one function per command: a command reaches its module-level imports
    and the imports inside its own function only."""
    nodes: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            if node.name == command:
                nodes += list(ast.walk(node))
        else:
            nodes.append(node)
    return nodes


def _imports(name: str, command: str = "") -> set[str]:
    """modelcrunch modules ``name`` imports anywhere in its body (package inits included)."""
    modules = _modules()
    found: set[str] = set()
    # the package's own __init__ runs for every command; its public API functions (optimize()) import
    # their machinery when called, which no command does: only its module-level imports count
    if name == "modelcrunch":
        nodes = modules[name].body
    elif name == "modelcrunch.api":
        nodes = _api_nodes(modules[name], command)
    else:
        nodes = ast.walk(modules[name])
    for node in nodes:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: -node.level] if name in modules else []
                base = ".".join([*package, base]) if base else ".".join(package)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                prefix = ".".join(parts[:i])
                if prefix in modules:
                    found.add(prefix)
    return found


def _reach(command_module: str) -> set[str]:
    command = command_module.rsplit(".", 1)[-1]
    seen, todo = set(), [command_module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_imports(name, command) - seen)
    return seen


def _options(command) -> set[str]:  # noqa: ANN001 - typer's click command
    names = {"--help"}
    for param in command.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    """String constants and the literal parts of f-strings, with their line numbers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def _is_docstring_or_help(tree: ast.Module) -> set[int]:
    """Line numbers of docstrings and of option declarations (``typer.Option(...)`` arguments)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("Option", "Opt", "Argument", "_gate"):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    lines.update(n.lineno for n in ast.walk(arg) if isinstance(n, ast.Constant))
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                lines.add(body[0].value.lineno)
    return lines


def _mentions() -> dict[str, list[tuple[int, str, str]]]:
    """``module -> [(line, option, string)]`` for every non-docstring string naming an option."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for name, tree in _modules().items():
        docs = _is_docstring_or_help(tree)
        for line, text in _strings(tree):
            if line in docs or OPTION.fullmatch(text.strip()):
                continue  # a bare "--flag" names an option where it is declared, not in a message
            for match in OPTION.finditer(text):
                found.setdefault(name, []).append((line, f"--{match.group(1)}", text))
    return found


def test_option_pattern_finds_flags() -> None:
    assert OPTION.findall("fix it with --shape x=1x3xNxN or --batch 1; not a-- b--c") == ["shape", "batch"]


@pytest.mark.parametrize("command_name", COMMANDS)
def test_every_hint_names_an_option_of_its_command(command_name: str) -> None:
    group = typer.main.get_command(app)
    command = group.commands[command_name]
    options = _options(command)
    reached = _reach(f"modelcrunch.cli.{command_name}")
    wrong = []
    for module, mentions in _mentions().items():
        if module not in reached:
            continue
        for line, option, text in mentions:
            allowed = command_name in ALLOWED.get((module, option), set())
            if option not in options and not allowed:
                wrong.append(f"{module}:{line}: {option} in {text.strip()[:90]!r}")
    assert not wrong, f"`modelcrunch {command_name}` has no such option:\n" + "\n".join(sorted(set(wrong)))
