"""The ChatModel protocol shared by every oracle/judge client."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters; part of every cache key. Defaults follow Reflection-Tuning (temperature 0, top_p 1)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    response_format: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["stop"] is not None:
            d["stop"] = list(d["stop"])
        return d


@dataclass
class ChatResult:
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    cached: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """True when the answer was cut off by ``max_tokens``."""
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, cached: bool = False) -> "ChatResult":
        return cls(
            text=d.get("text", ""),
            finish_reason=d.get("finish_reason"),
            prompt_tokens=int(d.get("prompt_tokens") or 0),
            completion_tokens=int(d.get("completion_tokens") or 0),
            model=d.get("model", ""),
            system_fingerprint=d.get("system_fingerprint"),
            cached=cached,
        )


class FatalModelError(Exception):
    """An error that no retry can fix (wrong key, unknown model, unreachable endpoint): the run stops with exit 2."""


class RequestFailed(Exception):
    """A single request failed after all retries (or with a non-retryable 4xx): the row is recorded as failed."""


@runtime_checkable
class ChatModel(Protocol):
    """What every model client offers.

    ``identity`` describes the model as reported by the endpoint (or the GGUF sha256 for embedded models);
    ``cache_identity`` is the stable part of it used in cache keys.
    """

    identity: dict[str, Any]
    cache_identity: str

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult: ...

    async def aclose(self) -> None: ...
