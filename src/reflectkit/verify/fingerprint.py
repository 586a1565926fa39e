"""Publishable fingerprints: the answers of an endpoint or a local model to the fixed probe set.

A fingerprint is plain JSON (``reflectkit verify fingerprint -o fp.json``): the probe plan (seed, sizes), every
probe with its exact messages and sampling parameters, and every answer (text, ``usage`` counts, the response's
``model`` / ``system_fingerprint``, log-probs where the source returned them). Anyone can re-ask the same probes
of an endpoint and compare (``reflectkit verify endpoint --claims fp.json``). It never holds a key, and of an
endpoint only its host (no path, no query string).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, TokenLogprob
from reflectkit.verify.probes import PROBE_VERSION

FORMAT = "reflectkit-fingerprint"
Tier = Literal["tokenizer", "logprobs", "text"]


class Plan(BaseModel):
    """Which probes a check asks and how (the seed picks from the pools)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="picks the log-prob probes and the text samples' seeds")
    tokenizer_units: int = Field(6, ge=1, description="units of the tokenizer tier")
    logprob_probes: int = Field(6, ge=0, description="probes of the log-prob tier")
    logprob_repeats: int = Field(2, ge=1, description="each log-prob probe is asked this often (learns the noise)")
    top_logprobs: int = Field(5, ge=1, le=20, description="alternatives per position")
    text_samples: int = Field(40, ge=0, description="sampled completions of the text tier")
    text_max_tokens: int = Field(12, ge=1, description="length of each text sample")
    text_temperature: float = Field(1.0, gt=0)


class ProbeAnswer(BaseModel):
    """One probe and what the source answered."""

    model_config = ConfigDict(extra="ignore")

    tier: Tier
    probe: str
    repeats: int | None = None  # tokenizer tier: how often the unit is repeated
    seed: int | None = None  # text tier: the sampling seed
    messages: list[dict[str, str]]
    params: dict[str, Any]
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    logprobs: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, tier: Tier, probe: str, messages: list[dict[str, str]], params: dict[str, Any], res: ChatResult,
           **kw: Any) -> "ProbeAnswer":
        return cls(tier=tier, probe=probe, messages=messages, params=params, text=res.text,
                   finish_reason=res.finish_reason, prompt_tokens=res.prompt_tokens,
                   completion_tokens=res.completion_tokens, model=res.model, system_fingerprint=res.system_fingerprint,
                   logprobs=[t.to_dict() for t in res.logprobs] if res.logprobs is not None else None, **kw)

    def token_logprobs(self) -> list[TokenLogprob] | None:
        return [TokenLogprob.from_dict(t) for t in self.logprobs] if self.logprobs is not None else None


class Fingerprint(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["reflectkit-fingerprint"] = FORMAT
    version: int = 1
    probe_version: str = PROBE_VERSION
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    source: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    plan: Plan = Field(default_factory=Plan)
    answers: list[ProbeAnswer] = Field(default_factory=list)

    def tier(self, name: Tier) -> list[ProbeAnswer]:
        return [a for a in self.answers if a.tier == name]

    def save(self, path: Path | str) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".part")
        tmp.write_text(self.model_dump_json(indent=1), encoding="utf-8")
        tmp.replace(p)
        return p


def load_fingerprint(path: Path | str, setting: str = "--claims") -> Fingerprint:
    """Read a fingerprint file; a bad file is a one-line UserError naming it."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{setting} {p}: no such fingerprint file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{setting} {p}: not a JSON fingerprint ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{setting} {p}: not a reflectkit fingerprint (no \"format\": \"{FORMAT}\")")
    try:
        fp = Fingerprint.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"{setting} {p}: {where}: {err['msg']}") from None
    if fp.probe_version != PROBE_VERSION:
        raise UserError(f"{setting} {p}: probe set {fp.probe_version!r}, this reflectkit asks {PROBE_VERSION!r}")
    return fp


def is_fingerprint_file(ref: str) -> bool:
    p = Path(ref).expanduser()
    if not p.is_file() or p.suffix.lower() != ".json":
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return FORMAT.encode() in head


def host_of(base_url: str | None) -> str:
    """Only the host (and port) of a URL: never a path, a query string or credentials."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"
