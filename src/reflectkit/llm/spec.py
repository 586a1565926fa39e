"""One model spec for every role and every kind of model: the embedded default, a local GGUF, a local Hugging Face
directory (optionally with a PEFT adapter), or an OpenAI-compatible endpoint.

A spec is data (it pickles, it goes into manifests and pipeline files); :mod:`reflectkit.llm.factory` turns it
into a client. The API key is never part of a spec: only the *name* of the environment variable that holds it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reflectkit.errors import UserError

EMBEDDED_NAMES = ("embedded", "default", "smollm2")
PROMPT_FORMATS = ("chat", "raw")
SpecKind = Literal["embedded", "gguf", "hf", "openai-compatible"]


class ModelSpec(BaseModel):
    """Which model to call.

    ``model``: ``embedded`` (or None; SmolLM2-135M-Instruct in-process), a ``.gguf`` path, a Hugging Face model
    directory (``hf:DIR`` or a directory with ``config.json``; a ``reflectkit train`` output uses its ``merged/``),
    or, with ``base_url``, the model name at an OpenAI-compatible endpoint. In pipeline YAML a plain string is
    shorthand for ``{model: ...}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="'embedded', a local .gguf / HF dir, or the endpoint's model name")
    base_url: str | None = Field(default=None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    api_key_env: str | None = Field(default=None, description="NAME of the environment variable holding the API key")
    adapter: str | None = Field(default=None, description="PEFT LoRA adapter directory (local HF models only)")
    prompt_format: Literal["chat", "raw"] = Field(default="chat", description="local HF models: chat template or raw text")
    n_ctx: int = Field(default=4096, ge=256, description="context length for llama.cpp models")
    timeout: float = Field(default=600.0, gt=0, description="per-request timeout in seconds")
    max_attempts: int = Field(default=6, ge=1, description="attempts per request (429/5xx/timeouts)")
    backoff_base: float = Field(default=1.0, ge=0, description="first retry delay in seconds")
    # --- endpoint verification (issue 12)
    claims: str | None = Field(default=None, description="what the endpoint claims to be: 'embedded', a .gguf, an "
                               "HF dir or a fingerprint file; checked passively on every call")
    canary_every: int | None = Field(default=None, ge=0, description="repeat a canary every K calls (0: off; "
                                     "default: the verifier's own)")
    on_drift: Literal["stop", "mark"] = Field(default="stop", description="on drift: stop (exit 3) or mark rows")
    # --- engine at scale (issue 14)
    base_urls: tuple[str, ...] = Field(default=(), description="all endpoints of a fleet serving the same model")
    rpm: float | None = Field(default=None, gt=0, description="requests per minute, per endpoint")
    tpm: float | None = Field(default=None, gt=0, description="tokens per minute, per endpoint")
    adaptive: bool = Field(default=False, description="lower concurrency on repeated 429s, raise it again (AIMD)")
    price_in: float | None = Field(default=None, ge=0, description="price per million prompt tokens")
    price_out: float | None = Field(default=None, ge=0, description="price per million completion tokens")
    max_cost: float | None = Field(default=None, gt=0, description="stop gracefully when the spend reaches this")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _fleet(self) -> "ModelSpec":
        if self.base_urls and not self.base_url:  # a fleet given as a list: the first one names the spec
            object.__setattr__(self, "base_url", self.base_urls[0])
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every base URL of this spec (one, or a fleet), without repeats, the first first."""
        urls = ((self.base_url,) if self.base_url else ()) + tuple(self.base_urls)
        return tuple(dict.fromkeys(urls))

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
        return v

    @classmethod
    def coerce(cls, value: "ModelSpec | str | dict[str, Any] | None") -> "ModelSpec":
        if isinstance(value, ModelSpec):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(model=value)
        if isinstance(value, dict):
            return cls.model_validate(value)
        spec = getattr(value, "spec", None)  # an opened client carries its spec
        if isinstance(spec, ModelSpec):
            return spec
        raise TypeError(f"cannot make a ModelSpec from {type(value).__name__}")

    # ------------------------------------------------------------------ what it is
    @property
    def embedded(self) -> bool:
        return not self.base_url and (self.model is None or self.model.lower() in EMBEDDED_NAMES)

    @property
    def kind(self) -> SpecKind:
        if self.base_url:
            return "openai-compatible"
        if self.embedded:
            return "embedded"
        assert self.model is not None
        if not self.model.startswith("hf:") and self.model.lower().endswith(".gguf"):
            return "gguf"
        return "hf"

    def hf_dir(self, flag: str = "--model") -> Path:
        """The local Hugging Face directory (a ``reflectkit train`` output resolves to its ``merged/``)."""
        assert self.model is not None
        explicit = self.model.startswith("hf:")
        path = Path(self.model[3:] if explicit else self.model).expanduser()
        if not path.is_dir():
            if explicit:
                raise UserError(f"{flag} {self.model}: no such directory")
            raise UserError(f"{flag} {self.model!r}: expected 'embedded', a .gguf file, hf:DIR, a `reflectkit "
                            "train` output directory, or a model name with a base URL (hub names are not downloaded)")
        if (path / "manifest.json").exists() and (path / "merged" / "config.json").exists() \
                and not (path / "config.json").exists():
            path = path / "merged"
        if not (path / "config.json").exists():
            raise UserError(f"{flag} {self.model}: directory has no config.json (not a Hugging Face model "
                            "directory, nor a `reflectkit train` output with merged/)")
        return path

    def check(self, prefix: str = "--oracle-") -> "ModelSpec":
        """Raise a UserError naming the flags (``{prefix}model``, ``{prefix}base-url``) for a spec that cannot work:
        a missing file, an endpoint without a model name, an adapter on a non-HF model."""
        kind, flag, url = self.kind, f"{prefix}model", f"{prefix}base-url"
        if self.adapter and kind != "hf":
            raise UserError(f"{prefix}adapter only applies to a local Hugging Face model directory (hf:DIR)")
        if kind == "openai-compatible" and not self.model:
            raise UserError(f"{url} is set but {flag} (the model name at the endpoint) is missing")
        if kind == "gguf" and not Path(str(self.model)).expanduser().is_file():
            raise UserError(f"{flag} {self.model}: no such .gguf file; to use an endpoint also give {url}")
        if kind == "hf":
            self.hf_dir(flag)
            if self.adapter and not (Path(self.adapter).expanduser() / "adapter_config.json").exists():
                raise UserError(f"{prefix}adapter {self.adapter}: no adapter_config.json there (not a PEFT adapter)")
        return self

    def student_ref(self) -> str:
        """What the student loaders take: 'embedded' or a local path."""
        if self.base_url:
            raise UserError("a student must be a local model (embedded, a .gguf or an HF directory), not an endpoint")
        return "embedded" if self.embedded else str(self.model)

    def describe(self) -> dict[str, Any]:
        """For manifests and pipeline keys (never holds a key: only the variable's name)."""
        if self.embedded:
            return {"kind": "embedded", "embedded": True}
        d = {"kind": self.kind, **self.model_dump(exclude_none=True, exclude_defaults=True)}
        d.setdefault("model", self.model)
        return d
