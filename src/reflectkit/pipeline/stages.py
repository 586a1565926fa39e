"""The stage kinds a pipeline can use: their options (pydantic, unknown keys rejected), the model roles they need,
the API module they call, and how to estimate their oracle calls for ``--dry-run``.

The adapters that call each recipe's Python API live in :mod:`reflectkit.pipeline.adapters`; each is a few lines,
so a changed API signature is a one-line fix there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from reflectkit.errors import UserError


class Options(BaseModel):
    """Base for stage options: unknown keys are errors; ``None`` means "the recipe's default"."""

    model_config = ConfigDict(extra="forbid")

    def api_kwargs(self, *exclude: str) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in exclude}


class RecycleOptions(Options):
    phase: Literal["instruction", "response", "both", "all"] = "all"
    max_tokens: int = Field(default=1024, ge=1)
    structured: bool = False
    prompt_set: str = "paper"


class ScoreOptions(Options):
    max_length: int | None = Field(default=None, ge=8)
    prompt: str | None = None
    batch_size: int | None = Field(default=None, ge=1)


class SelectOptions(Options):
    method: Literal["selective", "selective-paper", "cherry", "filter"] = "selective"
    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1)
    where: str | None = None


class DecontamOptions(Options):
    against: list[str] = Field(min_length=1, description="built-in benchmark names or files")
    ngram: bool | None = None
    ngram_n: int | None = Field(default=None, ge=1)
    embedding: bool | None = None
    llm: bool = False
    top_k: int | None = Field(default=None, ge=1)
    threshold: float | None = Field(default=None, ge=-1, le=1)
    unknown_as: Literal["contaminated", "clean"] | None = None
    mark_only: bool | None = None


class StatsOptions(Options):
    inputs: list[str] | None = Field(default=None, description="stage names to compare (default: every data stage)")
    format: Literal["markdown", "csv", "json"] = "markdown"


class SynthOptions(Options):
    format: Literal["reflection", "plain-cot"] = "reflection"
    answer_field: str | None = None
    checker: str | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    keep_unverified: bool | None = None
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)


class TrainOptions(Options):
    max_steps: int | None = Field(default=None, ge=1)
    epochs: float | None = Field(default=None, gt=0)
    lr: float | None = Field(default=None, gt=0)
    lora_r: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=16)
    full: bool | None = None
    preset: str | None = None


class GenerateOptions(Options):
    evalset: str = Field(description="built-in eval set name (gsm8k, ifeval, vicuna, ...) or a file")
    model: str = Field(default="student", description="a model role (student, oracle) or the name of a train stage")
    shots: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)


class EvalOptions(Options):
    metric: Literal["gsm8k", "ifeval"]


class JudgeOptions(Options):
    a: str = Field(description="stage whose answers are side A")
    b: str = Field(description="stage whose answers are side B")
    method: Literal["plain", "reflective"] = "plain"
    k: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)


def _none(_: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class StageKind:
    kind: str
    module: str  # the recipe API it needs; missing -> clear error at validation time
    options: type[Options]
    roles: Callable[[Any], tuple[str, ...]]
    packages: tuple[str, ...]  # reflectkit sub-packages whose source is the stage's "code version"
    produces_data: bool  # does its output feed the next stage?
    calls_per_row: Callable[[Any], float] = lambda o: 0.0  # oracle/judge calls per input row (dry run)
    completion_cap: Callable[[Any], int] = lambda o: 0  # max completion tokens per call (dry run)


_PHASE_CALLS = {"instruction": 1, "response": 1, "both": 2, "all": 3}

KINDS: dict[str, StageKind] = {
    k.kind: k
    for k in (
        StageKind("recycle", "reflectkit.recycle.api", RecycleOptions, lambda o: ("oracle",),
                  ("recycle", "prompts/recycle"), True,
                  lambda o: _PHASE_CALLS[o.phase], lambda o: o.max_tokens),
        StageKind("score", "reflectkit.scoring.api", ScoreOptions, lambda o: ("student",), ("scoring",), True),
        StageKind("select", "reflectkit.select.api", SelectOptions, _none, ("select",), True),
        StageKind("decontaminate", "reflectkit.decontam.api", DecontamOptions,
                  lambda o: ("judge",) if o.llm else (), ("decontam", "prompts/decontam"), True,
                  lambda o: 1.0 if o.llm else 0.0, lambda o: 512 if o.llm else 0),
        StageKind("stats", "reflectkit.scoring.stats", StatsOptions, _none, ("scoring",), False),
        StageKind("synthesize", "reflectkit.synth.api", SynthOptions, lambda o: ("oracle",),
                  ("synth", "prompts/synth"), True,
                  lambda o: float(o.max_attempts or 4), lambda o: o.max_tokens or 1024),
        StageKind("train", "reflectkit.train.api", TrainOptions, lambda o: ("student",), ("train",), False),
        StageKind("generate", "reflectkit.evaluate.api", GenerateOptions,
                  lambda o: (o.model,) if o.model in ("student", "oracle") else (), ("evaluate",), True),
        StageKind("eval", "reflectkit.evaluate.api", EvalOptions, _none, ("evaluate",), False),
        StageKind("judge", "reflectkit.evaluate.api", JudgeOptions, lambda o: ("judge",),
                  ("evaluate", "prompts/evaluate"), False,
                  lambda o: 2.0 * (o.k or 4 if o.method == "reflective" else 1), lambda o: o.max_tokens or 1024),
    )
}


def check_available(kind: StageKind, error: Callable[[str], UserError]) -> None:
    """Raise ``error(message)`` when the recipe module this stage calls is not part of this reflectkit build."""
    try:
        found = importlib.util.find_spec(kind.module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise error(f"stage {kind.kind!r} needs {kind.module}, which is not available in this reflectkit "
                    "installation (that recipe is not built yet)")
