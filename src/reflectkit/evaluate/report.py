"""Evaluation reports: one JSON file (metrics with CIs, counts, per-item values for paired comparisons) and one
markdown table. Every eval/judge command writes both.

Report shape::

    {"kind": "gsm8k", "title": ..., "metrics": {name: {"value", "ci": [lo, hi], "n"}}, "counts": {...},
     "per_item": [{"id": ..., "metrics": {name: value | [num, den]}}], "notes": [...], "inputs": {...}}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from reflectkit.errors import UserError


def fmt(x: Any, pct: bool) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """A markdown table: metric, value, 95% CI, n; then counts and notes."""
    lines = [f"### {report.get('title', report.get('kind', 'evaluation'))}", ""]
    lines += ["| metric | value | 95% CI | n |", "|---|---:|---:|---:|"]
    pct_names = set(report.get("percent_metrics", []))
    for name, m in report.get("metrics", {}).items():
        pct = name in pct_names
        lo, hi = m.get("ci", [None, None])
        lines.append(f"| {name} | {fmt(m.get('value'), pct)} | [{fmt(lo, pct)}, {fmt(hi, pct)}] | {m.get('n', '')} |")
    counts = report.get("counts") or {}
    if counts:
        lines += ["", "Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    for note in report.get("notes", []):
        lines += ["", f"> {note}"]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def default_paths(source: Path, kind: str) -> tuple[Path, Path]:
    stem = source.name[: -len(source.suffix)] if source.suffix else source.name
    return source.with_name(f"{stem}.{kind}.json"), source.with_name(f"{stem}.{kind}.md")


def report_json(report: dict[str, Any]) -> str:
    """The report as the JSON file holds it."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=_nan_safe) + "\n"


def write_report(report: dict[str, Any], json_path: Path | None, md_path: Path | None) -> str:
    """Write the JSON and markdown files (either may be None to skip); return the markdown."""
    md = markdown(report)
    try:
        if json_path is not None:
            _write_atomic(Path(json_path), report_json(report))
        if md_path is not None:
            _write_atomic(Path(md_path), md)
    except OSError as exc:
        raise UserError(f"cannot write the report ({exc})") from None
    return md


def _nan_safe(x: Any) -> Any:
    return str(x)


def read_report(path: Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: report file not found")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}:{exc.lineno}: not a JSON report ({exc.msg})") from None
    if not isinstance(obj, dict) or "per_item" not in obj or "kind" not in obj:
        raise UserError(f"{p}: not a reflectkit eval report (needs 'kind' and 'per_item'; write one with `reflectkit eval ... --json`)")
    return obj
