"""Answer extraction from <output> / '####' and comparison with the reference."""

from __future__ import annotations

from reflectkit.synth.verify import check, extract_prediction, reference_from_value

GSM8K_ANSWER = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"


def test_reference_from_gsm8k_answer_and_plain_values() -> None:
    assert reference_from_value(GSM8K_ANSWER, "numeric") == "72"
    assert reference_from_value("1,000", "numeric") == "1000"
    assert reference_from_value(42, "numeric") == "42"
    assert reference_from_value(None, "numeric") is None
    assert reference_from_value("  ", "exact") is None
    assert reference_from_value("reasoning\n#### Paris", "exact") == "Paris"


def test_numeric_prediction_prefers_hashes_then_last_number() -> None:
    assert extract_prediction("She sold 72 clips.\n#### 72", "numeric") == "72"
    assert extract_prediction("48 + 24 = 72 clips, i.e. $72.00.", "numeric") == "72"
    assert extract_prediction("no number here", "numeric") is None


def test_check_numeric_and_exact() -> None:
    v = check("The total is $1,000.", "1000", "numeric")
    assert v.match and v.predicted == "1000"
    assert not check("The total is 999.", "1000", "numeric").match
    assert check("  paris. ", "Paris", "exact").match
    assert not check("Lyon", "Paris", "exact").match
    v = check("72", None, "numeric")
    assert not v.match and v.reference is None
