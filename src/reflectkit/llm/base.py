"""The ChatModel protocol shared by every oracle/judge client."""

from __future__ import annotations

from contextvars import ContextVar
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
    #: None: no log-probs; 0: the chosen tokens' log-probs; k > 0: also the top-k alternatives per token
    logprobs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["stop"] is not None:
            d["stop"] = list(d["stop"])
        if d["logprobs"] is None:  # keeps the cache keys of requests without log-probs as they always were
            del d["logprobs"]
        return d


@dataclass
class TokenLogprob:
    """One generated token with its log-probability (and the top alternatives when asked for)."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "top": dict(self.top)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenLogprob":
        return cls(token=str(d.get("token", "")), logprob=float(d["logprob"]),
                   top={str(k): float(v) for k, v in (d.get("top") or {}).items()})


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
    #: per generated token, when the request asked for log-probs and the model returned them (else None)
    logprobs: list[TokenLogprob] | None = None

    @property
    def truncated(self) -> bool:
        """True when the answer was cut off by ``max_tokens``."""
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }
        if self.logprobs is not None:
            d["logprobs"] = [t.to_dict() for t in self.logprobs]
        return d

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
            logprobs=[TokenLogprob.from_dict(t) for t in d["logprobs"]] if d.get("logprobs") is not None else None,
        )


class FatalModelError(Exception):
    """An error that no retry can fix (wrong key, unknown model, unreachable endpoint): the run stops with exit 2."""


class EndpointDrift(FatalModelError):
    """The endpoint stopped answering like the model it was verified as (a canary or a passive check failed).

    The engine records the rows answered since the last good check as ``suspect`` (``suspects`` of the client) and
    stops with exit code 3 (``--on-drift stop``)."""

    exit_code = 3

    def __init__(self, message: str, *, call_index: int | None = None) -> None:
        super().__init__(message)
        self.call_index = call_index


#: the index of the dataset row a row step is processing (set by the engine); clients use it to tie calls to rows
current_row: ContextVar[int | None] = ContextVar("reflectkit_current_row", default=None)


class RequestFailed(Exception):
    """A single request failed after all retries (or with a non-retryable 4xx): the row is recorded as failed."""


#: parts of a client's ``identity`` that grow while it runs (cache counters, canary records, fingerprints seen)
VOLATILE_IDENTITY_KEYS = ("cache", "verification", "system_fingerprints")


def stable_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """What a client is, without what it has done so far: safe to put into output rows, which must be byte-identical
    whether a run was resumed, replayed from the cache or spread over workers."""
    return {k: v for k, v in identity.items() if k not in VOLATILE_IDENTITY_KEYS}


def model_name_identity(cache_identity: str) -> str:
    """A cache identity without the verified-identity hash an endpoint's carries (``openai-compatible:NAME#HASH``):
    what output rows record, so that a ``--cache-only`` replay (which cannot verify) writes the same rows. The hash
    is in the manifest's verification section and in every cache entry's producer record."""
    return cache_identity.split("#", 1)[0]


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
