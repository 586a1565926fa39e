"""The LLM judge: "are these two the same question, rephrased?" (LLM Decontaminator prompts by default).

Verdicts are ``True``, ``False`` or ``unknown``. Upstream accepts only a reply that is exactly ``True`` or
``False`` and, after repeated unparsable replies, silently counts the pair as ``False``. Here a reply is read
leniently (case, surrounding quotes/punctuation, a leading ``True``/``False`` word) but a reply that says
neither, or both, is ``unknown``: it is never counted as clean by default (``--unknown-as``).

Resume: each judged pair is stored in the run ledger's keyed table ``judge_pairs`` (keyed by model, prompt
version, variant and both texts), and every call also goes through the response cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Literal, Protocol

from reflectkit.errors import UserError
from reflectkit.llm.base import Message, RequestFailed, SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import PromptSet

Verdict = Literal["True", "False", "unknown"]
VARIANTS = ("math", "code", "knowledge", "number_substitution")
#: Upstream (llm_detect.py): temperature 0.3. One short word is expected; 16 tokens leave room for "True." etc.
SAMPLING = SamplingParams(temperature=0.3, top_p=1.0, max_tokens=16, seed=0)
_PLACEHOLDER_RE = re.compile(r"\{(test|train)\}")
_WORD_RE = re.compile(r"\b(true|false)\b", re.IGNORECASE)


def variant_for(benchmark: str, choice: str) -> str:
    """``auto``: math for GSM8K, knowledge for everything else (upstream has no instruction-following variant)."""
    if choice != "auto":
        if choice not in VARIANTS:
            raise UserError(f"--judge-prompt must be auto or one of {', '.join(VARIANTS)}, got {choice!r}")
        return choice
    return "math" if benchmark.startswith("gsm8k") else "knowledge"


def messages(prompts: PromptSet, variant: str, test: str, train: str) -> list[Message]:
    user = _PLACEHOLDER_RE.sub(lambda m: test if m.group(1) == "test" else train, prompts["user"])
    return [{"role": "system", "content": prompts[f"system_{variant}"]}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> Verdict:
    """``True``/``False`` when the reply says exactly one of them (first word, or the only one mentioned)."""
    t = text.strip().strip("'\"`*.:!“”‘’ \n\t")
    low = t.lower()
    if low in ("true", "false"):
        return "True" if low == "true" else "False"
    found = {w.lower() for w in _WORD_RE.findall(t)}
    if len(found) == 1:
        first = re.match(r"^\W*(true|false)\b", low)
        if first or len(t.split()) <= 6:  # a short reply that mentions exactly one of the words
            return "True" if found == {"true"} else "False"
    return "unknown"


@dataclass
class Pair:
    benchmark: str
    item: int  # global benchmark item index
    row: int  # training row index
    test: str
    train: str
    variant: str
    similarity: float

    def key(self, model_identity: str, prompt_version: str) -> str:
        payload = json.dumps([model_identity, prompt_version, self.variant, self.test, self.train], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Judgement:
    verdict: str  # True | False | unknown | failed
    raw: str
    reason: str | None = None


class PairStore(Protocol):
    """Where finished judgements are kept: the run ledger's keyed table (``ctx.store("judge_pairs")``)."""

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


MapConcurrent = Callable[[Callable[[Any], Awaitable[Any]], Iterable[Any]], Awaitable[list[Any]]]


async def judge_pairs(model: CachedChatModel, prompts: PromptSet, pairs: list[Pair], store: PairStore | None,
                      map_concurrent: MapConcurrent) -> dict[str, Judgement]:
    """Judge every pair not yet in ``store``; returns {pair key: judgement} for all pairs.

    Each judgement is stored as soon as it arrives, so a run killed mid-judging resumes without asking the judge
    again for the pairs it already answered. A request that fails after retries gives verdict ``failed`` (not
    stored, so a re-run retries it). ``map_concurrent`` is the run's (``ctx.map_concurrent``).
    """
    ident, version = model.cache_identity, prompts.version
    out: dict[str, Judgement] = {}
    todo: dict[str, Pair] = {}
    for p in pairs:
        k = p.key(ident, version)
        done = store.get(k) if store is not None else None
        if done is not None:
            out[k] = Judgement(done["verdict"], done["raw"])
        elif k not in todo:
            todo[k] = p

    async def one(item: tuple[str, Pair]) -> None:
        k, p = item
        try:
            res = await model.chat(messages(prompts, p.variant, p.test, p.train), SAMPLING, prompt_version=version)
        except RequestFailed as exc:
            out[k] = Judgement("failed", "", str(exc))
            return
        j = Judgement(parse_verdict(res.text), res.text)
        if store is not None:
            store.put(k, {"verdict": j.verdict, "raw": j.raw})
        out[k] = j

    await map_concurrent(one, list(todo.items()))
    return out
