"""What an endpoint claims to be, as a local reference: ``embedded``, a ``.gguf`` file, a Hugging Face model
directory, or a fingerprint file.

A local model can answer any probe (``ask``) and count the prompt tokens of any messages (``count``: used by the
tokenizer tier and by the passive check of every call during a run). A fingerprint can only give the answers it
recorded, and has no tokenizer for arbitrary messages.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, Message, SamplingParams
from reflectkit.llm.spec import EMBEDDED_NAMES
from reflectkit.verify.fingerprint import Fingerprint, is_fingerprint_file, load_fingerprint

Counter = Callable[[list[Message]], int]


@dataclass
class Reference:
    kind: str  # "gguf" | "hf" | "fingerprint"
    label: str
    describe: dict[str, Any]
    model: Any = None  # a ChatModel (local references)
    fingerprint: Fingerprint | None = None
    _counter: Counter | None = field(default=None, repr=False)
    _counter_factory: Callable[[], Counter] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def ask(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        if self.model is None:
            raise UserError(f"{self.label}: a fingerprint can only be compared on the probes it recorded")
        return await self.model.chat(messages, params)

    @property
    def counter(self) -> Counter | None:
        """``count(messages) -> prompt tokens`` with the claimed model's tokenizer and chat template (None for a
        fingerprint). Loaded on first use (a vocabulary-only load: no weights)."""
        with self._lock:
            if self._counter is None and self._counter_factory is not None:
                self._counter = self._counter_factory()
            return self._counter

    async def aclose(self) -> None:
        if self.model is not None:
            await self.model.aclose()


def _gguf_counter(path: Path) -> Counter:
    """Count prompt tokens exactly as llama-cpp-python's server does: the GGUF's chat template rendered with
    Jinja2ChatFormatter, then tokenized with ``add_bos`` unless the template added it."""
    import llama_cpp
    from llama_cpp import llama_chat_format as fmt

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    atexit.register(llm.close)  # closed before interpreter teardown (else llama.cpp's __del__ complains at exit)
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise UserError(f"{path}: the GGUF has no chat template; cannot count its prompt tokens")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    formatter = fmt.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )
    lock = threading.Lock()

    def count(messages: list[Message]) -> int:
        res = formatter(messages=messages)
        with lock:
            return len(llm.tokenize(res.prompt.encode("utf-8"), add_bos=not res.added_special, special=True))

    return count


def _hf_counter(path: Path) -> Counter:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))

    def count(messages: list[Message]) -> int:  # as HFChatModel encodes a prompt
        if getattr(tok, "chat_template", None):
            text = str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            return len(tok(text, add_special_tokens=False)["input_ids"])
        return len(tok("\n\n".join(m["content"] for m in messages))["input_ids"])

    return count


def resolve_reference(ref: str, setting: str = "--claims", *, cache_dir: Path | None = None,
                      load_model: bool = True) -> Reference:
    """Turn ``REF`` into a :class:`Reference`; anything else is a one-line UserError naming ``setting``.

    ``load_model=False``: only the tokenizer is wanted (the passive check of a run); no chat model is built."""
    from reflectkit.llm.embedded import EmbeddedModel, embedded_gguf_path, gguf_sha256

    r = ref.strip()
    if r.lower() in EMBEDDED_NAMES or r.lower().endswith(".gguf"):
        path = embedded_gguf_path() if r.lower() in EMBEDDED_NAMES else Path(r).expanduser()
        if not path.is_file():
            raise UserError(f"{setting} {ref}: no such .gguf file")
        model = EmbeddedModel(str(path), n_ctx=1024, cache_dir=cache_dir) if load_model else None
        sha = model.identity["gguf_sha256"] if model else gguf_sha256(path, cache_dir)
        return Reference("gguf", f"{setting} {ref}", {"kind": "gguf", "claims": ref, "file": path.name,
                                                       "gguf_sha256": sha}, model=model,
                         _counter_factory=lambda: _gguf_counter(path))
    if is_fingerprint_file(r):
        fp = load_fingerprint(r, setting)
        return Reference("fingerprint", f"{setting} {ref}", {"kind": "fingerprint", "claims": ref,
                                                             "source": fp.source, "created": fp.created},
                         fingerprint=fp)
    path = Path(r[3:] if r.startswith("hf:") else r).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        model = None
        if load_model:
            from reflectkit.llm.hf import HFChatModel

            model = HFChatModel(path)
        return Reference("hf", f"{setting} {ref}", {"kind": "hf", "claims": ref, "path": str(path.resolve())},
                         model=model, _counter_factory=lambda: _hf_counter(path))
    if r.lower().endswith(".json") and Path(r).expanduser().is_file():
        load_fingerprint(r, setting)  # raises the precise reason
    raise UserError(f"{setting} {ref}: expected 'embedded', a .gguf file, a Hugging Face model directory "
                    "(with config.json) or a fingerprint .json written by `reflectkit verify fingerprint`")
