"""GSM8K extraction on tricky strings (lm-eval-harness strict / flexible filters) and scoring rules."""

import pytest

from reflectkit.answers import extract_flexible, extract_strict, normalize_number, output_section, reference_answer
from reflectkit.evaluate.gsm8k import score_gsm8k


@pytest.mark.parametrize("text, strict, flexible", [
    ("So the total is 1,000 dollars.\n#### 1,000", "1000", "1000"),
    ("She pays $5.", None, "5"),
    ("#### $5", None, "5"),  # lm-eval's strict regex has no '$': strict fails, flexible finds it
    ("The temperature drops to -7 degrees.\n#### -7", "-7", "-7"),
    ("Each costs 2.50, so 3 cost 7.50\n#### 7.50", "7.5", "7.5"),
    ("Total: 0.5 of the cake.", None, "0.5"),
    ("I cannot solve this problem.", None, None),
    ("", None, None),
    ("First 12 apples, then 30 more. The answer is 42.", None, "42"),
    ("#### 18\nWait, I mean 20", "18", "20"),
])
def test_extractions(text, strict, flexible):
    assert extract_strict(text) == strict
    assert extract_flexible(text) == flexible


@pytest.mark.parametrize("raw, norm", [("1,000", "1000"), ("$5.", "5"), ("-3", "-3"), ("5.50", "5.5"),
                                       ("007", "7"), ("3.0", "3"), ("abc", None), ("-", None), (".", None)])
def test_normalize_number(raw, norm):
    assert normalize_number(raw) == norm


def test_output_section_reads_only_output():
    text = "<thinking>2+2 is 5? <reflection>no, 4</reflection> 99</thinking>\n<output>The answer is 4.</output>"
    assert output_section(text) == "The answer is 4."
    assert extract_flexible(output_section(text)) == "4"
    assert extract_flexible(text) == "4" and extract_flexible("<thinking>99</thinking>") == "99"


def test_reference_answer():
    assert reference_answer("He has 3 + 4 = 7 apples.\n#### 7") == "7"
    assert reference_answer("#### 1,250") == "1250"


def test_score_gsm8k_counts_failures_and_reads_output_only():
    rows = [
        {"id": "q1", "answer": "x\n#### 1000", "response": "So 1,000.\n#### 1,000", "_line": 1},
        {"id": "q2", "answer": "#### 5", "response": "It is $5.", "_line": 2},
        {"id": "q3", "answer": "#### 4", "response": "<thinking>maybe 9</thinking><output>#### 4</output>", "_line": 3},
        {"id": "q4", "answer": "#### 4", "response": "<thinking>4</thinking><output>I do not know</output>", "_line": 4},
        {"id": "q5", "answer": "#### 2", "response": "",
         "reflectkit": {"generate": {"status": "failed", "reason": "timeout"}}, "_line": 5},
    ]
    rep = score_gsm8k(rows, n_boot=200)
    per = {p["id"]: p["metrics"] for p in rep["per_item"]}
    assert per == {"q1": {"strict_match": 1, "flexible_extract": 1}, "q2": {"strict_match": 0, "flexible_extract": 1},
                   "q3": {"strict_match": 1, "flexible_extract": 1}, "q4": {"strict_match": 0, "flexible_extract": 0},
                   "q5": {"strict_match": 0, "flexible_extract": 0}}
    assert rep["metrics"]["strict_match"]["value"] == pytest.approx(2 / 5)
    assert rep["metrics"]["flexible_extract"]["value"] == pytest.approx(3 / 5)
    assert rep["counts"]["failed_generation"] == 1 and rep["counts"]["output_tag_scored"] == 2
    lo, hi = rep["metrics"]["flexible_extract"]["ci"]
    assert lo < 0.6 < hi


def test_missing_reference_is_a_user_error(tmp_path):
    from reflectkit.errors import UserError

    with pytest.raises(UserError, match="no reference answer"):
        score_gsm8k([{"id": "nope", "response": "1", "_line": 3}], path="x.jsonl", references="gsm8k")
