"""A small real run whose data holds HTML/script injections, shared by the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ALPACA

EVIL_INSTRUCTION = "Say hi <script>window.__xss=1;alert(1)</script> now"
EVIL_OUTPUT = 'Hello <img src=x onerror="window.__xss=2"> </script><b>bold</b>'


@pytest.fixture(scope="session")
def evil_run(tmp_path_factory) -> Path:
    """Pipeline output dir: 3 rows (2 Alpaca + 1 injected) recycled by the embedded model, then its report."""
    from reflectkit.pipeline.runner import run_pipeline

    d = tmp_path_factory.mktemp("evil")
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))[:2]
    rows.append({"instruction": EVIL_INSTRUCTION, "input": "", "output": EVIL_OUTPUT})
    (d / "data.json").write_text(json.dumps(rows), encoding="utf-8")
    (d / "p.yaml").write_text(
        "name: evil-demo\ninput: data.json\noutput: out\nconcurrency: 1\nmodels:\n  oracle: embedded\nstages:\n"
        "  - name: recycle\n    options: {phase: response, max_tokens: 6}\n", encoding="utf-8")
    res = run_pipeline(d / "p.yaml", cache_dir=d / "cache", echo=lambda s: None)
    assert res.report is not None and res.report.exists()
    return d / "out"
