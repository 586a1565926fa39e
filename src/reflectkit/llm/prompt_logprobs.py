"""Prompt log-probabilities from an OpenAI-compatible ``/v1/completions`` endpoint.

Two request shapes return a log-probability for every prompt token:

* ``echo``: ``{"echo": true, "logprobs": k, "max_tokens": 1}`` (the OpenAI legacy completions API, also vLLM):
  ``choices[0].logprobs.tokens`` / ``token_logprobs`` cover the prompt followed by the generated token, the first
  prompt token's log-prob being null. This is how lm-evaluation-harness scores log-likelihoods over an API.
* ``prompt_logprobs``: vLLM's extra parameter (``{"prompt_logprobs": 0}``): ``choices[0].prompt_logprobs`` is a
  list, one entry per prompt token (the first null), each ``{token_id: {"logprob", "rank", "decoded_token"}}``.

``max_tokens`` is 1, never 0: llama-cpp-python reads ``max_tokens <= 0`` as "no limit". Which entries belong to the
prompt is taken from ``usage.prompt_tokens`` (the correctness probe, :mod:`reflectkit.scoring.probe`, has checked
that the server's entries line up with it before any row is scored).

The client bounds requests in flight, retries 429/5xx/timeouts/connection errors with
:class:`~reflectkit.llm.retry.RetryPolicy`, caches parsed answers in the shared
:class:`~reflectkit.llm.cache.ResponseCache` (key: :func:`~reflectkit.llm.cache.cache_key` of the endpoint's
identity, the request body -- prompt text or token ids and parameters -- as one message, and
:data:`CACHE_VERSION`; the API key is never part of it, and ``reflectkit cache export/import`` carry the entries),
and counts requests, cache hits and prompt tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import httpx

from reflectkit.llm.base import FatalModelError, RequestFailed, SamplingParams
from reflectkit.llm.cache import ResponseCache, cache_key
from reflectkit.llm.retry import RetryPolicy, parse_retry_after
from reflectkit.llm.secrets import redact, register_secret

LogprobAPI = Literal["echo", "prompt_logprobs"]
Prompt = str | Sequence[int]
#: bumped when the parsed form stored in the cache changes
CACHE_VERSION = "prompt-logprobs-1"


@dataclass
class PromptLogprobs:
    """The server's view of one prompt: its tokens (text pieces; ids when the server gives them) and, per token,
    log p(token | tokens before it) (None for the first token, which nothing predicts)."""

    tokens: list[str]
    logprobs: list[float | None]
    token_ids: list[int] | None = None
    #: the generated token, when the answer had one (text, log-prob, top alternatives)
    generated: "Generated | None" = None
    #: what the raw answer held: log-prob entries in all, and ``usage.completion_tokens`` (for the probe's count check)
    entries: int = 0
    completion_tokens: int = 0
    #: per prompt token, the top alternatives the server listed (echo answers; kept for the probe, never cached)
    tops: list[dict[str, float]] | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.logprobs)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tokens": self.tokens, "logprobs": self.logprobs}
        if self.token_ids is not None:
            d["token_ids"] = self.token_ids
        if self.generated is not None:
            d["generated"] = self.generated.to_dict()
        d["entries"], d["completion_tokens"] = self.entries, self.completion_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptLogprobs":
        g = d.get("generated")
        return cls(list(d["tokens"]), [None if v is None else float(v) for v in d["logprobs"]],
                   list(d["token_ids"]) if d.get("token_ids") is not None else None,
                   Generated.from_dict(g) if g else None, int(d.get("entries", 0)), int(d.get("completion_tokens", 0)))


@dataclass
class Generated:
    """One generated token with its log-prob and the top alternatives the server listed."""

    text: str
    logprob: float | None
    top: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "logprob": self.logprob, "top": self.top}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Generated":
        return cls(str(d.get("text", "")), None if d.get("logprob") is None else float(d["logprob"]),
                   {str(k): float(v) for k, v in (d.get("top") or {}).items()})


class BadAnswer(RequestFailed):
    """The endpoint answered, but not with what was asked for (no log-probs, a short list...)."""


class PromptLogprobsClient:
    """Async client for prompt log-probs at ``base_url`` (``.../v1``) serving ``model``.

    ``setting_name`` is the flag prefix named in error messages (``--student-``).
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, concurrency: int = 8,
                 retry: RetryPolicy | None = None, cache: ResponseCache | None = None,
                 setting_name: str = "--student-") -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.setting_name = setting_name
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise FatalModelError(f"environment variable {api_key_env} (named by {setting_name}api-key-env) "
                                      "is not set")
            register_secret(key)
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(headers=headers, timeout=self.retry.timeout)
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._rng = random.Random()
        #: never holds the key: what the answers are cached under
        self.identity = f"openai-compatible:{self.base_url}:{model}"
        self.requests = 0
        self.retries = 0
        self.cache_hits = 0
        self.prompt_tokens = 0

    # ------------------------------------------------------------------ raw
    async def complete(self, body: dict[str, Any], *, max_attempts: int | None = None) -> dict[str, Any]:
        """POST ``/completions`` with retries; the parsed JSON. Auth and not-found errors are fatal; other 4xx fail
        the request with the server's message. ``max_attempts`` overrides the policy's (the probe asks twice)."""
        url = f"{self.base_url}/completions"
        payload = {"model": self.model, **body}
        limit = max_attempts or self.retry.max_attempts
        attempt = 0
        async with self._sem:
            while True:
                attempt += 1
                self.requests += 1
                try:
                    resp = await self._http.post(url, content=json.dumps(payload))
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    if attempt >= limit:
                        raise RequestFailed(f"{type(exc).__name__} after {attempt} attempts: "
                                            f"{redact(str(exc))[:300]}") from None
                    self.retries += 1
                    await asyncio.sleep(self.retry.backoff(attempt, None, self._rng))
                    continue
                status = resp.status_code
                if status == 200:
                    try:
                        data = resp.json()
                    except ValueError:
                        raise BadAnswer(f"the endpoint answered HTTP 200 with no JSON: {resp.text[:200]!r}") from None
                    if not isinstance(data, dict):
                        raise BadAnswer("the endpoint answered with JSON that is not an object")
                    return data
                text = " ".join(redact(resp.text[:300]).split())  # one line, whatever the server sent
                if status in (401, 403):
                    raise FatalModelError(f"the endpoint ({self.setting_name}base-url {self.base_url}) refused the "
                                          f"request (HTTP {status}); check {self.setting_name}api-key-env")
                if status == 404 and "model" in text.lower():
                    raise FatalModelError(f"model {self.model!r} ({self.setting_name}model) not found at "
                                          f"{self.base_url}: {text}")
                transient = status in (408, 409, 429) or (status >= 500 and "validation error" not in text)
                if transient and attempt < limit:
                    self.retries += 1
                    await asyncio.sleep(self.retry.backoff(attempt, parse_retry_after(resp.headers), self._rng))
                    continue
                raise RequestFailed(f"HTTP {status} from {self.base_url}/completions: {text}")

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ typed requests
    async def prompt_logprobs(self, prompt: Prompt, *, api: LogprobAPI = "echo", use_cache: bool = True,
                              top: int = 1, max_attempts: int | None = None) -> PromptLogprobs:
        """Every prompt token's log-prob (the generated token is returned apart, in ``generated``)."""
        body = request_body(prompt, api=api, top=top)
        messages, params = cache_request(body)
        key = cache_key(self.identity, messages, params, CACHE_VERSION)
        if use_cache and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return PromptLogprobs.from_dict(hit)
        data = await self.complete(body, max_attempts=max_attempts)
        out = parse_prompt_logprobs(data, api)
        self.prompt_tokens += len(out)
        if use_cache and self.cache is not None:
            request = {"messages": messages, "params": params.to_dict(), "prompt_version": CACHE_VERSION}
            self.cache.put(key, self.identity, request, out.to_dict())
        return out

    async def generate_one(self, prompt: Prompt, *, top: int = 5, max_attempts: int | None = None) -> Generated:
        """One greedy token after ``prompt`` with its log-prob (never cached: the probe asks the live server)."""
        body = {"prompt": prompt if isinstance(prompt, str) else list(prompt), "max_tokens": 1, "temperature": 0.0,
                "logprobs": top}
        data = await self.complete(body, max_attempts=max_attempts)
        choice = _choice(data)
        tokens, values, tops = _legacy(choice.get("logprobs"))
        text = str(choice.get("text") or "")
        if not tokens or not values:
            return Generated(text, None)
        return Generated(str(tokens[0]), None if values[0] is None else float(values[0]), _top(tops[0] if tops else None))



def cache_request(body: dict[str, Any]) -> tuple[list[dict[str, str]], SamplingParams]:
    """The request in the shape every cache entry has (``messages``, ``params``), so that ``reflectkit cache
    export``/``import`` carry and re-verify these entries like chat answers: the body is the one message."""
    return ([{"role": "completions", "content": json.dumps(body, sort_keys=True, ensure_ascii=False)}],
            SamplingParams(temperature=float(body.get("temperature", 0.0)), max_tokens=int(body.get("max_tokens", 1)),
                           logprobs=int(body.get("logprobs") or 0)))


def request_body(prompt: Prompt, *, api: LogprobAPI, top: int = 1) -> dict[str, Any]:
    """The JSON body (without ``model``) that asks for ``prompt``'s log-probs with ``api``."""
    p: Any = prompt if isinstance(prompt, str) else [int(t) for t in prompt]
    body: dict[str, Any] = {"prompt": p, "max_tokens": 1, "temperature": 0.0}
    if api == "echo":
        body.update(echo=True, logprobs=top)
    else:
        body.update(prompt_logprobs=0, logprobs=top)
    return body


def _choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadAnswer("the endpoint returned no choices")
    return choices[0]


def _top(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {str(k): float(v) for k, v in d.items() if isinstance(v, (int, float))}


def parse_prompt_logprobs(data: dict[str, Any], api: LogprobAPI) -> PromptLogprobs:
    """The prompt part of a completions answer. ``usage.prompt_tokens`` says how many entries are the prompt's;
    an answer with fewer entries than that carries no prompt log-probs (:class:`BadAnswer`)."""
    choice = _choice(data)
    usage = data.get("usage") or {}
    n_prompt = usage.get("prompt_tokens")
    n_completion = int(usage.get("completion_tokens") or 0)
    gen: Generated | None = None
    if api == "prompt_logprobs":
        plp = choice.get("prompt_logprobs")
        if not isinstance(plp, list) or not plp:
            raise BadAnswer("the answer has no prompt_logprobs")
        tokens: list[str] = []
        ids: list[int] = []
        values: list[float | None] = []
        for k, entry in enumerate(plp):
            if entry is None:
                if k != 0:
                    raise BadAnswer(f"prompt_logprobs[{k}] is null (only the first may be)")
                tokens.append("")
                ids.append(-1)
                values.append(None)
                continue
            if len(entry) != 1:  # asked with prompt_logprobs=0: the prompt token alone
                raise BadAnswer(f"prompt_logprobs[{k}] has {len(entry)} entries, expected the prompt token only")
            (tid, info), = entry.items()
            ids.append(int(tid))
            info = info if isinstance(info, dict) else {"logprob": info}
            tokens.append(str(info.get("decoded_token", "")))
            values.append(float(info["logprob"]))
        lp = choice.get("logprobs") or {}
        if lp.get("token_logprobs"):
            gen = Generated(str((lp.get("tokens") or [""])[0]), lp["token_logprobs"][0],
                            _top((lp.get("top_logprobs") or [None])[0]))
        if ids and ids[0] == -1:  # the first entry is null: its id only where the server lists the prompt's ids
            ids[0] = _first_id(choice)
        return PromptLogprobs(tokens, values, ids, gen, len(plp) + (1 if gen else 0), n_completion)
    tokens_raw, values_raw, tops = _legacy(choice.get("logprobs"))
    if not values_raw:
        raise BadAnswer("the answer has no log-probs")
    tokens_all = [str(t) for t in tokens_raw]
    values_all = [None if v is None else float(v) for v in values_raw]
    if not isinstance(n_prompt, int) or n_prompt <= 0:
        raise BadAnswer("the answer has no usage.prompt_tokens")
    if len(values_all) < n_prompt:
        raise BadAnswer(f"the answer has {len(values_all)} log-prob entr{'y' if len(values_all) == 1 else 'ies'} for "
                        f"a {n_prompt}-token prompt and {n_completion} generated token(s)")
    if len(values_all) > n_prompt:
        gen = Generated(tokens_all[n_prompt] if len(tokens_all) > n_prompt else "", values_all[n_prompt],
                        _top(tops[n_prompt] if len(tops) > n_prompt else None))
    return PromptLogprobs(tokens_all[:n_prompt], values_all[:n_prompt], None, gen, len(values_all), n_completion,
                          [_top(t) for t in tops[:n_prompt]])


def _legacy(lp: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """(tokens, token_logprobs, top_logprobs) of a completions ``logprobs`` object, in the legacy OpenAI shape or in
    the chat shape that llama.cpp's server also uses for completions (``{"content": [{token, logprob,
    top_logprobs: [{token, logprob}]}]}``)."""
    if not isinstance(lp, dict):
        return [], [], []
    content = lp.get("content")
    if isinstance(content, list) and not lp.get("token_logprobs"):
        items = [c for c in content if isinstance(c, dict)]
        return ([c.get("token", "") for c in items], [c.get("logprob") for c in items],
                [{str(t.get("token", "")): t.get("logprob") for t in (c.get("top_logprobs") or []) if isinstance(t, dict)}
                 for c in items])
    return list(lp.get("tokens") or []), list(lp.get("token_logprobs") or []), list(lp.get("top_logprobs") or [])


def _first_id(choice: dict[str, Any]) -> int:
    ids = choice.get("prompt_token_ids")
    return int(ids[0]) if isinstance(ids, list) and ids else -1


__all__ = ["PromptLogprobsClient", "PromptLogprobs", "Generated", "BadAnswer", "LogprobAPI", "request_body",
           "parse_prompt_logprobs"]
