"""The canary decision of the run-time guard, calibrated to the noise seen at start (no server needed)."""

from __future__ import annotations

from reflectkit.llm.base import ChatResult, SamplingParams, TokenLogprob
from reflectkit.verify.guard import Canary, GuardOptions


def _res(text: str, pt: int = 30, top: dict[str, float] | None = None) -> ChatResult:
    lp = None
    if top is not None:
        tok = max(top, key=top.__getitem__)
        lp = [TokenLogprob(tok, top[tok], dict(top))]
    return ChatResult(text=text, prompt_tokens=pt, logprobs=lp)


def _learned(*results: ChatResult) -> Canary:
    c = Canary(0, "The capital of France is", SamplingParams(temperature=0.0, max_tokens=8, logprobs=5))
    for r in results:
        c.learn(r)
    return c


def test_token_counts_must_not_change() -> None:
    c = _learned(_res("Paris"), _res("Paris"))
    assert c.check(_res("Paris"), GuardOptions()) is None
    assert "usage.prompt_tokens 31" in (c.check(_res("Paris", pt=31), GuardOptions()) or "")


def test_stable_answers_without_logprobs_must_repeat_noisy_ones_need_not() -> None:
    stable = _learned(_res("Paris"), _res("Paris"))
    assert "answered 'Lyon'" in (stable.check(_res("Lyon"), GuardOptions()) or "")
    noisy = _learned(_res("Paris"), _res("Paris, France"))  # the endpoint varied at start: only counts are checked
    assert noisy.check(_res("Lyon"), GuardOptions()) is None
    assert noisy.identity()["text"] is None  # and its answers stay out of the identity hash


def test_logprob_tolerance_grows_with_the_noise_learned_at_start() -> None:
    quiet = _learned(_res("Paris", top={"Paris": -0.5, "Lyon": -1.5}), _res("Paris", top={"Paris": -0.5, "Lyon": -1.5}))
    moved = _res("Paris", top={"Paris": -0.6, "Lyon": -1.4})  # 0.1 nats: a requantization does this
    assert "its log-probs moved" in (quiet.check(moved, GuardOptions()) or "")
    noisy = _learned(_res("Paris", top={"Paris": -0.5, "Lyon": -1.5}), _res("Paris", top={"Paris": -0.53, "Lyon": -1.47}))
    assert noisy.check(moved, GuardOptions()) is None  # within 0.03 + 4 x 0.03
    assert noisy.check(_res("Lyon", top={"Paris": -1.5, "Lyon": -0.5}), GuardOptions()) is not None  # argmax flipped
