"""The one model factory: a :class:`~reflectkit.llm.spec.ModelSpec` in, a cached chat client out.

Kinds: the embedded default and local GGUFs run in-process with llama.cpp; local Hugging Face directories run
with transformers (:mod:`reflectkit.llm.hf`); everything else is an OpenAI-compatible endpoint. Every client is
wrapped in :class:`~reflectkit.llm.cache.CachedChatModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.errors import UserError
from reflectkit.llm.base import FatalModelError
from reflectkit.llm.cache import CachedChatModel, ResponseCache
from reflectkit.llm.embedded import EmbeddedModel, embedded_gguf_path
from reflectkit.llm.retry import RetryPolicy
from reflectkit.llm.spec import ModelSpec

__all__ = ["ModelSpec", "build_chat_model", "probe_model", "embedded_gguf_path"]


def build_chat_model(
    spec: ModelSpec | str | None,
    *,
    cache: ResponseCache | None,
    concurrency: int = 8,
    setting_name: str = "--oracle-",
    cache_only: bool = False,
) -> CachedChatModel:
    """Build (without any network call) the cached client for ``spec``. Problems with the spec are UserErrors that
    name the flags ``{setting_name}model`` / ``{setting_name}base-url``."""
    spec = ModelSpec.coerce(spec).check(setting_name)
    retry = RetryPolicy(max_attempts=spec.max_attempts, base_delay=spec.backoff_base, timeout=spec.timeout)
    try:
        if spec.kind in ("embedded", "gguf"):
            gguf = None if spec.kind == "embedded" else str(Path(str(spec.model)).expanduser())
            inner: Any = EmbeddedModel(gguf, n_ctx=spec.n_ctx, cache_dir=cache.dir if cache else None)
        elif spec.kind == "hf":
            from reflectkit.llm.hf import HFChatModel

            inner = HFChatModel(spec.hf_dir(setting_name + "model"),
                                adapter=Path(spec.adapter).expanduser() if spec.adapter else None,
                                prompt_format=spec.prompt_format)
        else:
            from reflectkit.llm.openai_compat import OpenAICompatModel

            from reflectkit.verify.guard import guard_endpoint

            inner = OpenAICompatModel(
                str(spec.model), str(spec.base_url), api_key_env=spec.api_key_env, concurrency=concurrency,
                retry=retry, setting_name=setting_name, spec=spec,
            )
            inner = guard_endpoint(inner, spec, setting_name=setting_name)
    except FatalModelError as exc:
        raise UserError(str(exc)) from None
    model = CachedChatModel(inner, cache, cache_only=cache_only)
    model.spec = spec  # type: ignore[attr-defined]
    return model


async def probe_model(model: Any) -> None:
    """Ask an endpoint for its identity once (``/v1/models``); skipped for local models, in cache-only replay and
    when already probed. An unreachable endpoint or a rejected key becomes a UserError (exit 2); the model is
    closed."""
    inner = getattr(model, "inner", model)
    if getattr(model, "cache_only", False) or getattr(inner, "probed", True):
        return
    try:
        await inner.probe()
    except FatalModelError as exc:
        await model.aclose()
        raise UserError(str(exc), exit_code=getattr(exc, "exit_code", 2)) from None
