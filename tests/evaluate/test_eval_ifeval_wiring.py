"""`reflectkit eval ifeval` wiring: CIs over prompts and report files (the checkers are tested in test_ifeval*)."""

import json

import pytest
from conftest import run_cli

from reflectkit.evalsets import load_evalset


@pytest.fixture()
def answers(tmp_path, shared_data):
    items = load_evalset("ifeval", limit=6)
    rows = []
    for i, it in enumerate(items):
        # upstream response format (prompt + response) for half the rows, reflectkit generate format for the rest
        text = f"<thinking>plan</thinking><output>{it.question.upper()}</output>" if i % 2 else "ok"
        rows.append({"prompt": it.question, "response": text} if i % 3 == 0 else
                    {"id": it.id, "key": int(it.id), "prompt": it.question, "response": text})
    p = tmp_path / "ans.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_eval_ifeval_cli_reports_all_four_metrics_with_cis(answers, tmp_path):
    r = run_cli("eval", "ifeval", str(answers))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "ans.ifeval.json").read_text())
    assert rep["counts"]["prompts"] == 6 and len(rep["per_item"]) == 6
    for name in ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose"):
        m = rep["metrics"][name]
        assert m["ci"][0] <= m["value"] <= m["ci"][1]
    per = rep["per_item"]
    assert rep["metrics"]["prompt_level_strict"]["value"] == sum(p["metrics"]["prompt_level_strict"] for p in per) / 6
    num = sum(p["metrics"]["instruction_level_loose"][0] for p in per)
    den = sum(p["metrics"]["instruction_level_loose"][1] for p in per)
    assert rep["metrics"]["instruction_level_loose"]["value"] == pytest.approx(num / den)
    assert rep["metrics"]["instruction_level_loose"]["n"] == den == rep["counts"]["instructions"]
    assert "| prompt_level_strict |" in (tmp_path / "ans.ifeval.md").read_text()


def test_eval_ifeval_unknown_prompt_exit_2(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"prompt": "not an IFEval prompt", "response": "hi"}) + "\n")
    r = run_cli("eval", "ifeval", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
