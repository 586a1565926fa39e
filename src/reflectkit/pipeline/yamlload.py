"""Read YAML while remembering the line of every key, so validation errors can say ``file:line: key``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reflectkit.errors import UserError

Loc = tuple[str | int, ...]


class LineMap:
    """Line numbers (1-based) of every key / list item in a YAML document, by path."""

    def __init__(self, file: Path, lines: dict[Loc, int]) -> None:
        self.file = file
        self.lines = lines

    def line(self, loc: Loc) -> int:
        """The line of ``loc`` or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def error(self, loc: Loc, message: str) -> UserError:
        return UserError(f"{self.file}:{self.line(loc)}: {format_loc(loc)}: {message}")


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = loc + (key,)
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = loc + (i,)
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse ``path``; syntax errors become a UserError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read pipeline file ({exc})") from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise UserError(f"{path}:{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML: {exc}") from None
    lines: dict[Loc, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines)
    return data, LineMap(path, lines)
