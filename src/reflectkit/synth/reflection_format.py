"""Structure validation for Reflection-70B-format answers and plain chain-of-thought answers.

The Reflection 70B format (model card of ``mattshumer/Reflection-Llama-3.1-70B``)::

    <thinking> reasoning ... [<reflection> correction </reflection>] ... </thinking>
    <output> final answer </output>

Rules checked here (each failure has a one-line reason):

* exactly one ``<thinking>`` and exactly one ``<output>`` block, ``<thinking>`` first;
* ``<reflection>`` blocks (zero or more) only inside ``<thinking>``, never nested;
* every tag closed, closing tags match (no ``<thinking><output></thinking></output>``);
* no ``<thinking>``/``<output>`` inside another block;
* no empty block (whitespace only);
* nothing but whitespace outside the two top-level blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TAG_NAMES = ("thinking", "reflection", "output")
#: The six tag strings the Glaive recipe adds to the vocabulary as special tokens.
TAG_TOKENS: tuple[str, ...] = tuple(t for n in TAG_NAMES for t in (f"<{n}>", f"</{n}>"))
_TAG_RE = re.compile(r"<(/?)(thinking|reflection|output)>")
_ANY_TAG_RE = re.compile(r"</?\s*(thinking|reflection|output)\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class FormatCheck:
    """Result of a structure check; ``reason`` is None when ``ok``."""

    ok: bool
    reason: str | None = None
    thinking: str = ""
    reflections: tuple[str, ...] = field(default_factory=tuple)
    output: str = ""


def _snippet(text: str, n: int = 40) -> str:
    t = " ".join(text.split())
    return repr(t if len(t) <= n else t[: n - 3] + "...")


def validate_reflection(text: str) -> FormatCheck:
    """Check that ``text`` is a well-formed Reflection-format answer; return its parts."""
    if text is None or not text.strip():
        return FormatCheck(False, "empty response")
    stack: list[tuple[str, int]] = []  # (tag name, content start)
    counts = {n: 0 for n in TAG_NAMES}
    thinking = output = ""
    reflections: list[str] = []
    pos = 0  # end of the last top-level block
    for m in _TAG_RE.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if not stack:
                outside = text[pos : m.start()]
                if outside.strip():
                    return FormatCheck(False, f"text outside tags before <{name}>: {_snippet(outside)}")
                if name == "reflection":
                    return FormatCheck(False, "<reflection> outside <thinking>")
                if name == "output" and counts["thinking"] == 0:
                    return FormatCheck(False, "<output> before <thinking> (or <thinking> missing)")
            else:
                parent = stack[-1][0]
                if name != "reflection" or parent != "thinking":
                    return FormatCheck(False, f"<{name}> nested inside <{parent}>")
            counts[name] += 1
            if counts[name] > 1 and name != "reflection":
                return FormatCheck(False, f"duplicated <{name}>")
            stack.append((name, m.end()))
            continue
        if not stack:
            return FormatCheck(False, f"</{name}> without an opening <{name}>")
        open_name, start = stack.pop()
        if open_name != name:
            return FormatCheck(False, f"</{name}> closes <{open_name}> (improperly nested tags)")
        body = text[start : m.start()]
        if not body.strip():
            return FormatCheck(False, f"empty <{name}>")
        if name == "thinking":
            thinking = body.strip()
        elif name == "output":
            output = body.strip()
        else:
            reflections.append(body.strip())
        if not stack:
            pos = m.end()
    if stack:
        return FormatCheck(False, f"<{stack[-1][0]}> is not closed")
    if counts["thinking"] == 0:
        return FormatCheck(False, "missing <thinking>")
    if counts["output"] == 0:
        return FormatCheck(False, "missing <output>")
    tail = text[pos:]
    if tail.strip():
        return FormatCheck(False, f"text outside tags after </output>: {_snippet(tail)}")
    return FormatCheck(True, None, thinking, tuple(reflections), output)


_FINAL_RE = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


def validate_plain_cot(text: str) -> FormatCheck:
    """Plain chain of thought: reasoning, then a last ``#### <answer>`` line; no Reflection tags.

    ``thinking`` holds the reasoning and ``output`` the final answer after ``####``.
    """
    if text is None or not text.strip():
        return FormatCheck(False, "empty response")
    tag = _ANY_TAG_RE.search(text)
    if tag:
        return FormatCheck(False, f"plain-cot answer contains a Reflection tag {tag.group(0)!r}")
    finals = _FINAL_RE.findall(text)
    if not finals:
        return FormatCheck(False, "no final '#### <answer>' line")
    last = list(_FINAL_RE.finditer(text))[-1]
    if text[last.end() :].strip():
        return FormatCheck(False, f"text after the final '####' line: {_snippet(text[last.end():])}")
    reasoning = text[: last.start()].strip()
    if not reasoning:
        return FormatCheck(False, "no reasoning before the final '####' line")
    return FormatCheck(True, None, reasoning, (), finals[-1].strip())


def validate(text: str, fmt: str) -> FormatCheck:
    if fmt == "reflection":
        return validate_reflection(text)
    if fmt == "plain-cot":
        return validate_plain_cot(text)
    raise ValueError(f"unknown format {fmt!r}")
