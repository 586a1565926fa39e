"""The pipeline file, validated with pydantic. Every error names the file, line and key.

See docs/pipeline.md for the schema. Paths are resolved against the YAML file's directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reflectkit.engine.step import Step
from reflectkit.errors import UserError
from reflectkit.llm.spec import ModelSpec
from reflectkit.pipeline.yamlload import LineMap, Loc, load_yaml

ROLES = ("oracle", "student", "judge")
_KEY_LIKE = re.compile(r"^(.*api[_-]?key|.*secret.*|.*password|token|access[_-]?token|key|bearer)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class Models(BaseModel):
    """The models of a pipeline, by role: each a :class:`ModelSpec` (a plain string is shorthand for
    ``{model: ...}``)."""

    model_config = ConfigDict(extra="forbid")

    oracle: ModelSpec | None = None
    student: ModelSpec | None = None
    judge: ModelSpec | None = None

    def get(self, role: str) -> ModelSpec | None:
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
    executor: Literal["local", "ray"] = Field(default="local", description="where rows run: local, or a Ray cluster "
                                              "(the output is the same; it does not enter the stage keys)")
    ray_address: str | None = Field(default=None, description="executor ray: a running cluster (auto, "
                                    "ray://host:10001); default: start a local one")
    ray_workers: int | None = Field(default=None, ge=1, description="executor ray: the most actors per stage")
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
    step_cls: type[Step[Any]]


@dataclass
class Pipeline:
    file: Path
    spec: PipelineFile
    input: Path
    output: Path
    stages: list[Stage]
    models: dict[str, ModelSpec] = field(default_factory=dict)

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
    from reflectkit.engine.api import first_problem

    loc, msg = first_problem(exc, noun="key")
    return lines.error(prefix + loc, msg)


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def validate(data: Any, lines: LineMap) -> Pipeline:
    """Validate parsed YAML into a :class:`Pipeline` (raises UserError naming file:line and key)."""
    from reflectkit.engine import registry

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
        key = "kind" if st.kind else "name"
        if st.type not in registry.names():
            raise lines.error(loc + (key,), f"unknown stage {st.type!r}; known stages: {', '.join(registry.names())}")
        try:
            step_cls = registry.get(st.type)
        except Exception as exc:  # a plugin that fails to import
            raise lines.error(loc + (key,), f"stage {st.type!r} could not be loaded: {exc}") from None
        try:
            opts = step_cls.Options.model_validate(st.options)
            roles = step_cls(opts).stage_roles()
        except ValidationError as exc:
            raise _pydantic_error(exc, lines, loc + ("options",)) from None
        except UserError as exc:
            raise lines.error(loc + ("options",), str(exc)) from None
        for role in roles:
            if role in ROLES and spec.models.get(role) is None:
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
        stages.append(Stage(i, st.name, step_cls.name, opts, input_ref, input_path, tuple(roles), step_cls))
    inp = _resolve(base, spec.input)
    if not inp.exists():
        raise lines.error(("input",), f"dataset {spec.input!r} not found (resolved to {inp})")
    if spec.ray_address is not None and spec.executor != "ray":
        raise lines.error(("ray_address",), "ray_address needs executor: ray")
    models = {r: m for r in ROLES if (m := spec.models.get(r)) is not None}
    return Pipeline(lines.file, spec, inp, _resolve(base, spec.output), stages, models)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline YAML file."""
    p = Path(path)
    data, lines = load_yaml(p)
    return validate(data, lines)
