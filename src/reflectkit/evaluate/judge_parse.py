"""Parsing judge outputs: the verbatim Cherry LLM score line, and the reflective judge's verdict lines.

An *outcome* is the position a judgment prefers in the order it was shown: ``"1"``, ``"2"``, ``"tie"``, or
``None`` when the judgment could not be parsed (never silently turned into a tie).
"""

from __future__ import annotations

import re

Outcome = str | None
OUTCOMES = ("1", "2", "tie")


def parse_score(review: str) -> tuple[float, float] | None:
    """Cherry_LLM ``evaluation/generation/eval.py parse_score``, verbatim rules; ``None`` where upstream logs an
    error and returns ``[-1, -1]``.

    >>> parse_score("8 7\\nAssistant 1 is better")
    (8.0, 7.0)
    >>> parse_score("8,7") , parse_score("Scores: 8 7"), parse_score("8  7")
    ((8.0, 7.0), None, None)
    """
    try:
        score_pair = review.split("\n")[0]
        score_pair = score_pair.replace(",", " ")
        sp = score_pair.split(" ")
        if len(sp) == 2:
            return (float(sp[0]), float(sp[1]))
        return None
    except (ValueError, AttributeError):
        return None


def scores_outcome(scores: tuple[float, float] | None) -> Outcome:
    if scores is None:
        return None
    a, b = scores
    if a != a or b != b:  # nan compares unequal to everything; upstream would count it as a loss for model 2
        return None
    return "1" if a > b else "2" if b > a else "tie"


_VERDICT = re.compile(r"verdict\s*[:：]\s*\**\s*(assistant\s*1|assistant\s*2|tie)\b", re.IGNORECASE)
_CONF = re.compile(r"confidence\s*[:：]\s*\**\s*(\d{1,3}(?:\.\d+)?)", re.IGNORECASE)
_SOUNDER = re.compile(r"sounder\s*[:：]\s*\**\s*(?:analysis\s*)?([AB])\b", re.IGNORECASE)


def parse_verdict(text: str) -> tuple[Outcome, float | None]:
    """The last ``Verdict: Assistant 1|Assistant 2|Tie`` and ``Confidence: N`` (0-100) of an analysis."""
    found = _VERDICT.findall(text or "")
    if not found:
        return None, None
    v = found[-1].lower().replace(" ", "")
    outcome = "1" if v == "assistant1" else "2" if v == "assistant2" else "tie"
    conf = _CONF.findall(text)
    c = min(100.0, float(conf[-1])) if conf else None
    return outcome, c


def parse_sounder(text: str) -> str | None:
    """The last ``Sounder: A|B`` of a comparison of two analyses; ``None`` if absent."""
    found = _SOUNDER.findall(text or "")
    return found[-1].upper() if found else None


def swap(outcome: Outcome) -> Outcome:
    """The same judgment seen from the other order."""
    return {"1": "2", "2": "1"}.get(outcome, outcome) if outcome is not None else None
