"""The two pairwise judges: ``plain`` (the verbatim Cherry / Reflection-Tuning GPT-4 judge) and ``reflective``
(ReflectRM-style: k analyses, most confident as anchor, pairwise reflection against the anchor, majority vote).

Both judge *one order* at a time; :class:`JudgeStep` always runs both orders for every pair.
See ``prompts/judge/reflective/SOURCE.md`` for the reflective judge's design choices.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any, Protocol

from reflectkit.errors import UserError
from reflectkit.evaluate.judge_parse import Outcome, parse_score, parse_sounder, parse_verdict, scores_outcome
from reflectkit.llm.base import SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import PromptSet, load_prompt_set

METHODS = ("plain", "reflective")
_PH = re.compile(r"\{(question|answer_1|answer_2|analysis_a|analysis_b)\}")


def fill(template: str, **values: str) -> str:
    """One-pass placeholder fill: braces inside answers are never re-expanded."""
    return _PH.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class JudgeSettings(Protocol):
    """What the judges read from a step's options (:class:`reflectkit.evaluate.judge_step.JudgeOptions`)."""

    method: str
    max_tokens: int
    k: int
    sample_temperature: float
    prompt_set: str | None  # default: "paper" for plain, "reflective" for reflective


def judge_prompt_set(cfg: JudgeSettings) -> PromptSet:
    return load_prompt_set("judge", cfg.prompt_set or ("paper" if cfg.method == "plain" else "reflective"))


class OrderJudge(Protocol):
    prompt_set: PromptSet

    async def judge(self, question: str, first: str, second: str) -> dict[str, Any]: ...


class PlainJudge:
    """One call per order: the verbatim Cherry judge prompt at temperature 0, top_p 1."""

    def __init__(self, model: CachedChatModel, cfg: JudgeSettings, prompt_set: PromptSet | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.prompt_set = prompt_set or load_prompt_set("judge", cfg.prompt_set or "paper")

    def messages(self, question: str, first: str, second: str) -> list[dict[str, str]]:
        user = fill(self.prompt_set["pairwise.user"], question=question, answer_1=first, answer_2=second)
        return [{"role": "system", "content": self.prompt_set["pairwise.system"]}, {"role": "user", "content": user}]

    async def judge(self, question: str, first: str, second: str) -> dict[str, Any]:
        res = await self.model.chat(self.messages(question, first, second),
                                    SamplingParams(temperature=0.0, top_p=1.0, max_tokens=self.cfg.max_tokens),
                                    prompt_version=self.prompt_set.version)
        scores = parse_score(res.text)
        return {"outcome": scores_outcome(scores), "review": res.text, "scores": list(scores) if scores else None,
                "calls": 1, "truncated": res.truncated}


class ReflectiveJudge:
    """k sampled analyses -> anchor (most confident) -> compare each other with the anchor -> majority vote."""

    def __init__(self, model: CachedChatModel, cfg: JudgeSettings, prompt_set: PromptSet | None = None) -> None:
        if cfg.k < 1:
            raise UserError(f"--k must be >= 1, got {cfg.k}")
        self.model = model
        self.cfg = cfg
        self.prompt_set = prompt_set or load_prompt_set("judge", cfg.prompt_set or "reflective")

    async def _ask(self, system_key: str, user: str, params: SamplingParams) -> str:
        msgs = [{"role": "system", "content": self.prompt_set[system_key]}, {"role": "user", "content": user}]
        return (await self.model.chat(msgs, params, prompt_version=self.prompt_set.version)).text

    async def judge(self, question: str, first: str, second: str) -> dict[str, Any]:
        cfg = self.cfg
        user = fill(self.prompt_set["analysis.user"], question=question, answer_1=first, answer_2=second)
        texts = await asyncio.gather(*[
            self._ask("analysis.system", user, SamplingParams(temperature=cfg.sample_temperature, top_p=1.0,
                                                              max_tokens=cfg.max_tokens, seed=i))
            for i in range(cfg.k)])
        analyses = []
        for i, t in enumerate(texts):
            verdict, conf = parse_verdict(t)
            analyses.append({"sample": i, "verdict": verdict, "confidence": conf, "text": t})
        calls = cfg.k
        parsed = [a for a in analyses if a["verdict"] is not None]
        if not parsed:
            return {"outcome": None, "analyses": analyses, "anchor": None, "comparisons": [], "votes": {},
                    "calls": calls, "review": None}
        anchor = choose_anchor(parsed)
        others = [a for a in parsed if a is not anchor]
        comparisons = []
        for j, other in enumerate(others):
            anchor_is_a = j % 2 == 0
            a_text, b_text = (anchor["text"], other["text"]) if anchor_is_a else (other["text"], anchor["text"])
            cu = fill(self.prompt_set["compare.user"], question=question, answer_1=first, answer_2=second,
                      analysis_a=a_text, analysis_b=b_text)
            reply = await self._ask("compare.system", cu, SamplingParams(temperature=0.0, top_p=1.0,
                                                                          max_tokens=cfg.max_tokens))
            calls += 1
            sounder = parse_sounder(reply)
            survives = sounder is not None and (sounder == "B") == anchor_is_a
            comparisons.append({"sample": other["sample"], "anchor_shown_as": "A" if anchor_is_a else "B",
                                "sounder": sounder, "survives": survives, "text": reply})
        outcome, votes = vote(anchor, others, [c["survives"] for c in comparisons])
        return {"outcome": outcome, "analyses": analyses, "anchor": anchor["sample"], "comparisons": comparisons,
                "votes": dict(sorted(votes.items())), "calls": calls, "review": None}


def choose_anchor(parsed: list[dict[str, Any]]) -> dict[str, Any]:
    """The most confident parsed analysis (missing confidence = 0; ties -> lowest sample index)."""
    return max(parsed, key=lambda a: (a["confidence"] or 0.0, -a["sample"]))


def vote(anchor: dict[str, Any], others: list[dict[str, Any]], survives: list[bool]) -> tuple[Outcome, Counter[str]]:
    """Majority vote over the anchor and the analyses judged sounder than it; a tie between vote counts goes to the
    anchor's verdict when it is among the tied, else to "tie"."""
    survivors = [anchor] + [o for o, ok in zip(others, survives) if ok]
    votes: Counter[str] = Counter(a["verdict"] for a in survivors)
    top = max(votes.values())
    tied = [v for v, n in votes.items() if n == top]
    outcome: Outcome = tied[0] if len(tied) == 1 else (anchor["verdict"] if anchor["verdict"] in tied else "tie")
    return outcome, votes


def make_judge(model: CachedChatModel, cfg: JudgeSettings, prompt_set: PromptSet | None = None) -> OrderJudge:
    if cfg.method not in METHODS:
        raise UserError(f"--judge must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    return PlainJudge(model, cfg, prompt_set) if cfg.method == "plain" else ReflectiveJudge(model, cfg, prompt_set)
