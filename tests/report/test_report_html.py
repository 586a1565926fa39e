"""The report file itself: self-contained, escaped, and honest about stages that did not run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli

from reflectkit.errors import UserError
from report_fixtures import evil_run  # noqa: F401  (fixture)

from reflectkit.report.build import build_report, embed_json

pytestmark = pytest.mark.slow  # the shared fixture runs the embedded model


def test_embed_json_cannot_close_the_script_element() -> None:
    text = embed_json([{"x": "</script><script>alert(1)</script>&\u2028"}])
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == [{"x": "</script><script>alert(1)</script>&\u2028"}]


def test_report_is_escaped_and_self_contained(evil_run: Path, tmp_path: Path) -> None:
    r = run_cli("report", str(evil_run), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    # The injected row is in the data, but only as escaped JSON: exactly our two script elements exist.
    assert "window.__xss" in html
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert len(re.findall(r"<script\b", html)) == 2
    assert html.count("</script>") == 2
    # No network: no external URLs in src/href, images are data URIs.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert re.search(r'<img alt="Lengths before/after" src="data:image/png;base64,', html)
    # Summary from the manifests.
    m = json.loads((evil_run / "recycle" / "manifest.json").read_text())
    assert m["models"]["oracle"]["gguf_sha256"] in html
    assert m["prompt_set"]["sha256"] in html and m["input"]["sha256"] in html


def test_missing_stages_are_reported_not_fatal(evil_run: Path) -> None:
    html = (evil_run / "report.html").read_text(encoding="utf-8")
    assert "The decontaminate stage did not run." in html
    assert "the score stage did not run" in html
    assert "The stats stage did not run." in html
    assert "No evaluation stage (eval, judge) ran." in html


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a run directory"):
        build_report(tmp_path, tmp_path / "r.html")
