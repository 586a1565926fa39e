"""OpenAI-compatible endpoints (OpenAI, vLLM, llama.cpp server, Ollama, ...) through the official async SDK.

One client may drive a fleet of endpoints serving the same model (:mod:`reflectkit.llm.fleet`), each with its own
rate limits, 429 pause and adaptive concurrency (:mod:`reflectkit.llm.ratelimit`), and tracks the spend against
``--max-cost`` (:mod:`reflectkit.llm.pricing`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any

from reflectkit.llm.base import (
    ChatResult,
    FatalModelError,
    Message,
    RequestFailed,
    SamplingParams,
    TokenLogprob,
    current_row,
)
from reflectkit.llm.fleet import Endpoint, Fleet
from reflectkit.llm.pricing import Budget, prices_for
from reflectkit.llm.ratelimit import AdaptiveLimit, RateLimiter
from reflectkit.llm.retry import RetryPolicy, parse_retry_after
from reflectkit.llm.secrets import redact, register_secret
from reflectkit.llm.transport import (
    AiohttpTransport,
    ConnectFailed,
    HTTPStatus,
    RequestTimeout,
    SDKTransport,
    transport_name,
)

_OPENAI_HOST = "api.openai.com"
#: the greedy request every endpoint of a fleet must answer identically at start
CANARY: list[Message] = [{"role": "user", "content": "Count from 1 to 5, separated by commas."}]


def resolve_api_key(api_key_env: str | None, base_url: str | None) -> str:
    """Read the key from the environment: ``OPENAI_API_KEY`` or the variable named by ``--oracle-api-key-env``.

    Local servers (llama.cpp, vLLM, Ollama) usually need no key; a placeholder is sent then.
    """
    env_name = api_key_env or "OPENAI_API_KEY"
    key = os.environ.get(env_name)
    if key:
        register_secret(key)
        return key
    if api_key_env:
        raise FatalModelError(f"environment variable {api_key_env} (named by --oracle-api-key-env) is not set")
    if base_url is None or _OPENAI_HOST in base_url:
        raise FatalModelError(
            "no API key: set OPENAI_API_KEY (or name another variable with --oracle-api-key-env) for api.openai.com"
        )
    return "not-needed"


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """About 4 characters per token plus a few per message (for rate limits and the budget, before the call)."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages) + 3


class OpenAICompatModel:
    """Async client for any OpenAI-compatible ``/v1/chat/completions`` endpoint, or a fleet of them.

    Bounds requests in flight, retries 429/5xx/timeouts/connection errors with exponential backoff and jitter
    (honouring ``Retry-After``; a 429 pauses the whole endpoint), applies a per-request timeout, records token usage
    and spend per call, which endpoint answered each row, and the model identity reported by ``/v1/models`` and
    ``system_fingerprint``.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        setting_name: str = "--oracle-",
        spec: Any = None,
        rate_window_s: float = 60.0,
    ) -> None:
        # the full ModelSpec (fleet, rate limits, prices) when built by the factory
        self.spec = spec
        self.model = model
        urls = list(getattr(spec, "endpoints", ()) or ()) if spec is not None else []
        if base_url and base_url not in urls:
            urls.insert(0, base_url)
        self.base_url = urls[0] if urls else base_url
        self.retry = retry or RetryPolicy()
        self.setting_name = setting_name
        key = resolve_api_key(api_key_env, self.base_url)
        rpm, tpm = getattr(spec, "rpm", None), getattr(spec, "tpm", None)
        adaptive = bool(getattr(spec, "adaptive", False))
        concurrency = max(1, concurrency)
        eps = []
        self.transport = transport_name()
        for url in urls or [None]:
            full = str(url) if url else f"https://{_OPENAI_HOST}/v1"
            transport: Any = (AiohttpTransport(full, key, concurrency=concurrency, timeout=self.retry.timeout)
                              if self.transport == "aiohttp" else
                              SDKTransport(url, key, concurrency=concurrency, timeout=self.retry.timeout))
            eps.append(Endpoint(full, transport, RateLimiter(rpm, tpm, window_s=rate_window_s),
                                AdaptiveLimit(concurrency, adaptive=True) if adaptive else None))
        self.fleet = Fleet(eps)
        self._sem = asyncio.Semaphore(concurrency)
        self._rng = random.Random()
        self.budget = Budget(prices_for(spec), getattr(spec, "max_cost", None))
        self.identity: dict[str, Any] = {"kind": "openai-compatible", "model": model, "base_url": self.base_url}
        if len(eps) > 1:
            self.identity["fleet"] = [e.url for e in eps]
        self.cache_identity = f"openai-compatible:{model}"
        self.calls = 0
        self.retries = 0
        self.probed = False
        self._fingerprints: set[str] = set()
        self._row_endpoints: dict[int, list[str]] = {}

    # ------------------------------------------------------------------ accounting
    @property
    def prompt_tokens(self) -> int:
        return self.budget.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.budget.completion_tokens

    def spent(self) -> float:
        """Estimated spend in USD (reported tokens x prices), earlier invocations of the run included."""
        return self.budget.spent()

    def take_row_endpoints(self, row: int) -> list[str]:
        """The endpoints that answered ``row``'s calls (forgotten once taken; the engine stores them)."""
        return self._row_endpoints.pop(row, [])

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return self.fleet.stats()

    # ------------------------------------------------------------------ start
    async def probe(self) -> dict[str, Any]:
        """Ask every endpoint's ``/v1/models`` what is served; for a fleet, also check that every endpoint gives the
        same greedy answer to a canary. Unreachable endpoint, rejected key, different models -> FatalModelError."""
        served_by: dict[str, list[str] | None] = {}
        for i, ep in enumerate(self.fleet.endpoints):
            served_by[ep.url] = await self._probe_one(ep, i)
        first = self.fleet.endpoints[0].url
        served = served_by[first]
        self.identity["served_models"] = served
        self.identity["reported_model"] = (self.model if served and self.model in served else
                                           (served[0] if served and len(served) == 1 else None))
        if len(self.fleet) > 1:
            await self._check_fleet_identity(served_by)
        self.probed = True
        return self.identity

    def _where(self, ep: Endpoint, i: int) -> str:
        n = f" #{i + 1}" if len(self.fleet) > 1 else ""
        return f"{self.setting_name}base-url{n} {ep.url}"

    async def _probe_one(self, ep: Endpoint, i: int) -> list[str] | None:
        where = self._where(ep, i)
        last: Exception | None = None
        for attempt in range(1, 4):
            try:
                page = await ep.transport.get_json("/models")
                data = page.get("data") if isinstance(page, dict) else None
                return [str(m.get("id")) for m in data if isinstance(m, dict)] if isinstance(data, list) else None
            except HTTPStatus as exc:
                if exc.status == 401:
                    raise FatalModelError(f"the endpoint ({where}) rejected the API key (HTTP 401); check the key variable") from None
                if exc.status == 403:
                    raise FatalModelError(f"the endpoint ({where}) refused access (HTTP 403)") from None
                if exc.status == 404:
                    return None  # some servers do not implement /v1/models; not fatal
                if exc.status < 500 and exc.status != 429:
                    raise FatalModelError(f"the endpoint ({where}) answered /models with {redact(str(exc))[:200]}") from None
                last = exc
            except (ConnectFailed, RequestTimeout) as exc:
                last = exc
            await asyncio.sleep(min(2.0, self.retry.base_delay) * attempt)
        raise FatalModelError(f"cannot reach the oracle endpoint ({where}): {redact(str(last))}")

    async def _check_fleet_identity(self, served_by: dict[str, list[str] | None]) -> None:
        """Every endpoint must list the same models and answer the canary identically (greedy, seed 0)."""
        eps = self.fleet.endpoints
        ref = served_by[eps[0].url]
        for i, ep in enumerate(eps[1:], start=1):
            if served_by[ep.url] != ref:
                raise FatalModelError(
                    f"the endpoints of {self.setting_name}base-url are not the same model: {eps[0].url} serves "
                    f"{ref}, {ep.url} serves {served_by[ep.url]}")
        answers = []
        for i, ep in enumerate(eps):
            try:
                raw = await ep.transport.post_json("/chat/completions", {
                    "model": self.model, "messages": CANARY, "temperature": 0.0, "top_p": 1.0, "max_tokens": 16,
                    "seed": 0})
                choices = json.loads(raw).get("choices") or [{}]
            except (HTTPStatus, ConnectFailed, RequestTimeout, ValueError, AttributeError) as exc:
                raise FatalModelError(f"the identity check of {self._where(ep, i)} failed: {redact(str(exc))[:200]}") from None
            answers.append(str((choices[0].get("message") or {}).get("content") or ""))
        for i, a in enumerate(answers[1:], start=1):
            if a != answers[0]:
                raise FatalModelError(
                    f"the endpoints of {self.setting_name}base-url are not the same model: the greedy canary gave "
                    f"{answers[0]!r} at {eps[0].url} and {a!r} at {eps[i].url}")
        self.identity["fleet_canary"] = answers[0]

    # ------------------------------------------------------------------ requests
    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.response_format is not None:
            kwargs["response_format"] = params.response_format
        if params.logprobs is not None:
            kwargs["logprobs"] = True
            if params.logprobs > 0:
                kwargs["top_logprobs"] = params.logprobs
        est = estimate_prompt_tokens(messages)
        reserved = self.budget.reserve(est, params.max_tokens)  # BudgetExhausted: the run stops gracefully
        attempt = 0
        ep: Endpoint | None = None
        usage_p = usage_c = 0
        try:
            async with self._sem:
                while True:
                    attempt += 1
                    ep = self.fleet.choose()
                    await ep.limiter.admit(est + params.max_tokens)
                    if ep.limit is not None:
                        await ep.limit.acquire()
                    ep.outstanding += 1
                    self.calls += 1
                    try:
                        raw = await ep.transport.post_json("/chat/completions", kwargs)
                    except HTTPStatus as exc:
                        body = redact(exc.body)[:300]
                        if exc.status == 401:
                            raise FatalModelError(f"the endpoint ({self.setting_name}base-url) rejected the API key (HTTP 401)") from None
                        if exc.status == 403:
                            raise FatalModelError(f"the endpoint ({self.setting_name}base-url) refused access (HTTP 403)") from None
                        if exc.status == 404:
                            raise FatalModelError(
                                f"model {self.model!r} ({self.setting_name}model) not found at the endpoint: HTTP 404: {body}"
                            ) from None
                        retry_after = parse_retry_after(exc.headers)
                        if exc.status == 429:
                            # the limit is the endpoint's: pause every request to it, not only this one
                            ep.limiter.pause(self.retry.backoff(attempt, retry_after, self._rng))
                            if ep.limit is not None:
                                ep.limit.on_rate_limited()
                            if attempt >= self.retry.max_attempts:
                                raise RequestFailed(f"HTTP 429 (rate limited) after {attempt} attempts: {body}") from None
                            self.retries += 1
                            continue
                        if exc.status >= 500:
                            if "validation error" in exc.body:
                                # Some servers (llama-cpp-python) answer an invalid request field with a 500: not transient.
                                raise RequestFailed(f"HTTP {exc.status} (request rejected): {body}") from None
                            self.fleet.mark_down(ep, server_error=True)
                            if attempt >= self.retry.max_attempts:
                                raise RequestFailed(f"HTTP {exc.status} after {attempt} attempts: {body}") from None
                            self.retries += 1
                            await self._wait_unless_elsewhere(ep, attempt, retry_after)
                            continue
                        if exc.status in (408, 409) and attempt < self.retry.max_attempts:
                            self.retries += 1
                            await asyncio.sleep(self.retry.backoff(attempt, retry_after, self._rng))
                            continue
                        raise RequestFailed(f"HTTP {exc.status}: {body}") from None
                    except (ConnectFailed, RequestTimeout) as exc:
                        self.fleet.mark_down(ep)
                        what = "timeout" if isinstance(exc, RequestTimeout) else "connection error"
                        if attempt >= self.retry.max_attempts:
                            raise RequestFailed(f"{what} after {attempt} attempts: {redact(str(exc))[:300]}") from None
                        self.retries += 1
                        await self._wait_unless_elsewhere(ep, attempt, None)
                        continue
                    finally:
                        ep.outstanding -= 1
                        if ep.limit is not None:
                            await ep.limit.release()
                    self.fleet.mark_ok(ep)
                    if ep.limit is not None:
                        ep.limit.on_success()
                    break
            try:
                resp = json.loads(raw)
            except ValueError:
                raise RequestFailed(f"endpoint answered with something that is not JSON: {raw[:200]!r}") from None
            if not isinstance(resp, dict):
                raise RequestFailed(f"endpoint answered with a JSON {type(resp).__name__}, not an object")
            usage = resp.get("usage") or {}
            usage_p = int(usage.get("prompt_tokens") or 0)
            usage_c = int(usage.get("completion_tokens") or 0)
        finally:
            self.budget.settle(reserved, usage_p, usage_c)
        row = current_row.get()
        if row is not None:
            self._row_endpoints.setdefault(row, []).append(ep.url)
        choices = resp.get("choices")
        if not choices or not isinstance(choices[0], dict):
            raise RequestFailed("endpoint returned no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        fp = resp.get("system_fingerprint")
        if fp and fp not in self._fingerprints:
            self._fingerprints.add(fp)
            self.identity["system_fingerprints"] = sorted(self._fingerprints)
        return ChatResult(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage_p,
            completion_tokens=usage_c,
            model=resp.get("model") or self.model,
            system_fingerprint=fp,
            attempts=attempt,
            extra={"endpoint": ep.url},
            logprobs=_token_logprobs(choice) if params.logprobs is not None else None,
        )

    async def _wait_unless_elsewhere(self, ep: Endpoint, attempt: int, retry_after: float | None) -> None:
        """Back off before the next attempt, unless another healthy endpoint of the fleet can take it now."""
        delay = self.retry.backoff(attempt, retry_after, self._rng)
        if not any(e.healthy for e in self.fleet.endpoints if e is not ep):
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        for ep in self.fleet.endpoints:
            await ep.transport.aclose()


def _token_logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    """The generated tokens' log-probs of a chat choice (None when the endpoint returned none)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [TokenLogprob(token=t.get("token", ""), logprob=float(t["logprob"]),
                         top={a.get("token", ""): float(a["logprob"]) for a in (t.get("top_logprobs") or [])})
            for t in content]
