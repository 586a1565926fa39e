"""The pipeline file, validated with pydantic. Every error names the file, line and key.

See docs/pipeline.md for the schema. Paths are resolved against the YAML file's directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reflectkit.errors import UserError
from reflectkit.llm.factory import ModelSpec
from reflectkit.pipeline.yamlload import LineMap, Loc, load_yaml

ROLES = ("oracle", "student", "judge")
EMBEDDED_NAMES = ("embedded", "default", "smollm2")
_KEY_LIKE = re.compile(r"^(.*api[_-]?key|.*secret.*|.*password|token|access[_-]?token|key|bearer)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ModelEntry(BaseModel):
    """A model for one role: the embedded default, a local file/dir, or an OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="'embedded', a local .gguf / HF dir, or the endpoint's model name")
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="NAME of the environment variable holding the key")
    n_ctx: int = Field(default=4096, ge=256)
    timeout: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
        return v

    @property
    def embedded(self) -> bool:
        return not self.base_url and (self.model is None or self.model.lower() in EMBEDDED_NAMES)

    def chat_spec(self) -> ModelSpec:
        """The :class:`ModelSpec` for chat roles (oracle, judge)."""
        return ModelSpec(model=None if self.embedded else self.model, base_url=self.base_url,
                         api_key_env=self.api_key_env, n_ctx=self.n_ctx, timeout=self.timeout,
                         max_attempts=self.max_attempts)

    def student_ref(self) -> str:
        """What the student loaders take: 'embedded' or a local path."""
        return "embedded" if self.embedded else str(self.model)

    def describe(self) -> dict[str, Any]:
        return {"embedded": True} if self.embedded else self.model_dump(exclude_none=True)


class Models(BaseModel):
    model_config = ConfigDict(extra="forbid")

    oracle: ModelEntry | None = None
    student: ModelEntry | None = None
    judge: ModelEntry | None = None

    def get(self, role: str) -> ModelEntry | None:
        return getattr(self, role)


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="unique stage name; also its sub-directory")
    kind: str | None = Field(default=None, description="stage type (default: the name)")
    input: str | None = Field(default=None, description="an earlier stage's name or a dataset path (default: previous stage)")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use letters, digits, '-' and '_' only")
        return v

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @property
    def type(self) -> str:
        return self.kind or self.name


class PipelineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    input: str = Field(description="input dataset path (relative to this file)")
    format: Literal["alpaca", "messages", "sharegpt"] | None = None
    output: str = Field(description="run directory (relative to this file)")
    limit: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=4, ge=1)
    report: bool = True
    models: Models = Field(default_factory=Models)
    stages: list[StageSpec] = Field(min_length=1)


@dataclass
class Stage:
    """A validated stage: its spec, the options object of its kind, and where its input comes from."""

    index: int
    name: str
    kind: str
    options: BaseModel
    input_ref: str | None  # an earlier stage's name, or None for "previous data" / a path in input_path
    input_path: Path | None
    roles: tuple[str, ...]


@dataclass
class Pipeline:
    file: Path
    spec: PipelineFile
    input: Path
    output: Path
    stages: list[Stage]
    models: dict[str, ModelEntry] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise UserError(f"no stage named {name!r}; stages are: {', '.join(s.name for s in self.stages)}")


def _reject_keys(data: Any, loc: Loc, lines: LineMap) -> None:
    """API keys must never be written in the file: only the name of an env var (``api_key_env``)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and _KEY_LIKE.match(k):
                raise lines.error(loc + (k,), "secrets are never written in the pipeline file; put the key in an "
                                              "environment variable and name it with api_key_env")
            _reject_keys(v, loc + (k,), lines)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _reject_keys(v, loc + (i,), lines)


def _pydantic_error(exc: ValidationError, lines: LineMap, prefix: Loc = ()) -> UserError:
    err = exc.errors()[0]
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return lines.error(loc, msg + more)


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def validate(data: Any, lines: LineMap) -> Pipeline:
    """Validate parsed YAML into a :class:`Pipeline` (raises UserError naming file:line and key)."""
    from reflectkit.pipeline.stages import KINDS, check_available

    if not isinstance(data, dict):
        raise lines.error((), "the pipeline file must be a mapping with input, output, models and stages")
    _reject_keys(data, (), lines)
    try:
        spec = PipelineFile.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc, lines) from None
    base = lines.file.parent
    names: set[str] = set()
    stages: list[Stage] = []
    for i, st in enumerate(spec.stages):
        loc: Loc = ("stages", i)
        if st.name in names:
            raise lines.error(loc + ("name",), f"duplicate stage name {st.name!r}")
        kind = KINDS.get(st.type)
        if kind is None:
            key = "kind" if st.kind else "name"
            raise lines.error(loc + (key,), f"unknown stage {st.type!r}; known stages: {', '.join(sorted(KINDS))}")
        check_available(kind, lambda m: lines.error(loc + ("kind" if st.kind else "name",), m))
        try:
            opts = kind.options.model_validate(st.options)
        except ValidationError as exc:
            raise _pydantic_error(exc, lines, loc + ("options",)) from None
        roles = kind.roles(opts)
        for role in roles:
            if spec.models.get(role) is None:
                raise lines.error(loc + ("name",), f"stage {st.name!r} needs the {role} model, but models.{role} is "
                                                   f"not defined (write e.g. `{role}: embedded` under models:)")
        input_ref, input_path = None, None
        if st.input is not None:
            if st.input in names:
                input_ref = st.input
            elif st.input in {s.name for s in spec.stages}:
                raise lines.error(loc + ("input",), f"stage {st.input!r} runs after {st.name!r}; a stage can only read "
                                                    "an earlier stage")
            else:
                input_path = _resolve(base, st.input)
                if not input_path.exists():
                    raise lines.error(loc + ("input",), f"{st.input!r} is neither an earlier stage nor an existing file")
        names.add(st.name)
        stages.append(Stage(i, st.name, kind.kind, opts, input_ref, input_path, roles))
    inp = _resolve(base, spec.input)
    if not inp.exists():
        raise lines.error(("input",), f"dataset {spec.input!r} not found (resolved to {inp})")
    models = {r: m for r in ROLES if (m := spec.models.get(r)) is not None}
    return Pipeline(lines.file, spec, inp, _resolve(base, spec.output), stages, models)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML file."""
    p = Path(path)
    data, lines = load_yaml(p)
    return validate(data, lines)
