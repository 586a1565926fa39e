"""The HTML report shows each endpoint's verification (identity, checks, drift) in the run summary (the cache's
producer line is checked in tests/verify/test_guard.py and tests/llm/test_cache.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ALPACA, run_cli
from reflectkit.report.build import build_report
from verify.servers import ALIAS, server_a  # noqa: F401,F811  (fixture)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_report_shows_the_verification_section(server_a, tmp_path: Path) -> None:
    args = ("recycle", str(ALPACA), "-o", str(tmp_path / "out.jsonl"), "--run-dir", str(tmp_path / "run"),
            "--limit", "2", "--max-tokens", "6", "--oracle-model", ALIAS, "--oracle-base-url", server_a.base_url,
            "--canary-every", "1", "--concurrency", "1")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    ident = json.loads((tmp_path / "run" / "manifest.json").read_text())["models"]["oracle"]
    html = build_report(tmp_path / "run", tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<table id="verification">' in html
    assert ident["verification"]["identity_hash"][:16] in html
    assert f"127.0.0.1:{server_a.port}" in html
    ver = ident["verification"]
    assert ver["canary_checks"] >= 1 and ver["drift"] is None
    assert "at call" not in html  # no drift reported
