"""The lower layers never import the CLI layer: engine/, llm/ and data/ import no reflectkit.cli* module, typer or
click (so steps run in a worker process or another program without the command line)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import reflectkit

PKG = Path(reflectkit.__file__).resolve().parent
FORBIDDEN = ("reflectkit.cli", "typer", "click")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "reflectkit":
                names += [f"reflectkit.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("layer", ["engine", "llm", "data"])
def test_lower_layers_do_not_import_the_cli(layer):
    files = sorted((PKG / layer).rglob("*.py"))
    assert files
    bad = [(f.name, n) for f in files for n in _imports(f) if n.startswith(FORBIDDEN)]
    assert bad == []
