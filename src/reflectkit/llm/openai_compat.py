"""OpenAI-compatible endpoints (OpenAI, vLLM, llama.cpp server, Ollama, ...) through the official async SDK."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import openai

from reflectkit.llm.base import ChatResult, FatalModelError, Message, RequestFailed, SamplingParams
from reflectkit.llm.retry import RetryPolicy, parse_retry_after
from reflectkit.llm.secrets import redact, register_secret

_OPENAI_HOST = "api.openai.com"


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


class OpenAICompatModel:
    """Async client for any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Bounds requests in flight, retries 429/5xx/timeouts/connection errors with exponential backoff and jitter
    (honouring ``Retry-After``), applies a per-request timeout, records token usage per call and the model
    identity reported by ``/v1/models`` and ``system_fingerprint``.
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
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.setting_name = setting_name
        key = resolve_api_key(api_key_env, base_url)
        self._client = openai.AsyncOpenAI(
            api_key=key, base_url=base_url, max_retries=0, timeout=self.retry.timeout
        )
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._rng = random.Random()
        self.identity: dict[str, Any] = {"kind": "openai-compatible", "model": model, "base_url": base_url}
        self.cache_identity = f"openai-compatible:{model}"
        self.calls = 0
        self.retries = 0
        self.probed = False
        self._fingerprints: set[str] = set()

    async def probe(self) -> dict[str, Any]:
        """Ask ``/v1/models`` what is served. Unreachable endpoint or rejected key -> FatalModelError."""
        where = f"{self.setting_name}base-url {self.base_url or 'https://' + _OPENAI_HOST + '/v1'}"
        last: Exception | None = None
        for attempt in range(1, 4):
            try:
                page = await self._client.models.list()
                served = [m.id for m in page.data]
                self.identity["served_models"] = served
                self.identity["reported_model"] = self.model if self.model in served else (served[0] if len(served) == 1 else None)
                self.probed = True
                return self.identity
            except openai.AuthenticationError:
                raise FatalModelError(f"the endpoint ({where}) rejected the API key (HTTP 401); check the key variable") from None
            except openai.PermissionDeniedError:
                raise FatalModelError(f"the endpoint ({where}) refused access (HTTP 403)") from None
            except openai.NotFoundError:
                # Some servers do not implement /v1/models; not fatal.
                self.identity["served_models"] = None
                self.probed = True
                return self.identity
            except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError, openai.RateLimitError) as exc:
                last = exc
                await asyncio.sleep(min(2.0, self.retry.base_delay) * attempt)
        raise FatalModelError(f"cannot reach the oracle endpoint ({where}): {redact(str(last))}")

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
        attempt = 0
        async with self._sem:
            while True:
                attempt += 1
                self.calls += 1
                try:
                    resp = await self._client.chat.completions.create(**kwargs)
                except openai.AuthenticationError:
                    raise FatalModelError(f"the endpoint ({self.setting_name}base-url) rejected the API key (HTTP 401)") from None
                except openai.PermissionDeniedError:
                    raise FatalModelError(f"the endpoint ({self.setting_name}base-url) refused access (HTTP 403)") from None
                except openai.NotFoundError as exc:
                    raise FatalModelError(
                        f"model {self.model!r} ({self.setting_name}model) not found at the endpoint: {redact(str(exc))}"
                    ) from None
                except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                    retry_after = parse_retry_after(getattr(getattr(exc, "response", None), "headers", None))
                    if isinstance(exc, openai.InternalServerError) and "validation error" in str(exc):
                        # Some servers (llama-cpp-python) answer an invalid request field with a 500: not transient.
                        raise RequestFailed(f"HTTP {exc.status_code} (request rejected): {redact(str(exc))[:300]}") from None
                    if attempt >= self.retry.max_attempts:
                        raise RequestFailed(f"{type(exc).__name__} after {attempt} attempts: {redact(str(exc))[:300]}") from None
                    self.retries += 1
                    await asyncio.sleep(self.retry.backoff(attempt, retry_after, self._rng))
                    continue
                except openai.APIStatusError as exc:
                    if exc.status_code in (408, 409) and attempt < self.retry.max_attempts:
                        self.retries += 1
                        await asyncio.sleep(self.retry.backoff(attempt, parse_retry_after(exc.response.headers), self._rng))
                        continue
                    raise RequestFailed(f"HTTP {exc.status_code}: {redact(str(exc))[:300]}") from None
                break
        if not resp.choices:
            raise RequestFailed("endpoint returned no choices")
        choice = resp.choices[0]
        usage = resp.usage
        fp = getattr(resp, "system_fingerprint", None)
        if fp:
            self._fingerprints.add(fp)
            self.identity["system_fingerprints"] = sorted(self._fingerprints)
        return ChatResult(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            model=resp.model or self.model,
            system_fingerprint=fp,
            attempts=attempt,
        )

    async def aclose(self) -> None:
        await self._client.close()
