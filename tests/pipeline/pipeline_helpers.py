"""Write small real pipelines (embedded model, a row or two, very short oracle answers) for the tests."""

from __future__ import annotations

from pathlib import Path

from conftest import ALPACA


def write_pipeline(dir: Path, stages: str, *, limit: int = 1, extra: str = "", models: str = "  oracle: embedded\n") -> Path:
    p = dir / "pipeline.yaml"
    p.write_text(f"input: {ALPACA}\nlimit: {limit}\noutput: out\nconcurrency: 1\n{extra}models:\n{models}stages:\n{stages}",
                 encoding="utf-8")
    return p


def recycle_stage(name: str, max_tokens: int = 6, phase: str = "response") -> str:
    return f"  - name: {name}\n    kind: recycle\n    options: {{phase: {phase}, max_tokens: {max_tokens}}}\n"
