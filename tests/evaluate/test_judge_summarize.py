"""`judge summarize` reproduces hand-computed W/T/L on tests/fixtures/judgments_small.jsonl (see its README)."""

import json
import shutil

import pytest
from conftest import FIXTURES, run_cli

from reflectkit.evaluate.api import summarize_judgments

FIXTURE = FIXTURES / "judgments_small.jsonl"


def test_summarize_matches_hand_computed_counts(tmp_path):
    src = tmp_path / "j.jsonl"
    shutil.copy(FIXTURE, src)
    rep = summarize_judgments(src, labels=("tuned", "base"))
    c = rep["counts"]
    assert (c["W"], c["T"], c["L"]) == (3, 2, 2)
    assert c["questions"] == 10 and c["judged_both_orders"] == 7
    assert c["unparsed_judgments"] == 3 and c["questions_with_unparsed"] == 3
    m = rep["metrics"]
    assert m["win_rate"]["value"] == pytest.approx(8 / 7)
    assert m["win_fraction"]["value"] == pytest.approx(3 / 7)
    assert m["position_consistency"]["value"] == pytest.approx(4 / 7)
    assert m["first_position_preference"]["value"] == pytest.approx(6 / 13)
    assert m["unparsed_rate"]["value"] == pytest.approx(3 / 20)
    assert m["win_rate_upstream_unparsed_as_tie"]["value"] == pytest.approx(1.4)
    lo, hi = m["win_rate"]["ci"]
    assert lo < 8 / 7 < hi
    assert rep["labels"] == ["tuned", "base"]
    assert [p["result"] for p in rep["per_item"]] == ["W", "W", "T", "T", "L", "L", None, None, "W", None]
    assert (tmp_path / "j.summary.json").exists() and (tmp_path / "j.summary.md").exists()


def test_summarize_cli_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "s.json", tmp_path / "s.md"
    r = run_cli("judge", "summarize", str(FIXTURE), "--labels", "model_1,model_2", "--json", str(out_json),
                "--md", str(out_md))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out_json.read_text())
    assert (rep["counts"]["W"], rep["counts"]["T"], rep["counts"]["L"]) == (3, 2, 2)
    md = out_md.read_text()
    assert "| win_rate | 1.143 |" in md and "95% CI" in md and "3 unparsed judgment(s)" in md
    assert "model_1 vs model_2" in r.stdout


@pytest.mark.parametrize("content, message", [
    ('{"question": "q", "review": 5, "review_reverse": "1 2"}\n', ":1: 'review' must be the judge's text"),
    ('{"question": "q"}\n', ":1: not a judgment row"),
    ('{"question": "q", "review": "1 2"\n', ":1: malformed JSON"),
])
def test_bad_judgment_files_exit_2_with_file_and_line(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    r = run_cli("judge", "summarize", str(p))
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_bad_labels_exit_2():
    r = run_cli("judge", "summarize", str(FIXTURE), "--labels", "only_one")
    assert r.returncode == 2 and "--labels" in r.stderr
