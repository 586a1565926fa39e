"""Build a ChatModel from a model spec (embedded default, local GGUF, or OpenAI-compatible endpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from reflectkit.errors import UserError
from reflectkit.llm.base import FatalModelError
from reflectkit.llm.cache import CachedChatModel, ResponseCache
from reflectkit.llm.embedded import EMBEDDED_NAME, EmbeddedModel, embedded_gguf_path
from reflectkit.llm.retry import RetryPolicy

__all__ = ["ModelSpec", "build_chat_model", "open_chat_model", "probe_model", "embedded_gguf_path"]


class ModelSpec(BaseModel):
    """Which model to call. ``model=None`` and no ``base_url`` means the embedded default.

    The API key is never part of a spec: only the *name* of the environment variable that holds it.
    """

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    n_ctx: int = 4096
    timeout: float = 600.0
    max_attempts: int = 6
    backoff_base: float = 1.0

    @property
    def kind(self) -> Literal["embedded", "openai-compatible"]:
        return "openai-compatible" if self.base_url else "embedded"

    def describe(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def build_chat_model(
    spec: ModelSpec,
    *,
    cache: ResponseCache | None,
    concurrency: int = 8,
    setting_name: str = "--oracle",
    cache_only: bool = False,
) -> CachedChatModel:
    retry = RetryPolicy(max_attempts=spec.max_attempts, base_delay=spec.backoff_base, timeout=spec.timeout)
    try:
        if spec.kind == "embedded":
            gguf = None if spec.model in (None, "", EMBEDDED_NAME) else spec.model
            if gguf is not None and not Path(gguf).exists():
                raise UserError(
                    f"{setting_name}-model {gguf!r}: no such .gguf file; to use an endpoint also give {setting_name}-base-url"
                )
            inner: Any = EmbeddedModel(gguf, n_ctx=spec.n_ctx, cache_dir=cache.dir if cache else None)
        else:
            from reflectkit.llm.openai_compat import OpenAICompatModel

            if not spec.model:
                raise UserError(f"{setting_name}-base-url is set but {setting_name}-model is missing")
            inner = OpenAICompatModel(
                spec.model, spec.base_url, api_key_env=spec.api_key_env, concurrency=concurrency, retry=retry,
                setting_name=setting_name,
            )
    except FatalModelError as exc:
        raise UserError(str(exc)) from None
    return CachedChatModel(inner, cache, cache_only=cache_only)


async def probe_model(model: CachedChatModel) -> None:
    """Ask an endpoint for its identity once (``/v1/models``); skipped for embedded models, in cache-only replay and
    when already probed. An unreachable endpoint or a rejected key becomes a UserError (exit 2); the model is closed."""
    inner = model.inner
    if model.cache_only or getattr(inner, "probed", True):
        return
    try:
        await inner.probe()
    except FatalModelError as exc:
        await model.aclose()
        raise UserError(str(exc)) from None


async def open_chat_model(
    spec: ModelSpec,
    *,
    cache: ResponseCache | None,
    concurrency: int = 8,
    setting_name: str = "--oracle",
    cache_only: bool = False,
) -> CachedChatModel:
    """Build the model and, for endpoints, ask ``/v1/models`` for its identity (skipped in cache-only replay)."""
    model = build_chat_model(spec, cache=cache, concurrency=concurrency, setting_name=setting_name, cache_only=cache_only)
    await probe_model(model)
    return model
