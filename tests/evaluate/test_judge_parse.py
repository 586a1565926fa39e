"""Verbatim Cherry score-line parsing, the W/T/L table, and the reflective judge's anchor/vote rules."""

import pytest

from reflectkit.evaluate.judge import choose_anchor, fill, vote
from reflectkit.evaluate.judge_metrics import consistent, wtl
from reflectkit.evaluate.judge_parse import parse_score, parse_sounder, parse_verdict, scores_outcome


@pytest.mark.parametrize("review, expected", [
    ("8 6\nexplanation", (8.0, 6.0)),
    ("8,6\nexplanation", (8.0, 6.0)),
    ("7.5 9", (7.5, 9.0)),
    ("8, 6", None),          # comma -> space gives "8  6": three fields upstream -> unparsed
    ("8  6", None),
    ("8 6 ", None),
    ("Scores: 8 6", None),
    ("Assistant 1: 8\nAssistant 2: 6", None),
    ("", None),
    ("\n8 6", None),         # only the first line counts
    ("eight six", None),
])
def test_parse_score_verbatim_rule(review, expected):
    assert parse_score(review) == expected


def test_scores_outcome():
    assert scores_outcome((8, 6)) == "1" and scores_outcome((6, 8)) == "2" and scores_outcome((5, 5)) == "tie"
    assert scores_outcome(None) is None and scores_outcome((float("nan"), 3)) is None


@pytest.mark.parametrize("o1, o2, result", [
    # model A is answer 1 in order 1 and answer 2 in order 2 (hand-written upstream table)
    ("1", "2", "W"), ("tie", "2", "W"), ("1", "tie", "W"),
    ("tie", "tie", "T"), ("1", "1", "T"), ("2", "2", "T"),
    ("2", "1", "L"), ("tie", "1", "L"), ("2", "tie", "L"),
    (None, "2", None), ("1", None, None),
])
def test_wtl_table(o1, o2, result):
    assert wtl(o1, o2) == result


def test_consistency():
    assert consistent("1", "2") and consistent("tie", "tie") and consistent("2", "1")
    assert not consistent("1", "1") and not consistent("tie", "2") and not consistent(None, "2")


def test_parse_verdict_and_sounder():
    assert parse_verdict("blah\nVerdict: Assistant 2\nConfidence: 85") == ("2", 85.0)
    assert parse_verdict("**Verdict:** Tie\nconfidence: 140") == ("tie", 100.0)
    assert parse_verdict("Verdict: Assistant 1\nVerdict: Assistant 2") == ("2", None)
    assert parse_verdict("I like the first one") == (None, None)
    assert parse_sounder("Analysis B is right.\nSounder: B") == "B"
    assert parse_sounder("Sounder: Analysis A") == "A"
    assert parse_sounder("both are fine") is None


def test_fill_does_not_reexpand_braces():
    out = fill("Q: {question} A1: {answer_1} A2: {answer_2}", question="{answer_1}", answer_1="x {y}", answer_2="z")
    assert out == "Q: {answer_1} A1: x {y} A2: z"


def _a(i, verdict, conf):
    return {"sample": i, "verdict": verdict, "confidence": conf, "text": f"analysis {i}"}


def test_anchor_is_most_confident_lowest_index_on_ties():
    parsed = [_a(0, "1", 60), _a(1, "2", 90), _a(2, "1", 90), _a(3, "tie", None)]
    assert choose_anchor(parsed)["sample"] == 1
    assert choose_anchor([_a(0, "1", None), _a(1, "2", None)])["sample"] == 0


def test_vote_counts_only_survivors():
    anchor = _a(1, "2", 90)
    others = [_a(0, "1", 60), _a(2, "1", 80), _a(3, "1", 10)]
    # all three challengers judged sounder than the anchor -> "1" wins 3 to 1
    assert vote(anchor, others, [True, True, True])[0] == "1"
    # only one survives -> 1 vs 1: the anchor's verdict breaks the tie
    outcome, votes = vote(anchor, others, [True, False, False])
    assert outcome == "2" and votes == {"2": 1, "1": 1}
    # none survive -> the anchor alone
    assert vote(anchor, others, [False, False, False])[0] == "2"


def test_vote_tie_without_anchor_goes_to_tie():
    anchor = _a(0, "1", 90)
    others = [_a(1, "2", 1), _a(2, "2", 1), _a(3, "tie", 1), _a(4, "tie", 1)]
    assert vote(anchor, others, [True, True, True, True])[0] == "tie"
