"""The HTTP layer of :class:`~reflectkit.llm.openai_compat.OpenAICompatModel`: one JSON POST, three outcomes.

``aiohttp`` (the default when installed): a plain ``aiohttp`` session with every connection kept alive. At
thousands of requests per second the client's CPU is the bottleneck, and the SDK's request path (validating the
request against typed dicts, building ``httpx`` request objects, parsing the answer into pydantic models) costs
milliseconds per call; a POST of the JSON body costs a fraction of that. ``sdk``: the official ``openai`` SDK's own
``post`` (httpx transport), for environments without aiohttp. Choose with ``REFLECTKIT_HTTP=aiohttp|sdk``.

Both raise the same three errors, which the client's retry loop handles: :class:`HTTPStatus` (an HTTP error
answer, with its headers for ``Retry-After``), :class:`ConnectFailed` and :class:`RequestTimeout`.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

ENV_HTTP = "REFLECTKIT_HTTP"


class HTTPStatus(Exception):
    def __init__(self, status: int, headers: Any, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.headers = headers
        self.body = body


class ConnectFailed(Exception):
    pass


class RequestTimeout(Exception):
    pass


def transport_name() -> str:
    choice = os.environ.get(ENV_HTTP, "").strip().lower()
    if choice in ("aiohttp", "sdk"):
        return choice
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "sdk"
    return "aiohttp"


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY, NO_PROXY...), looked up once: aiohttp's
    ``trust_env`` would look it up, and read ~/.netrc in a thread, on every request."""
    import urllib.parse
    import urllib.request

    host = urllib.parse.urlsplit(url).hostname or ""
    if not host or urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme or "http")


class AiohttpTransport:
    """POST JSON to ``base_url + path`` over a kept-alive aiohttp session (created in the running loop)."""

    def __init__(self, base_url: str, api_key: str, *, concurrency: int, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": "reflectkit"}
        self._limit = max(1, concurrency) + 8
        self._timeout = timeout
        self._session: Any = None
        self._loop: Any = None
        self._proxy = _env_proxy(self.base_url)

    def _sess(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:  # a client reused under a new event loop
            self._session = None
        if self._session is None:
            import aiohttp

            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, keepalive_timeout=60,
                                               ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self._timeout), raise_for_status=False,
                headers=self._headers)  # once per session: merging headers per request costs measurable CPU
        return self._session

    async def post_json(self, path: str, body: dict[str, Any]) -> bytes:
        import aiohttp

        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            async with self._sess().post(self.base_url + path, data=data, proxy=self._proxy) as r:
                raw = await r.read()
                if r.status >= 400:
                    raise HTTPStatus(r.status, r.headers, raw[:1000].decode("utf-8", "replace"))
                return raw
        except TimeoutError:
            raise RequestTimeout(f"no answer within {self._timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None

    async def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        import aiohttp

        try:
            kw = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
            async with self._sess().get(self.base_url + path, proxy=self._proxy, **kw) as r:
                raw = await r.read()
                if r.status >= 400:
                    raise HTTPStatus(r.status, r.headers, raw[:1000].decode("utf-8", "replace"))
        except TimeoutError:
            raise RequestTimeout(f"no answer within {timeout or self._timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPStatus(200, {}, f"not JSON: {raw[:200]!r}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            if self._loop is asyncio.get_running_loop():
                await self._session.close()
            self._session = None


class SDKTransport:
    """The openai SDK's own ``post``/``get`` (no request validation, raw bytes back), errors mapped to ours."""

    def __init__(self, base_url: str | None, api_key: str, *, concurrency: int, timeout: float) -> None:
        import httpx2
        import openai

        # every connection kept alive: the SDK's default keeps 100, so above that each request would reconnect
        n = max(concurrency, 1) + 8
        http = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=n, max_keepalive_connections=n),
                                              timeout=timeout)
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                                         http_client=http)
        self.base_url = str(self.client.base_url).rstrip("/")

    async def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        import openai

        try:
            raw = await self.client.get(path, cast_to=bytes, options={"timeout": timeout} if timeout else {})
        except openai.APIStatusError as exc:
            raise HTTPStatus(exc.status_code, exc.response.headers, str(exc)[:1000]) from None
        except openai.APITimeoutError as exc:
            raise RequestTimeout(str(exc)) from None
        except openai.APIConnectionError as exc:
            raise ConnectFailed(str(exc)) from None
        return json.loads(raw)

    async def post_json(self, path: str, body: dict[str, Any]) -> bytes:
        import openai

        try:
            return await self.client.post(path, body=body, cast_to=bytes)
        except openai.APIStatusError as exc:
            raise HTTPStatus(exc.status_code, exc.response.headers, str(exc)[:1000]) from None
        except openai.APITimeoutError as exc:
            raise RequestTimeout(str(exc)) from None
        except openai.APIConnectionError as exc:
            raise ConnectFailed(str(exc)) from None

    async def aclose(self) -> None:
        await self.client.close()
