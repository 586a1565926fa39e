"""Model specs for ``generate``, ``refine`` and the judges, all behind the cached ChatModel interface.

``--model`` accepts:

* ``embedded`` (default): the SmolLM2-135M GGUF via llama.cpp in-process;
* ``PATH.gguf``: any local GGUF via llama.cpp;
* a model name together with ``--base-url`` (and ``--api-key-env``): an OpenAI-compatible endpoint;
* ``hf:DIR`` or a Hugging Face model directory (``config.json``), optionally with ``--adapter`` (PEFT LoRA);
* the output directory of ``reflectkit train -o OUT`` (``OUT/manifest.json`` + ``OUT/merged/``): uses ``merged/``.

Local HF models are generated with transformers (greedy at temperature 0) through :class:`HFChatModel`, which
implements the ChatModel protocol, so every call is cached and resumable exactly like an endpoint call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, Message, RequestFailed, SamplingParams
from reflectkit.llm.cache import CachedChatModel, ResponseCache

PROMPT_FORMATS = ("chat", "raw")


@dataclass
class GenModelSpec:
    """What ``--model/--base-url/--api-key-env/--adapter/--prompt-format`` resolved to."""

    kind: str  # embedded | openai-compatible | hf
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    hf_dir: Path | None = None
    adapter: Path | None = None
    prompt_format: str = "chat"
    timeout: float = 600.0
    max_attempts: int = 6

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for k in ("model", "base_url", "api_key_env", "hf_dir", "adapter"):
            v = getattr(self, k)
            if v is not None:
                d[k] = str(v)
        if self.kind == "hf":
            d["prompt_format"] = self.prompt_format
        return d


def resolve_model(model: str | None = None, *, base_url: str | None = None, api_key_env: str | None = None,
                  adapter: str | Path | None = None, prompt_format: str = "chat", timeout: float = 600.0,
                  max_attempts: int = 6, setting: str = "--model") -> GenModelSpec:
    """Turn the command-line model settings into a :class:`GenModelSpec` (UserError naming the setting)."""
    if prompt_format not in PROMPT_FORMATS:
        raise UserError(f"--prompt-format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    common = {"timeout": timeout, "max_attempts": max_attempts, "prompt_format": prompt_format}
    if base_url:
        if adapter:
            raise UserError("--adapter only applies to a local Hugging Face model directory, not to --base-url")
        if not model or model == "embedded":
            raise UserError(f"--base-url is set but {setting} (the model name at the endpoint) is missing")
        return GenModelSpec("openai-compatible", model=model, base_url=base_url, api_key_env=api_key_env, **common)
    if model in (None, "", "embedded"):
        if adapter:
            raise UserError("--adapter needs a Hugging Face model directory as --model (hf:DIR)")
        return GenModelSpec("embedded", **common)
    explicit_hf = model.startswith("hf:")
    path = Path(model[3:] if explicit_hf else model).expanduser()
    if not explicit_hf and path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(f"{setting} {model}: no such .gguf file")
        if adapter:
            raise UserError("--adapter only applies to a Hugging Face model directory, not to a .gguf file")
        return GenModelSpec("embedded", model=str(path), **common)
    if path.is_dir():
        if (path / "manifest.json").exists() and (path / "merged" / "config.json").exists() and not (path / "config.json").exists():
            path = path / "merged"  # a `reflectkit train -o OUT` directory
        if not (path / "config.json").exists():
            raise UserError(f"{setting} {model}: directory has no config.json (not a Hugging Face model directory, "
                            "nor a `reflectkit train` output with merged/)")
        ad = Path(adapter).expanduser() if adapter else None
        if ad is not None and not (ad / "adapter_config.json").exists():
            raise UserError(f"--adapter {adapter}: no adapter_config.json there (not a PEFT adapter directory)")
        return GenModelSpec("hf", model=str(path), hf_dir=path, adapter=ad, **common)
    if explicit_hf:
        raise UserError(f"{setting} {model}: no such directory")
    raise UserError(f"{setting} {model!r}: expected 'embedded', a .gguf file, hf:DIR, a `reflectkit train` output "
                    "directory, or a model name with --base-url (hub names are not downloaded)")


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
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        new = out[0][n_prompt:]
        completion = tok.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= params.max_tokens else "stop"
        if params.stop:
            cut = [completion.find(s) for s in params.stop if s in completion]
            if cut:
                completion, finish = completion[: min(cut)], "stop"
        return ChatResult(text=completion, finish_reason=finish, prompt_tokens=n_prompt,
                          completion_tokens=int(len(new)), model=self.hf_dir.name)

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        async with self._lock:
            self.calls += 1
            try:
                return await asyncio.to_thread(self._generate, messages, params)
            except (ValueError, RuntimeError) as exc:
                raise RequestFailed(f"hf model: {exc}") from None

    async def aclose(self) -> None:
        self._loaded = None


def build_model(spec: GenModelSpec, *, cache: ResponseCache | None, concurrency: int = 8,
                setting_name: str = "--oracle", cache_only: bool = False) -> CachedChatModel:
    """Build (without probing) the cached model for a spec."""
    if spec.kind == "hf":
        assert spec.hf_dir is not None
        return CachedChatModel(HFChatModel(spec.hf_dir, adapter=spec.adapter, prompt_format=spec.prompt_format),
                               cache, cache_only=cache_only)
    from reflectkit.llm.factory import ModelSpec, build_chat_model

    ms = ModelSpec(model=spec.model, base_url=spec.base_url, api_key_env=spec.api_key_env, timeout=spec.timeout,
                   max_attempts=spec.max_attempts)
    return build_chat_model(ms, cache=cache, concurrency=concurrency, setting_name=setting_name, cache_only=cache_only)


async def open_model(spec: GenModelSpec, *, cache: ResponseCache | None, concurrency: int = 8,
                     setting_name: str = "--oracle", cache_only: bool = False) -> CachedChatModel:
    """Build the model and probe an endpoint's identity (UserError when unreachable or the key is wrong)."""
    from reflectkit.llm.factory import probe_model

    model = build_model(spec, cache=cache, concurrency=concurrency, setting_name=setting_name, cache_only=cache_only)
    await probe_model(model)
    return model


def identity_json(model: CachedChatModel) -> str:
    return json.dumps(model.identity, sort_keys=True, default=str)
