"""LLM clients behind one small :class:`ChatModel` interface, plus the response cache."""

from reflectkit.llm.base import ChatModel, ChatResult, Message, SamplingParams, FatalModelError
from reflectkit.llm.cache import ResponseCache, CachedChatModel, default_cache_dir
from reflectkit.llm.factory import build_chat_model, embedded_gguf_path, probe_model
from reflectkit.llm.spec import ModelSpec

__all__ = [
    "ChatModel",
    "ChatResult",
    "Message",
    "SamplingParams",
    "FatalModelError",
    "ResponseCache",
    "CachedChatModel",
    "default_cache_dir",
    "ModelSpec",
    "build_chat_model",
    "probe_model",
    "embedded_gguf_path",
]
