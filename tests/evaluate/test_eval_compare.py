"""`reflectkit eval compare`: paired bootstrap on per-item results of two eval reports."""

import json

from conftest import run_cli

from reflectkit.evaluate.compare import compare_reports
from reflectkit.evaluate.gsm8k import score_gsm8k
from reflectkit.evaluate.report import write_report


def _rows(correct):
    return [{"id": f"q{i}", "answer": f"#### {i}", "response": f"#### {i if ok else i + 1}", "_line": i + 1}
            for i, ok in enumerate(correct)]


def test_compare_reports_paired(tmp_path):
    base = [i % 2 == 0 for i in range(80)]
    tuned = list(base)
    tuned[1] = tuned[3] = True  # two more right answers out of 80
    a, b = score_gsm8k(_rows(tuned), n_boot=200), score_gsm8k(_rows(base), n_boot=200)
    c = compare_reports(a, b, labels=("tuned", "base"))
    row = {r["metric"]: r for r in c["rows"]}["strict_match"]
    assert abs(row["diff"] - 2 / 80) < 1e-12 and not row["significant"] and c["items_compared"] == 80

    write_report(a, tmp_path / "a.json", None)
    write_report(b, tmp_path / "b.json", None)
    r = run_cli("eval", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--labels", "tuned,base",
                "--json", str(tmp_path / "c.json"))
    assert r.returncode == 0, r.stderr
    assert "NOT significant" in r.stdout and "+2.5 pts" in r.stdout
    assert json.loads((tmp_path / "c.json").read_text())["items_compared"] == 80


def test_compare_detects_real_difference():
    a = score_gsm8k(_rows([True] * 100), n_boot=200)
    b = score_gsm8k(_rows([i % 2 == 0 for i in range(100)]), n_boot=200)
    row = compare_reports(a, b)["rows"][0]
    assert row["significant"] and row["lo"] > 0.3


def test_compare_rejects_non_reports(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2]")
    r = run_cli("eval", "compare", str(p), str(p))
    assert r.returncode == 2 and "not a reflectkit eval report" in r.stderr
