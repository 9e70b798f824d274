"""The library/CLI boundary, read from the imports: library code never imports the CLI or its toolkits."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "modelcrunch"
CLI_ONLY = {"typer", "rich", "click", "modelcrunch.cli", "modelcrunch.render"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_library_modules_do_not_import_cli_code():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in {"cli", "render"} or rel.name == "__main__.py":
            continue
        for name in _imports(path):
            if any(name == banned or name.startswith(banned + ".") for banned in CLI_ONLY):
                offenders.append(f"{rel}: {name}")
    assert offenders == []
