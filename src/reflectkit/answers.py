"""Final-answer extraction and comparison (GSM8K and other numeric/exact-match references).

Extraction follows lm-evaluation-harness's GSM8K filters:

* **strict** (``strict-match``): the number after ``#### `` (regex ``#### (\\-?[0-9\\.\\,]+)``);
* **flexible** (``flexible-extract``): the last number in the text (regex ``(-?[$0-9.,]{2,})|(-?[0-9]+)``).

Both normalise commas, ``$`` and trailing periods before comparing. When a text is in the Reflection 70B format,
only its ``<output>`` part is read (as Reflection 70B's own harness did).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_OUTPUT = re.compile(r"<output>(.*?)(?:</output>|$)", re.DOTALL | re.IGNORECASE)


def output_section(text: str) -> str:
    """The ``<output>`` part of a Reflection-format answer (the last one), or the whole text when there is none."""
    if text is None:
        return ""
    found = _OUTPUT.findall(text)
    return found[-1].strip() if found else text


def normalize_number(s: str | None) -> str | None:
    """``"$1,000."`` -> ``"1000"``; ``"5.50"`` -> ``"5.5"``; ``"-3"`` -> ``"-3"``; non-numbers -> None."""
    if s is None:
        return None
    t = s.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if not t or t in ("-", "."):
        return None
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def extract_strict(text: str) -> str | None:
    m = _STRICT.search(text or "")
    return normalize_number(m.group(1)) if m else None


def extract_flexible(text: str) -> str | None:
    for a, b in reversed(_FLEX.findall(text or "")):
        n = normalize_number(a or b)
        if n is not None:
            return n
    return None


def reference_answer(gsm8k_answer: str) -> str | None:
    """The reference number of a GSM8K ``answer`` field (after ``####``)."""
    return extract_strict(gsm8k_answer) or extract_flexible(gsm8k_answer)


def numbers_equal(a: str | None, b: str | None) -> bool:
    na, nb = normalize_number(a), normalize_number(b)
    return na is not None and na == nb


def exact_match(a: str | None, b: str | None) -> bool:
    """Whitespace- and case-insensitive exact match (for non-numeric references)."""
    if a is None or b is None:
        return False
    norm = lambda s: " ".join(s.strip().strip(".").lower().split())  # noqa: E731
    return norm(a) == norm(b)
