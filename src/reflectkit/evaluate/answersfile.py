"""Read answer files (JSONL rows with ``id``, ``prompt``, ``response``), e.g. from ``reflectkit generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reflectkit.data.io import existing_file
from reflectkit.errors import UserError

RESPONSE_FIELDS = ("response", "output", "completion")


def read_jsonl(path: str | Path, *, what: str = "answers") -> list[dict[str, Any]]:
    """All JSON objects of a JSONL file; UserError with file:line for a bad line."""
    p = existing_file(path, what=f"{what} file", expected=f"a JSONL {what} file")
    rows: list[dict[str, Any]] = []
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: file is not valid UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise UserError(f"{p}:row {i + 1}: expected a JSON object")
            obj.setdefault("_line", i + 1)
            rows.append(obj)
        return rows
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        obj["_line"] = lineno
        rows.append(obj)
    if not rows:
        raise UserError(f"{p}: file contains no rows")
    return rows


def response_of(row: dict[str, Any], path: Path | str, field: str | None = None) -> str:
    """The answer text of a row (``--response-field``, else response/output/completion)."""
    names = (field,) if field else RESPONSE_FIELDS
    for name in names:
        v = row.get(name)
        if isinstance(v, str):
            return v
        if v is None and name in row:
            return ""
    raise UserError(f"{path}:{row.get('_line', '?')}: no answer text; expected a string field "
                    f"{' or '.join(repr(n) for n in names)}")


def step_status(row: dict[str, Any]) -> str | None:
    """The status a reflectkit step recorded for the row (``failed`` rows count as wrong, never dropped)."""
    rk = row.get("reflectkit")
    if isinstance(rk, dict):
        for stage in rk.values():
            if isinstance(stage, dict) and isinstance(stage.get("status"), str):
                return stage["status"]
    return None


def row_id(row: dict[str, Any], path: Path | str) -> str:
    for k in ("id", "key", "question_id", "idx"):
        if row.get(k) is not None:
            return str(row[k])
    raise UserError(f"{path}:{row.get('_line', '?')}: row has no id (expected 'id' or 'key')")
