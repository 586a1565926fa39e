"""A local Hugging Face model (optionally with a PEFT adapter) behind the ChatModel protocol.

Generated with transformers (greedy at temperature 0), so every call is cached and resumable exactly like an
endpoint call.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

from reflectkit.llm.base import ChatResult, Message, RequestFailed, SamplingParams, TokenLogprob


def _weights_sha(*dirs: Path | None) -> str:
    h = hashlib.sha256()
    for d in dirs:
        if d is None:
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and (f.suffix in (".safetensors", ".bin", ".json", ".model") or f.name == "tokenizer.json"):
                h.update(f.name.encode() + b"\0")
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()


def _token_logprobs(tok: Any, new: Any, logits: Any, top_k: int, text_len: int) -> list[TokenLogprob] | None:
    """Per generated token (special tokens and tokens past a stop cut left out): log_softmax of its raw logits."""
    import torch

    out: list[TokenLogprob] = []
    used = 0
    special = set(tok.all_special_ids)
    for i, t in enumerate(new.tolist()):
        if t in special or used >= text_len:
            break
        lp = torch.log_softmax(logits[i][0].float(), dim=-1)
        piece = tok.decode([t], skip_special_tokens=True)
        used += len(piece)
        top = {}
        if top_k > 0:
            vals, idx = torch.topk(lp, top_k)
            top = {tok.decode([int(j)]): float(v) for v, j in zip(vals, idx)}
        out.append(TokenLogprob(piece, float(lp[t]), top))
    return out or None


class HFChatModel:
    """A local transformers model (optionally + PEFT adapter) behind the ChatModel protocol.

    ``prompt_format="chat"`` applies the tokenizer's chat template (plain concatenation when it has none);
    ``"raw"`` feeds the message texts joined by blank lines as a plain completion prompt (lm-eval-harness style).
    Greedy decoding at temperature 0; sampling with ``seed`` otherwise. ``stop`` strings cut the text.
    """

    def __init__(self, hf_dir: Path, *, adapter: Path | None = None, prompt_format: str = "chat",
                 device: str | None = None) -> None:
        self.hf_dir = Path(hf_dir)
        self.adapter = adapter
        self.prompt_format = prompt_format
        self.device = device
        sha = _weights_sha(self.hf_dir, adapter)
        self.identity: dict[str, Any] = {"kind": "hf-transformers", "path": str(self.hf_dir.resolve()),
                                         "weights_sha256": sha, "prompt_format": prompt_format}
        if adapter is not None:
            self.identity["adapter"] = str(Path(adapter).resolve())
        self.cache_identity = f"hf:{sha}:{prompt_format}"
        self.calls = 0
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = threading.Lock()
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._load_lock:
            if self._loaded is None:
                from reflectkit.student import load_student

                model, tok, _info = load_student(str(self.hf_dir), adapter=self.adapter, device=self.device)
                self._loaded = (model, tok)
            return self._loaded

    def render(self, messages: list[Message], tok: Any) -> str:
        if self.prompt_format == "chat" and getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return "\n\n".join(m["content"] for m in messages)

    def _generate(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        import torch

        model, tok = self._load()
        text = self.render(messages, tok)
        enc = tok(text, return_tensors="pt", add_special_tokens=self.prompt_format == "raw").to(model.device)
        n_prompt = int(enc["input_ids"].shape[1])
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "pad_token_id": tok.pad_token_id}
        if params.temperature and params.temperature > 0:
            torch.manual_seed(params.seed if params.seed is not None else 0)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        if params.logprobs is not None:  # the raw (unwarped) logits, as llama.cpp and OpenAI report log-probs
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        seq = out.sequences if params.logprobs is not None else out
        new = seq[0][n_prompt:]
        completion = tok.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= params.max_tokens else "stop"
        if params.stop:
            cut = [completion.find(s) for s in params.stop if s in completion]
            if cut:
                completion, finish = completion[: min(cut)], "stop"
        logprobs = _token_logprobs(tok, new, out.logits, params.logprobs, len(completion)) \
            if params.logprobs is not None else None
        return ChatResult(text=completion, finish_reason=finish, prompt_tokens=n_prompt,
                          completion_tokens=int(len(new)), model=self.hf_dir.name, logprobs=logprobs)

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        async with self._lock:
            self.calls += 1
            try:
                return await asyncio.to_thread(self._generate, messages, params)
            except (ValueError, RuntimeError) as exc:
                raise RequestFailed(f"hf model: {exc}") from None

    async def aclose(self) -> None:
        self._loaded = None
