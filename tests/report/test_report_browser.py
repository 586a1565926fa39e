"""Open a real report in headless Debian Chromium (Playwright's Python package, no browser download)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ARTIFACTS

from report_fixtures import evil_run  # noqa: F401  (fixture)

from reflectkit.report.build import build_report

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "recycle" / "output.jsonl").read_text().splitlines() if line]


def test_report_in_headless_chromium(evil_run: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    html = tmp_path / "report.html"
    build_report(evil_run, html)
    rows = _rows(evil_run)
    statuses = sorted({r["reflectkit"]["recycle"]["status"] for r in rows})
    errors: list[str] = []
    dialogs: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(html.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        # every row is shown, in input order
        cards = page.locator(".row-card")
        assert cards.count() == len(rows)
        assert [cards.nth(i).get_attribute("data-id") for i in range(len(rows))] == [r["reflectkit"]["id"] for r in rows]
        # the injected row renders as text and nothing ran
        assert page.get_by_text("<script>window.__xss=1;alert(1)</script>", exact=False).count() >= 1
        assert page.get_by_text('<img src=x onerror="window.__xss=2">', exact=False).count() >= 1
        assert page.evaluate("window.__xss === undefined")
        assert page.locator("#rows img").count() == 0
        # status filter: each status shows exactly its rows
        for st in statuses:
            page.select_option("#status-filter", st)
            want = sum(r["reflectkit"]["recycle"]["status"] == st for r in rows)
            expect(page.locator(".row-card")).to_have_count(want)
            assert page.locator(".row-card .status").all_inner_texts() == [st] * want
        page.select_option("#status-filter", "")
        # search finds the injected row only
        page.fill("#search", "__xss=1")
        expect(page.locator(".row-card")).to_have_count(1)
        assert "row" in page.inner_text("#row-count")
        page.fill("#search", "no row contains this text 8d1f")
        expect(page.locator(".row-card")).to_have_count(0)
        page.fill("#search", "")
        expect(page.locator(".row-card")).to_have_count(len(rows))
        # plots are real images
        imgs = page.locator("#plots img")
        assert imgs.count() >= 2  # lengths + funnel
        assert all(w > 100 for w in page.eval_on_selector_all("#plots img", "els => els.map(e => e.naturalWidth)"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
        browser.close()
    assert errors == [] and dialogs == [] and requests == []
