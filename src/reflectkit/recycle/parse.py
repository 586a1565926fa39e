"""Parse the oracle's Reflection-Tuning answers: ``[New Instruction] ... [End]``, ``[New Answer] ... [End]``,
``[Better Answer] ... [End]``.

The released code (tianyi-lab/Reflection_Tuning, ``reflect_instruction.py`` / ``reflect_response.py``) extracts
segments with ``\\[(New Instruction|New Answer)\\](.*?)\\[End\\]`` and, when a tag is repeated, lets a segment end at
the next tag or at the end of the text. This parser accepts all of that and more:

* tags in any case, with optional markdown bold/colon decoration (``**[New Answer]:**``);
* a missing ``[End]``: the segment runs to the next tag or the end of the text (flagged ``end_missing``);
* repeated tags: the *last* complete instruction/answer pair wins, because oracles often echo the format
  line of the prompt (``[New Instruction] your instruction [End]``) before the real answer;
* placeholders (``your answer``, ``N/A``, ...) and empty segments count as failures, never as rewrites;
* a segment cut off by the length limit (no ``[End]`` and ``finish_reason == "length"``) is a failure.

The original instruction is never parsed, so ``[End]`` or tag-like text inside it cannot break anything;
a segment that only repeats the original text verbatim is rejected as an echo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DECOR = r"[\*_`#\s]*"
_TAG_NAMES = ("New Instruction", "New Answer", "Better Answer")
_TAG_RE = re.compile(
    r"\*{0,2}\[\s*(?P<name>new\s+instruction|new\s+answer|better\s+answer|end)\s*\]\*{0,2}:?\*{0,2}",
    re.IGNORECASE,
)

PLACEHOLDERS = {
    "your instruction",
    "your answer",
    "your new instruction",
    "your new answer",
    "your better answer",
    "n/a",
    "na",
    "none",
    "null",
    "...",
    "…",
    "tbd",
    "answer",
    "instruction",
    "new instruction",
    "new answer",
    "better answer",
}


@dataclass
class Segment:
    name: str  # canonical tag name
    text: str
    start: int  # offset of the tag in the oracle output
    end_missing: bool


@dataclass
class ParseResult:
    ok: bool
    reason: str | None = None
    instruction: str | None = None
    answer: str | None = None
    critique: str = ""
    flags: list[str] = field(default_factory=list)


def _canon(name: str) -> str:
    n = " ".join(name.split()).lower()
    return {"new instruction": "New Instruction", "new answer": "New Answer", "better answer": "Better Answer"}.get(n, "End")


def segments(text: str) -> list[Segment]:
    """All tagged segments in order. A segment ends at ``[End]``, at the next opening tag, or at the end."""
    tags = [(m.start(), m.end(), _canon(m.group("name"))) for m in _TAG_RE.finditer(text)]
    out: list[Segment] = []
    for i, (start, end, name) in enumerate(tags):
        if name == "End":
            continue
        nxt = tags[i + 1] if i + 1 < len(tags) else None
        if nxt is None:
            body, end_missing = text[end:], True
        else:
            body, end_missing = text[end : nxt[0]], nxt[2] != "End"
        out.append(Segment(name, _clean(body), start, end_missing))
    return out


def _clean(s: str) -> str:
    s = s.strip()
    # Drop decoration left around the text by markdown-happy oracles.
    s = re.sub(r"^[\*_]{1,3}\s*", "", s)
    s = re.sub(r"\s*[\*_]{1,3}$", "", s)
    return s.strip()


def is_placeholder(s: str) -> bool:
    t = s.strip().strip("\"'`*[]().:").strip().lower()
    return t == "" or t in PLACEHOLDERS


def _check(seg: Segment | None, label: str, *, truncated: bool, originals: tuple[str, ...]) -> str | None:
    if seg is None:
        return f"no [{label}] ... [End] segment"
    if seg.end_missing and truncated:
        return f"[{label}] cut off by the length limit (no [End])"
    if not seg.text.strip():
        return f"[{label}] is empty"
    if is_placeholder(seg.text):
        return f"[{label}] is a placeholder ({seg.text.strip()[:30]!r})"
    if any(seg.text.strip() == o.strip() and o.strip() for o in originals) and label != "New Answer":
        return f"[{label}] only repeats the original text"
    return None


def parse_instruction_reflection(text: str, *, truncated: bool = False, original_instruction: str = "") -> ParseResult:
    """Parse the instruction-reflection answer into a (new instruction, new answer) pair, or say why not."""
    if not text or not text.strip():
        return ParseResult(False, "empty oracle output")
    segs = segments(text)
    # Walk pairs from the end: the last [New Instruction] followed by a [New Answer] wins.
    best: tuple[Segment, Segment | None] | None = None
    for i in range(len(segs) - 1, -1, -1):
        if segs[i].name != "New Instruction":
            continue
        answer = next((s for s in segs[i + 1 :] if s.name == "New Answer"), None)
        if is_placeholder(segs[i].text) or (answer is not None and is_placeholder(answer.text)):
            if best is None:
                best = (segs[i], answer)
            continue
        best = (segs[i], answer)
        break
    if best is None:
        if any(s.name == "New Answer" for s in segs):
            return ParseResult(False, "no [New Instruction] ... [End] segment", flags=["answer_without_instruction"])
        return ParseResult(False, "no [New Instruction] ... [End] segment")
    ins_seg, ans_seg = best
    flags = [f"{s.name.lower().replace(' ', '_')}_end_missing" for s in (ins_seg, ans_seg) if s is not None and s.end_missing]
    if len([s for s in segs if s.name == "New Instruction"]) > 1:
        flags.append("repeated_tags")
    err = _check(ins_seg, "New Instruction", truncated=False, originals=(original_instruction,)) or _check(
        ans_seg, "New Answer", truncated=truncated, originals=()
    )
    critique = text[: ins_seg.start].strip()
    if err:
        return ParseResult(False, err, critique=critique, flags=flags)
    assert ans_seg is not None
    return ParseResult(True, None, ins_seg.text, ans_seg.text, critique, flags)


def parse_response_reflection(text: str, *, truncated: bool = False) -> ParseResult:
    """Parse the response-reflection answer into a better answer, or say why not."""
    if not text or not text.strip():
        return ParseResult(False, "empty oracle output")
    segs = [s for s in segments(text) if s.name == "Better Answer"]
    if not segs:
        return ParseResult(False, "no [Better Answer] ... [End] segment")
    flags = ["repeated_tags"] if len(segs) > 1 else []
    chosen = next((s for s in reversed(segs) if not is_placeholder(s.text)), segs[-1])
    if chosen.end_missing:
        flags.append("better_answer_end_missing")
    err = _check(chosen, "Better Answer", truncated=truncated, originals=())
    critique = text[: segs[0].start].strip()
    if err:
        return ParseResult(False, err, critique=critique, flags=flags)
    return ParseResult(True, None, None, chosen.text, critique, flags)
