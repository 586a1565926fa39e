"""The two pairwise judges: ``plain`` (the verbatim Cherry / Reflection-Tuning GPT-4 judge) and ``reflective``
(ReflectRM, Qin et al., arXiv 2604.07506, 2026: N analyses, an anchor, pairwise reflection against it, a vote).

The reflective judge has two procedures (``--procedure``):

* ``reflectrm`` (default, the paper's): N = 8 analyses at temperature 1.0; the anchor is the analysis with the
  highest *token confidence* (the mean log-prob of its lowest 10% tokens, after DeepConf, Fu et al. 2025); every
  other analysis is compared with the anchor (the two in seeded random order); W = the analyses judged better than
  the anchor; verdict = majority over W; if W is empty or its vote ties, the anchor joins W and the vote is taken
  again. No tie outcome.
* ``anchor-vote`` (reflectkit's earlier approximation, kept as a named variant): k = 4 at 0.7, the anchor by
  verbalised confidence, anchor shown as A/B alternately, the vote always includes the anchor, ties allowed.

Both judge *one order* at a time; :class:`~reflectkit.evaluate.judge_step.JudgeStep` always runs both orders.
See ``prompts/judge/reflective/SOURCE.md`` for what follows the paper and what is a choice made here.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections import Counter
from typing import Any, Protocol, Sequence

from reflectkit.errors import UserError
from reflectkit.evaluate.judge_parse import Outcome, parse_score, parse_sounder, parse_verdict, scores_outcome
from reflectkit.llm.base import SamplingParams, TokenLogprob
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import PromptSet, load_prompt_set

METHODS = ("plain", "reflective")
PROCEDURES = ("reflectrm", "anchor-vote")
CONFIDENCES = ("token", "verbalised")
#: per procedure: (analyses, temperature, confidence, prompt set)
PROCEDURE_DEFAULTS: dict[str, tuple[int, float, str, str]] = {
    "reflectrm": (8, 1.0, "token", "reflectrm"),
    "anchor-vote": (4, 0.7, "verbalised", "reflective"),
}
_PH = re.compile(r"\{(question|answer_1|answer_2|analysis_a|analysis_b)\}")


def fill(template: str, **values: str) -> str:
    """One-pass placeholder fill: braces inside answers are never re-expanded."""
    return _PH.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class JudgeSettings(Protocol):
    """What the judges read from a step's options (:class:`reflectkit.evaluate.judge_step.JudgeOptions`)."""

    method: str
    max_tokens: int
    k: int | None  # default: per procedure
    sample_temperature: float | None  # default: per procedure
    prompt_set: str | None  # default: "paper" for plain, per procedure for reflective
    procedure: str
    confidence: str | None  # default: per procedure
    tail_fraction: float
    seed: int


def resolved(cfg: JudgeSettings) -> dict[str, Any]:
    """The reflective judge's effective settings (the procedure's defaults where an option is unset)."""
    k, temp, conf, pset = PROCEDURE_DEFAULTS[cfg.procedure]
    return {"procedure": cfg.procedure, "k": cfg.k if cfg.k is not None else k,
            "sample_temperature": cfg.sample_temperature if cfg.sample_temperature is not None else temp,
            "confidence": cfg.confidence or conf, "tail_fraction": cfg.tail_fraction, "seed": cfg.seed,
            "prompt_set": cfg.prompt_set or pset}


def judge_prompt_set(cfg: JudgeSettings) -> PromptSet:
    if cfg.method == "plain":
        return load_prompt_set("judge", cfg.prompt_set or "paper")
    return load_prompt_set("judge", resolved(cfg)["prompt_set"])


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


# --------------------------------------------------------------------------------------------- confidence


def token_confidence(logprobs: Sequence[float], fraction: float = 0.1) -> float:
    """Mean log-prob of the lowest ``fraction`` of the tokens (at least one): the "bottom 10%" confidence of
    Deep Think with Confidence (Fu et al., 2025) as ReflectRM uses it to pick its anchor. Higher = more confident.

    >>> token_confidence([-0.1, -2.0, -0.3, -0.2, -0.5, -0.1, -0.1, -0.4, -0.2, -0.1])
    -2.0
    >>> round(token_confidence([-1.0, -3.0, -0.5, -2.0], fraction=0.5), 3)
    -2.5
    """
    if not logprobs:
        raise ValueError("token confidence needs at least one token log-prob")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(logprobs)))
    low = sorted(logprobs)[:n]
    return float(sum(low) / n)


def analysis_logprobs(lp: list[TokenLogprob] | None) -> list[float] | None:
    return [t.logprob for t in lp] if lp else None


# --------------------------------------------------------------------------------------------- votes


def choose_anchor(parsed: list[dict[str, Any]], missing: float = 0.0) -> dict[str, Any]:
    """The most confident parsed analysis (a missing confidence counts as ``missing``: 0 on the verbalised 0-100
    scale; ties -> lowest sample index)."""
    return max(parsed, key=lambda a: (a["confidence"] if a["confidence"] is not None else missing, -a["sample"]))


def vote(anchor: dict[str, Any], others: list[dict[str, Any]], survives: list[bool]) -> tuple[Outcome, Counter[str]]:
    """``anchor-vote``: majority over the anchor and the analyses judged sounder than it; a tie between vote counts
    goes to the anchor's verdict when it is among the tied, else to "tie"."""
    survivors = [anchor] + [o for o, ok in zip(others, survives) if ok]
    votes: Counter[str] = Counter(a["verdict"] for a in survivors)
    top = max(votes.values())
    tied = [v for v, n in votes.items() if n == top]
    outcome: Outcome = tied[0] if len(tied) == 1 else (anchor["verdict"] if anchor["verdict"] in tied else "tie")
    return outcome, votes


def paper_vote(anchor: dict[str, Any], others: list[dict[str, Any]],
               better: list[bool]) -> tuple[Outcome, list[int], Counter[str], bool]:
    """``reflectrm``: W = the analyses judged better than the anchor; the verdict is the majority over W; when W is
    empty or its vote ties, the anchor is added to W and the vote taken again (ReflectRM, Sec. 3 inference).

    Returns (verdict, W as sample indices, the deciding vote counts, whether the anchor was added)."""
    w = [o for o, ok in zip(others, better) if ok]
    votes: Counter[str] = Counter(a["verdict"] for a in w)
    added = not w or _tied(votes)
    if added:
        w = w + [anchor]
        votes = Counter(a["verdict"] for a in w)
    top = max(votes.values())
    tied = [v for v, n in votes.items() if n == top]
    # with two possible verdicts the anchor's vote always breaks a tie; kept total for safety
    outcome: Outcome = tied[0] if len(tied) == 1 else anchor["verdict"]
    return outcome, [a["sample"] for a in w], votes, added


def _tied(votes: Counter[str]) -> bool:
    counts = sorted(votes.values(), reverse=True)
    return len(counts) > 1 and counts[0] == counts[1]


def seeded_anchor_first(seed: int, question: str, first: str, second: str, sample: int) -> bool:
    """Seeded coin for a comparison's order (the same pair, order and sample always get the same order)."""
    h = hashlib.sha256(f"{seed}\0{question}\0{first}\0{second}\0{sample}".encode()).digest()
    return h[0] % 2 == 0


# --------------------------------------------------------------------------------------------- the judge


class ReflectiveJudge:
    """N sampled analyses -> anchor (most confident) -> compare each other with the anchor -> vote."""

    def __init__(self, model: CachedChatModel, cfg: JudgeSettings, prompt_set: PromptSet | None = None) -> None:
        if cfg.procedure not in PROCEDURES:
            raise UserError(f"--procedure must be one of {', '.join(PROCEDURES)}, got {cfg.procedure!r}")
        self.model = model
        self.cfg = cfg
        self.r = resolved(cfg)
        if self.r["k"] < 1:
            raise UserError(f"--k must be >= 1, got {self.r['k']}")
        self.prompt_set = prompt_set or load_prompt_set("judge", self.r["prompt_set"])

    async def _ask(self, system_key: str, user: str, params: SamplingParams) -> Any:
        msgs = [{"role": "system", "content": self.prompt_set[system_key]}, {"role": "user", "content": user}]
        return await self.model.chat(msgs, params, prompt_version=self.prompt_set.version)

    async def analyses(self, question: str, first: str, second: str) -> list[dict[str, Any]]:
        """The N rollouts with their verdicts and both confidences (token: None when no log-probs came back)."""
        r, cfg = self.r, self.cfg
        user = fill(self.prompt_set["analysis.user"], question=question, answer_1=first, answer_2=second)
        want_lp = 0 if r["confidence"] == "token" else None
        results = await asyncio.gather(*[
            self._ask("analysis.system", user, SamplingParams(temperature=r["sample_temperature"], top_p=1.0,
                                                              max_tokens=cfg.max_tokens, seed=i, logprobs=want_lp))
            for i in range(r["k"])])
        out = []
        for i, res in enumerate(results):
            verdict, conf = parse_verdict(res.text)
            lps = analysis_logprobs(res.logprobs) if want_lp is not None else None
            tc = token_confidence(lps, r["tail_fraction"]) if lps else None
            if r["procedure"] == "reflectrm" and verdict == "tie":
                verdict = None  # the paper's analyses pick a side; a "tie" takes no part (recorded)
            out.append({"sample": i, "verdict": verdict, "verbalised_confidence": conf, "token_confidence": tc,
                        "tokens": len(lps) if lps else 0, "text": res.text})
        return out

    async def judge(self, question: str, first: str, second: str) -> dict[str, Any]:
        r = self.r
        analyses = await self.analyses(question, first, second)
        calls = len(analyses)
        parsed = [a for a in analyses if a["verdict"] is not None]
        # token confidence where every analysis got log-probs; otherwise the verbalised one (never a mix of scales)
        used = "token" if r["confidence"] == "token" and all(a["token_confidence"] is not None for a in analyses) \
            else "verbalised"
        for a in analyses:
            a["confidence"] = a["token_confidence"] if used == "token" else a["verbalised_confidence"]
        base = {"analyses": analyses, "confidence_used": used, "procedure": r["procedure"],
                "confidence_fallback": used != r["confidence"]}
        if not parsed:
            return {"outcome": None, **base, "anchor": None, "comparisons": [], "W": [], "votes": {},
                    "anchor_added": None, "calls": calls, "review": None}
        anchor = choose_anchor(parsed, missing=0.0 if used == "verbalised" else -math.inf)
        others = [a for a in parsed if a is not anchor]
        comparisons = []
        for j, other in enumerate(others):
            if r["procedure"] == "reflectrm":
                anchor_is_a = seeded_anchor_first(r["seed"], question, first, second, other["sample"])
            else:
                anchor_is_a = j % 2 == 0
            a_text, b_text = (anchor["text"], other["text"]) if anchor_is_a else (other["text"], anchor["text"])
            cu = fill(self.prompt_set["compare.user"], question=question, answer_1=first, answer_2=second,
                      analysis_a=a_text, analysis_b=b_text)
            reply = (await self._ask("compare.system", cu, SamplingParams(temperature=0.0, top_p=1.0,
                                                                           max_tokens=self.cfg.max_tokens))).text
            calls += 1
            sounder = parse_sounder(reply)
            better = sounder is not None and (sounder == "B") == anchor_is_a
            comparisons.append({"sample": other["sample"], "anchor_shown_as": "A" if anchor_is_a else "B",
                                "sounder": sounder, "better": better, "text": reply})
        flags = [c["better"] for c in comparisons]
        if r["procedure"] == "reflectrm":
            outcome, w, votes, added = paper_vote(anchor, others, flags)
        else:
            outcome, votes = vote(anchor, others, flags)
            w, added = [anchor["sample"]] + [o["sample"] for o, ok in zip(others, flags) if ok], True
        return {"outcome": outcome, **base, "anchor": anchor["sample"], "comparisons": comparisons, "W": w,
                "votes": dict(sorted(votes.items())), "anchor_added": added, "calls": calls, "review": None}


def make_judge(model: CachedChatModel, cfg: JudgeSettings, prompt_set: PromptSet | None = None) -> OrderJudge:
    if cfg.method not in METHODS:
        raise UserError(f"--judge must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    return PlainJudge(model, cfg, prompt_set) if cfg.method == "plain" else ReflectiveJudge(model, cfg, prompt_set)
