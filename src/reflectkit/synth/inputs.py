"""Input conveniences shared by ``synthesize`` and ``train``: GSM8K-style files work without ``--map``."""

from __future__ import annotations

import json
from pathlib import Path

from reflectkit.data.io import read_dataset


def auto_mapping(path: str | Path, mapping: dict[str, str] | None, *, output_from_answer: bool = False) -> dict[str, str]:
    """Map ``instruction=question`` when a JSON/JSONL file has a ``question`` column but no instruction/chat column.

    GSM8K rows are ``{"question": ..., "answer": "... #### 42"}``. An explicit ``--map`` always wins.
    With ``output_from_answer`` (training on original answers) ``output=answer`` is mapped too.
    """
    m = dict(mapping or {})
    if "instruction" in m:
        return m
    p = Path(path)
    first = _first_json_row(p)
    if first is None:
        return m
    if "question" in first and not ({"instruction", "messages", "conversations"} & set(first)):
        m["instruction"] = "question"
    if output_from_answer and "output" not in m and "answer" in first and "output" not in first:
        m["output"] = "answer"
    return m


def _first_json_row(p: Path) -> dict | None:
    if p.suffix.lower() not in (".jsonl", ".ndjson", ".json") or not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8-sig") as fh:
            head = fh.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return None
    head_s = head.lstrip()
    if head_s.startswith("["):
        return None  # JSON arrays: read_dataset reports problems itself
    line = head_s.split("\n", 1)[0]
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


__all__ = ["auto_mapping", "read_dataset"]
