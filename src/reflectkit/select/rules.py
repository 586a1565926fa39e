"""Selection rules as pure functions on score dicts (no I/O), so every branch is unit-testable.

Selective Reflection-Tuning (Li et al., ACL Findings 2024), four variants of each row scored by one student:
``ori`` (original), ``ins`` (instruction-reflected, Q*), ``res`` (response-reflected, A*), ``both`` (Q* then A*).

* :func:`selective_released` -- the authors' released code, tianyi-lab/Reflection_Tuning
  ``selection_code/get_select_data.py``, verbatim in logic::

      if Q_ifd > ori_ifd:                         # instruction improved
          if QA_rifd < Q_rifd:                    #   both-reflected response is easier to guess from
              if QA_rifd < 1 and QA_ifd < 1: keep QA          (count_1)
          else:
              if Q_rifd < 1 and Q_ifd < 1:   count_2, NOT kept ("# new_data.append(data_i_Q)")
      else:
          if A_rifd < ori_rifd:
              if A_rifd < 1 and A_ifd < 1:   keep A           (count_3)
          else:
              if ori_rifd < 1 and ori_ifd < 1: count_4, NOT kept ("# new_data.append(data_i_ori)")

  Scores are ``ifd_ppl`` and ``rifd_ppl`` (perplexity ratios), as in the released code.
* :func:`selective_paper` -- the paper's text (Sec. 3): keep the winner of each phase, no ``< 1`` thresholds:
  instruction phase picks Q* if ``IFD(Q*) > IFD(ori)`` else the original instruction; response phase then picks the
  reflected response if its r-IFD is lower than the current pair's, else keeps the current pair. Every row is kept.
* :func:`cherry` -- Cherry LLM ``cherry_seletion/data_by_IFD.py``: drop IFD > 1, sort ``(ifd, index)`` ascending,
  keep the last ``n`` (``n = int(len(remaining) * rate)`` or ``--count``).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from reflectkit.errors import UserError

VARIANT_NAMES = ("original", "instruction", "response", "both")
LABELS = {"original": "original", "instruction": "instruction-reflected", "response": "response-reflected",
          "both": "both-reflected"}


@dataclass(frozen=True)
class Decision:
    """``keep`` is the variant name kept, or None (dropped); ``rule`` is the funnel bucket; ``reason`` is for people."""

    keep: str | None
    rule: str
    reason: str


def _num(scores: Mapping[str, Any] | None, key: str) -> float | None:
    if not isinstance(scores, Mapping):
        return None
    v = scores.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _need(variants: Mapping[str, Mapping[str, Any] | None], names: Sequence[str]) -> Decision | None:
    """A drop decision if a needed variant (or its ifd_ppl/rifd_ppl) is missing, else None."""
    for n in names:
        s = variants.get(n)
        if not isinstance(s, Mapping):
            return Decision(None, f"missing:{n}", f"{LABELS[n]} variant missing or failed")
        for k in ("ifd_ppl", "rifd_ppl"):
            if _num(s, k) is None:
                return Decision(None, f"missing:{n}", f"{LABELS[n]} variant has no {k} score")
    return None


def selective_released(v: Mapping[str, Mapping[str, Any] | None]) -> Decision:
    """Released-code rules (``get_select_data.py``); see the module docstring."""
    miss = _need(v, ("original", "instruction"))
    if miss:
        return miss
    ifd = lambda n: float(v[n]["ifd_ppl"])  # type: ignore[index]  # noqa: E731
    rifd = lambda n: float(v[n]["rifd_ppl"])  # type: ignore[index]  # noqa: E731
    if ifd("instruction") > ifd("original"):
        miss = _need(v, ("both",))
        if miss:
            return miss
        if rifd("both") < rifd("instruction"):
            if rifd("both") < 1 and ifd("both") < 1:
                return Decision("both", "kept:both", "instruction improved IFD, both-reflected r-IFD lower, IFD and r-IFD < 1")
            return Decision(None, "dropped:both>=1", "both-reflected won but its IFD or r-IFD is >= 1")
        if rifd("instruction") < 1 and ifd("instruction") < 1:
            return Decision(None, "dropped:instruction-only",
                            "instruction-reflected with its own response qualifies (count_2) but the released code does not keep it")
        return Decision(None, "dropped:instruction>=1", "instruction-reflected won, response not improved, scores >= 1")
    miss = _need(v, ("response",))
    if miss:
        return miss
    if rifd("response") < rifd("original"):
        if rifd("response") < 1 and ifd("response") < 1:
            return Decision("response", "kept:response", "instruction not improved, response-reflected r-IFD lower, IFD and r-IFD < 1")
        return Decision(None, "dropped:response>=1", "response-reflected won but its IFD or r-IFD is >= 1")
    if rifd("original") < 1 and ifd("original") < 1:
        return Decision(None, "dropped:original-only",
                        "original qualifies (count_4) but the released code does not keep it")
    return Decision(None, "dropped:original>=1", "neither reflection improved the row and the original's scores are >= 1")


def selective_paper(v: Mapping[str, Mapping[str, Any] | None]) -> Decision:
    """Paper-text rules: winner of the instruction phase, then winner of the response phase; no thresholds."""
    miss = _need(v, ("original", "instruction"))
    if miss:
        return miss
    if float(v["instruction"]["ifd_ppl"]) > float(v["original"]["ifd_ppl"]):  # type: ignore[index]
        base, cand = "instruction", "both"
    else:
        base, cand = "original", "response"
    miss = _need(v, (cand,))
    if miss:
        return miss
    if float(v[cand]["rifd_ppl"]) < float(v[base]["rifd_ppl"]):  # type: ignore[index]
        return Decision(cand, f"kept:{cand}", f"{LABELS[base]} won the instruction phase; {LABELS[cand]} r-IFD lower")
    return Decision(base, f"kept:{base}", f"{LABELS[base]} won the instruction phase; reflected response r-IFD not lower")


def cherry(scores: Sequence[Mapping[str, Any] | None], *, fraction: float | None = None, count: int | None = None,
           key: str = "ifd_loss") -> list[Decision]:
    """Cherry LLM top-k% by IFD (``data_by_IFD.py``); one decision per row, in input order."""
    if (fraction is None) == (count is None):
        raise UserError("cherry selection needs exactly one of --fraction or --count")
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"--fraction must be in (0, 1], got {fraction}")
    out: list[Decision | None] = [None] * len(scores)
    ranked: list[tuple[float, int]] = []
    for i, s in enumerate(scores):
        x = _num(s, key)
        if x is None:
            out[i] = Decision(None, "missing:score", f"row has no {key} score")
        elif x > 1:
            out[i] = Decision(None, "dropped:ifd>1", f"{key} = {x:.4g} > 1 (the instruction does not help)")
        else:
            ranked.append((x, i))
    ranked.sort()
    n = int(len(ranked) * fraction) if fraction is not None else min(int(count or 0), len(ranked))
    keep = {i for _, i in ranked[len(ranked) - n:]} if n > 0 else set()
    for x, i in ranked:
        out[i] = (Decision("original", "kept:top", f"{key} = {x:.4g} in the top {n} of {len(ranked)}") if i in keep
                  else Decision(None, "dropped:below-top", f"{key} = {x:.4g} below the top {n} of {len(ranked)}"))
    return [d for d in out if d is not None]


# --------------------------------------------------------------------------------------------- --where
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_WHERE_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Where:
    key: str
    op: str
    value: float
    text: str

    def test(self, scores: Mapping[str, Any] | None) -> Decision | None:
        """None if the row passes, else the drop decision."""
        x = value(scores, self.key)
        if x is None:
            return Decision(None, f"where:{self.text}", f"no numeric {self.key!r} score for --where {self.text!r}")
        if not _OPS[self.op](x, self.value):
            return Decision(None, f"where:{self.text}", f"{self.key} = {x:.4g} fails --where {self.text!r}")
        return None


def value(scores: Mapping[str, Any] | None, key: str) -> float | None:
    """A score as a number for ``--where``: ``key`` may be dotted (``target_tokens.out_alone``); booleans count
    as 0/1 (``truncated == 0``); None if absent, not a number or not finite."""
    if "." in key:
        path, key = key.rsplit(".", 1)
        scores = _dig(scores, path)
    if isinstance(scores, Mapping) and isinstance(scores.get(key), bool):
        return float(scores[key])
    return _num(scores, key)


def numeric_keys(scores: Mapping[str, Any]) -> set[str]:
    """The keys ``value`` can read in one score dict (nested dicts one level deep, as ``a.b``)."""
    def num(x: Any) -> bool:
        return isinstance(x, (int, float)) and (isinstance(x, bool) or math.isfinite(x))

    out: set[str] = set()
    for k, v in scores.items():
        if k == "variants":
            continue
        if isinstance(v, Mapping):
            out |= {f"{k}.{b}" for b, x in v.items() if num(x)}
        elif num(v):
            out.add(k)
    return out


def _dig(d: Mapping[str, Any] | None, path: str) -> Mapping[str, Any] | None:
    cur: Any = d
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur if isinstance(cur, Mapping) else None


def parse_where(text: str) -> Where:
    """Parse ``"coherence >= 0.5"``: a score key (dotted for nested, e.g. ``target_tokens.out_alone``), an
    operator (``>= <= > < == !=``) and a number."""
    m = _WHERE_RE.match(text)
    if not m:
        raise UserError(f"--where {text!r}: expected 'KEY OP NUMBER', e.g. 'coherence >= 0.5' (OP is one of >= <= > < == !=)")
    return Where(m.group(1), m.group(2), float(m.group(3)), text.strip())
