"""The tokenizer and log-prob tiers' comparisons, the budget split and fingerprint files (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectkit.errors import UserError
from reflectkit.verify import logprob_tier, tokenizer
from reflectkit.verify.endpoint import overall, plan_for_budget
from reflectkit.verify.fingerprint import Fingerprint, ProbeAnswer, load_fingerprint
from reflectkit.verify.result import TierResult


def _tok(counts: dict[str, list[int]]) -> list[ProbeAnswer]:
    return [ProbeAnswer(tier="tokenizer", probe=u, repeats=k, messages=[], params={}, prompt_tokens=c)
            for u, cs in counts.items() for k, c in enumerate(cs)]


def test_tokenizer_signature_cancels_the_template_overhead() -> None:
    endpoint = _tok({"😀": [30, 33, 36, 39], " hi": [30, 31, 32, 33]})
    claimed = _tok({"😀": [9, 12, 15, 18], " hi": [9, 10, 11, 12]})  # another template, the same tokenizer
    assert tokenizer.compare(endpoint, claimed).verdict == "consistent"
    other = _tok({"😀": [9, 10, 11, 12], " hi": [9, 10, 11, 12]})
    res = tokenizer.compare(endpoint, other)
    assert res.verdict == "inconsistent" and "😀" in res.evidence["mismatches"]
    assert tokenizer.compare(_tok({"x": [0, 0, 0, 0]}), claimed).verdict == "inconclusive"  # no usage reported


def _lp(probe: str, top: dict[str, float]) -> ProbeAnswer:
    tok = max(top, key=top.__getitem__)
    return ProbeAnswer(tier="logprobs", probe=probe, messages=[], params={},
                       logprobs=[{"token": tok, "logprob": top[tok], "top": top}])


def test_logprob_threshold_grows_with_the_measured_noise() -> None:
    ref = [_lp("q", {"a": -0.5, "b": -1.5}), _lp("q", {"a": -0.5, "b": -1.5})]
    shifted = [_lp("q", {"a": -0.6, "b": -1.4}), _lp("q", {"a": -0.6, "b": -1.4})]
    assert logprob_tier.compare(shifted, ref).verdict == "inconsistent"  # 0.1 nats, no noise
    noisy = [_lp("q", {"a": -0.6, "b": -1.4}), _lp("q", {"a": -0.55, "b": -1.45})]  # the endpoint varies by 0.05
    assert logprob_tier.compare(noisy, ref).verdict == "consistent"
    assert logprob_tier.compare([ProbeAnswer(tier="logprobs", probe="q", messages=[], params={})], ref).verdict \
        == "inconclusive"


def test_budget_split_and_overall_verdict() -> None:
    p = plan_for_budget(100)
    assert 4 * p.tokenizer_units + p.logprob_probes * p.logprob_repeats + p.text_samples == 100
    assert plan_for_budget(8).text_samples == 0  # too few for a two-sample test: not asked at all

    def t(tier: str, v: str) -> TierResult:
        return TierResult(tier, v, "")  # type: ignore[arg-type]

    assert overall([t("tokenizer", "consistent"), t("logprobs", "consistent")]) == "consistent"
    assert overall([t("tokenizer", "consistent"), t("logprobs", "inconclusive")]) == "inconclusive"
    assert overall([t("tokenizer", "consistent"), t("text", "inconsistent")]) == "inconsistent"


def test_fingerprint_round_trip_and_errors(tmp_path: Path) -> None:
    fp = Fingerprint(source={"kind": "endpoint", "host": "h:1", "model": "m"}, answers=_tok({"x": [1, 2, 3, 4]}))
    path = fp.save(tmp_path / "fp.json")
    assert load_fingerprint(path).answers == fp.answers
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a reflectkit fingerprint"):
        load_fingerprint(tmp_path / "bad.json")
    with pytest.raises(UserError, match="no such fingerprint file"):
        load_fingerprint(tmp_path / "missing.json")
