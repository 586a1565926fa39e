"""Verification of synthesized answers against a row's reference answer (numeric or exact match).

Reference: the row's ``--answer-field`` column. A GSM8K-style answer (``... #### 42``) is reduced to the number
after ``####`` (:func:`reflectkit.answers.reference_answer`); any other value is used as is.

Prediction: only the ``<output>`` part of a Reflection answer (as Reflection 70B was benchmarked), or the text after
the final ``####`` of a plain-CoT answer. The numeric checker takes the number after ``####`` if there is one,
otherwise the last number (lm-evaluation-harness GSM8K strict, then flexible extraction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from reflectkit.answers import exact_match, extract_flexible, extract_strict, normalize_number, numbers_equal, reference_answer

Checker = Literal["numeric", "exact"]
CHECKERS: tuple[str, ...] = ("numeric", "exact")


@dataclass(frozen=True)
class Verdict:
    match: bool
    predicted: str | None
    reference: str | None


def reference_from_value(value: Any, checker: Checker) -> str | None:
    """The comparable reference for a raw field value (None when missing or unusable)."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    if checker == "numeric":
        return normalize_number(value) or reference_answer(value)
    if "####" in value:
        return value.rsplit("####", 1)[1].strip() or None
    return value.strip()


def extract_prediction(final_answer: str, checker: Checker) -> str | None:
    """The answer to compare, from the final-answer text (``<output>`` content or the plain-CoT ``####`` line)."""
    if checker == "numeric":
        return extract_strict(final_answer) or extract_flexible(final_answer)
    text = final_answer.strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    return text or None


def check(final_answer: str, reference: str | None, checker: Checker) -> Verdict:
    predicted = extract_prediction(final_answer, checker)
    if reference is None:
        return Verdict(False, predicted, None)
    ok = numbers_equal(predicted, reference) if checker == "numeric" else exact_match(predicted, reference)
    return Verdict(ok, predicted, reference)
