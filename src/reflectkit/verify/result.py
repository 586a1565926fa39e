"""What every tier returns, and how probes are asked (with their cost counted)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal

from reflectkit.llm.base import ChatResult, Message, SamplingParams

Verdict = Literal["consistent", "inconsistent", "inconclusive"]
#: anything that answers a chat request: an endpoint client's or a local model's ``chat``
Ask = Callable[[list[Message], SamplingParams], Awaitable[ChatResult]]


@dataclass
class Cost:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "Cost") -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3)}


@dataclass
class TierResult:
    tier: str
    verdict: Verdict
    summary: str  # one line of evidence for the console
    evidence: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)  # what the endpoint side spent

    def to_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "verdict": self.verdict, "summary": self.summary, "evidence": self.evidence,
                **self.cost.to_dict()}


async def ask_all(ask: Ask, requests: list[tuple[list[Message], SamplingParams]], *, concurrency: int = 4,
                  cost: Cost | None = None) -> list[ChatResult]:
    """Ask every request (at most ``concurrency`` in flight), in order; counts the cost into ``cost``."""
    sem = asyncio.Semaphore(max(1, concurrency))
    t0 = time.monotonic()

    async def one(messages: list[Message], params: SamplingParams) -> ChatResult:
        async with sem:
            return await ask(messages, params)

    results = list(await asyncio.gather(*(one(m, p) for m, p in requests)))
    if cost is not None:
        cost.calls += len(results)
        cost.prompt_tokens += sum(r.prompt_tokens for r in results)
        cost.completion_tokens += sum(r.completion_tokens for r in results)
        cost.seconds += time.monotonic() - t0
    return results
