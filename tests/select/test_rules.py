"""Selection rules on hand-made score tables: every branch of the released code, the paper text, Cherry, --where."""

from __future__ import annotations

import pytest

from reflectkit.errors import UserError
from reflectkit.select import rules


def s(ifd: float, rifd: float) -> dict[str, float]:
    return {"ifd_ppl": ifd, "rifd_ppl": rifd}


# (original, instruction, response, both) -> (released keep, released rule, paper keep)
TABLE = [
    # Q improved (0.6 > 0.5); QA r-IFD 0.3 < Q r-IFD 0.4; QA both < 1 -> keep both (count_1)
    ((s(0.5, 0.5), s(0.6, 0.4), s(0.9, 0.9), s(0.7, 0.3)), "both", "kept:both", "both"),
    # Q improved; QA r-IFD lower but QA IFD >= 1 -> dropped (paper still keeps both)
    ((s(0.5, 0.5), s(0.6, 0.4), s(0.9, 0.9), s(1.2, 0.3)), None, "dropped:both>=1", "both"),
    # Q improved; QA r-IFD lower but QA r-IFD >= 1 -> dropped
    ((s(0.5, 2.0), s(0.6, 1.5), s(0.9, 0.9), s(0.7, 1.1)), None, "dropped:both>=1", "both"),
    # Q improved; QA r-IFD not lower; Q < 1 -> count_2, not kept by the released code (paper keeps Q)
    ((s(0.5, 0.5), s(0.6, 0.4), s(0.9, 0.9), s(0.7, 0.45)), None, "dropped:instruction-only", "instruction"),
    # Q improved; QA r-IFD equal (not lower); Q IFD >= 1 -> dropped
    ((s(0.5, 0.5), s(1.3, 0.4), s(0.9, 0.9), s(0.7, 0.4)), None, "dropped:instruction>=1", "instruction"),
    # Q not improved (equal IFD is not "higher"); A r-IFD lower, A < 1 -> keep response (count_3)
    ((s(0.6, 0.5), s(0.6, 0.1), s(0.8, 0.3), s(0.1, 0.1)), "response", "kept:response", "response"),
    # Q not improved; A r-IFD lower; A IFD >= 1 -> dropped
    ((s(0.6, 0.5), s(0.5, 0.1), s(1.0, 0.3), s(0.1, 0.1)), None, "dropped:response>=1", "response"),
    # Q not improved; A r-IFD not lower; ori < 1 -> count_4, not kept (paper keeps the original)
    ((s(0.6, 0.5), s(0.5, 0.1), s(0.8, 0.7), s(0.1, 0.1)), None, "dropped:original-only", "original"),
    # Q not improved; A r-IFD not lower; ori r-IFD >= 1 -> dropped
    ((s(0.6, 1.5), s(0.5, 0.1), s(0.8, 1.7), s(0.1, 0.1)), None, "dropped:original>=1", "original"),
]


@pytest.mark.parametrize("row,keep,rule,paper_keep", TABLE)
def test_selective_released_and_paper_branches(row, keep, rule, paper_keep) -> None:
    v = dict(zip(rules.VARIANT_NAMES, row))
    d = rules.selective_released(v)
    assert (d.keep, d.rule) == (keep, rule)
    assert d.reason
    p = rules.selective_paper(v)
    assert p.keep == paper_keep and p.rule == f"kept:{paper_keep}"


def _reference_get_select_data(ori, Q, A, QA):
    """get_select_data.py's loop body, transcribed; returns the appended variant or None."""
    if Q["ifd_ppl"] > ori["ifd_ppl"]:
        if QA["rifd_ppl"] < Q["rifd_ppl"]:
            if QA["rifd_ppl"] < 1 and QA["ifd_ppl"] < 1:
                return "both"
        return None
    if A["rifd_ppl"] < ori["rifd_ppl"]:
        if A["rifd_ppl"] < 1 and A["ifd_ppl"] < 1:
            return "response"
    return None


def test_released_rules_agree_with_transcribed_reference_on_a_grid() -> None:
    vals = [0.4, 0.8, 1.0, 1.3]
    n = 0
    for oi in vals:
        for qi in vals:
            for qr in vals:
                for ar in vals:
                    for bi in (0.5, 1.2):
                        row = (s(oi, 0.8), s(qi, qr), s(0.9, ar), s(bi, 0.6))
                        d = rules.selective_released(dict(zip(rules.VARIANT_NAMES, row)))
                        assert d.keep == _reference_get_select_data(*row)
                        n += 1
    assert n == 512


@pytest.mark.parametrize("missing,needed", [("instruction", True), ("original", True), ("both", True), ("response", False)])
def test_missing_variant_is_dropped_with_reason(missing: str, needed: bool) -> None:
    # Q improved, so "both" is needed and "response" is not
    v = {"original": s(0.5, 0.5), "instruction": s(0.6, 0.4), "response": s(0.9, 0.9), "both": s(0.7, 0.3)}
    v[missing] = None
    d = rules.selective_released(v)
    if needed:
        assert d.keep is None and d.rule == f"missing:{missing}" and "missing" in d.reason
    else:
        assert d.keep == "both"
    v[missing] = {"ifd_ppl": None, "rifd_ppl": 0.3}
    d2 = rules.selective_paper(v)
    if needed:
        assert d2.keep is None and "no ifd_ppl" in d2.reason


def test_cherry_drops_ifd_above_one_and_keeps_top_fraction() -> None:
    scores = [{"ifd_loss": x} for x in (0.9, 1.2, 0.5, 0.7, None, 0.95, 0.3, 1.0, 0.7, 0.8)] + [None]
    decs = rules.cherry(scores, fraction=0.5)
    rules_ = [d.rule for d in decs]
    assert rules_[1] == "dropped:ifd>1"
    assert rules_[4] == "missing:score" and rules_[10] == "missing:score"
    assert rules_[7] != "dropped:ifd>1"  # IFD == 1 is kept in the ranking (the reference drops > 1 only)
    # 8 rows rank; int(8 * 0.5) = 4 highest: 1.0, 0.95, 0.9, 0.8
    kept = sorted(scores[i]["ifd_loss"] for i, d in enumerate(decs) if d.keep)
    assert kept == [0.8, 0.9, 0.95, 1.0]
    assert sum(d.rule == "dropped:below-top" for d in decs) == 4


def test_cherry_ties_break_by_index_like_sorted_tuples() -> None:
    decs = rules.cherry([{"ifd_ppl": 0.5}] * 4, count=1, key="ifd_ppl")
    assert [d.keep for d in decs] == [None, None, None, "original"]  # sorted((rate, i))[-1:] is the last index


def test_cherry_options_are_validated() -> None:
    with pytest.raises(UserError):
        rules.cherry([], fraction=None, count=None)
    with pytest.raises(UserError):
        rules.cherry([], fraction=0.1, count=3)
    with pytest.raises(UserError):
        rules.cherry([], fraction=1.5)
    assert [d.keep for d in rules.cherry([{"ifd_loss": 0.2}], count=10)] == ["original"]


@pytest.mark.parametrize("text,value,passes", [
    ("coherence >= 0.5", 0.5, True), ("coherence>0.5", 0.5, False), ("coherence < 0.5", 0.4, True),
    ("coherence <= 0.5", 0.6, False), ("coherence == 0.5", 0.5, True), ("coherence != 0.5", 0.5, False),
    ("coherence >= -1e-3", 0.0, True),
])
def test_where_operators(text: str, value: float, passes: bool) -> None:
    w = rules.parse_where(text)
    assert (w.test({"coherence": value}) is None) == passes


def test_where_nested_missing_and_bad_syntax() -> None:
    w = rules.parse_where("target_tokens.out_alone > 3")
    assert w.test({"target_tokens": {"out_alone": 4}}) is None
    d = w.test({"target_tokens": {}})
    assert d is not None and "no numeric" in d.reason
    assert rules.parse_where("ifd_ppl < 1").test({"ifd_ppl": None}) is not None
    for bad in ("coherence >> 1", "coherence >= high", ">= 1", ""):
        with pytest.raises(UserError, match="--where"):
            rules.parse_where(bad)
