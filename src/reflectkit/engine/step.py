"""The recipe contract: what a step is, declared once.

A step is a class with

* ``name``: the CLI command, the pipeline stage kind and the registry key;
* ``Options``: **one** pydantic model holding every option with its default, bounds, help text and validators.
  The CLI flags (:mod:`reflectkit.cli_steps`), the Python API keywords (:mod:`reflectkit.engine.api`), the
  pipeline YAML keys and the ``--dry-run`` estimate all derive from it, so they cannot drift;
* ``model_roles``: the models it calls, by role (``oracle``, ``student``, ``judge``), as *specs*: the engine
  opens, probes and closes the clients and hands them over in the :class:`RunContext`;
* its kind, given by the base class it extends:

  - :class:`RowStep`: ``async process(record, ctx) -> RowResult``, run concurrently, one ledger row per row;
  - :class:`BatchStep`: ``process_batch(records, ctx) -> list[RowResult]``, for local models fed with batches;
  - :class:`DatasetStep`: decisions that need every row (``select``'s rankings, ``decontaminate``'s candidate
    search) are made once in ``plan(records, ctx)``, then per-row results flow through ``process_batch`` and the
    same ledger as every other step;
  - :class:`TaskStep`: produces files rather than rows (``train``, ``eval``, ``stats``); ``run_task(ctx)``.

A step's state is its options and model specs, so it pickles and can be shipped to another process. Anything a
run computes lives in ``ctx.state``, never on the step object.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Generic, Iterable, Literal, Mapping, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reflectkit.data.record import Record

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.data.io import Dataset
    from reflectkit.engine.ledger import KeyedStore
    from reflectkit.llm.spec import ModelSpec

FAILED = "failed"
#: rows answered by an endpoint after its last good verification check (issue 12): redone on re-run, never output
SUSPECT = "suspect"
StepKind = Literal["row", "batch", "dataset", "task"]


@dataclass
class RowResult:
    """The outcome of one step on one row.

    ``status`` is step-specific (``rewritten``, ``kept_original``, ``scored``, ...) except ``failed``, which every
    step uses for rows that errored after retries; ``reason`` says why for anything but plain success.
    ``rk`` is stored under ``reflectkit.<output key>`` in the output row. ``instruction``/``input``/``output``
    replace the row's texts when set. ``drop`` removes the row from the output (it stays in the ledger and counts).
    """

    status: str
    reason: str | None = None
    rk: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    drop: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "rk": self.rk,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "drop": self.drop,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RowResult":
        return cls(**d)

    @classmethod
    def failure(cls, reason: str, **rk: Any) -> "RowResult":
        return cls(status=FAILED, reason=reason, rk=rk)


# --------------------------------------------------------------------------------------------- options


class StepOptions(BaseModel):
    """Base of every step's options model: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def fingerprint_dict(self) -> dict[str, Any]:
        """The options that determine the output (those not marked ``fingerprint=False``), JSON-clean."""
        data = self.model_dump(mode="json")
        for name, f in type(self).model_fields.items():
            if (f.json_schema_extra or {}).get("x-fingerprint") is False:  # type: ignore[union-attr]
                data.pop(name, None)
        return data


def option(
    default: Any = ...,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    argument: bool = False,
    fingerprint: bool = True,
    cli: bool = True,
    **constraints: Any,
) -> Any:
    """A step option: a pydantic ``Field`` with the help text and how it appears on the command line.

    ``flag``: the CLI spelling (default ``--field-name``; ``"--x/--no-x"`` for a bool pair). ``argument``: a
    positional argument instead of a flag. ``fingerprint=False``: does not change the output (a report path, a
    thread count), so it is left out of the run fingerprint. ``cli=False``: API and YAML only.
    """
    extra: dict[str, Any] = {}
    if flag:
        extra["x-flag"] = flag
    if short:
        extra["x-short"] = short
    if argument:
        extra["x-argument"] = True
    if not fingerprint:
        extra["x-fingerprint"] = False
    if not cli:
        extra["x-cli"] = False
    return Field(default, description=help, json_schema_extra=extra or None, **constraints)


def choice_validator(field: str, choices: "Iterable[str]", flag: str, *, optional: bool = False) -> Any:
    """A validator for ``field``: one of ``choices``, else the one-line ``{flag} must be one of ...`` message, the
    same on the CLI, in Python and in YAML. Use in an options model: ``_method = choice_validator(...)``."""
    allowed = tuple(choices)

    def check(cls: Any, v: Any) -> Any:
        if (v is None and optional) or v in allowed:
            return v
        from reflectkit.errors import UserError

        raise UserError(f"{flag} must be one of {', '.join(allowed)}, got {v!r}")

    return field_validator(field, mode="before")(classmethod(check))


@dataclass(frozen=True)
class ModelRole:
    """A model a step calls. ``kind``: ``chat`` (oracle, judge: any spec) or ``student`` (a local model whose
    weights the step reads: embedded, a .gguf or an HF directory)."""

    kind: Literal["chat", "student"] = "chat"
    help: str = ""
    #: CLI flag prefix: ``--oracle-`` gives --oracle-model, --oracle-base-url ... (default ``--<role>-``)
    prefix: str | None = None
    #: also a local Hugging Face model (adds --<role>-adapter and --<role>-prompt-format)
    local: bool = False
    #: a student role that may also be an OpenAI-compatible endpoint (adds --<role>-base-url, --<role>-model ...)
    endpoint: bool = False

    def flag_prefix(self, role: str) -> str:
        return self.prefix if self.prefix is not None else f"--{role}-"


# --------------------------------------------------------------------------------------------- run context


@dataclass
class RunContext:
    """What the engine hands a step while it runs.

    ``models``: opened clients by role; ``state``: whatever the step computes for this invocation (set in
    ``setup``/``plan``); ``files``: side outputs by name (for the summary, the manifest and the report);
    ``counters``: numbers the step wants in the manifest.
    """

    run_dir: Path
    output: Path | None
    dataset: "Dataset"
    models: dict[str, Any]
    concurrency: int = 8
    progress: bool = False
    cache_dir: Path | None = None
    restart: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    #: an executor that computes embeddings elsewhere (Ray: ``embed_missing``); None: in this process
    embedder: Any = None
    _stores: dict[str, "KeyedStore"] = field(default_factory=dict, repr=False)
    _ledger: Any = field(default=None, repr=False)

    def model(self, role: str) -> Any:
        try:
            return self.models[role]
        except KeyError:
            raise KeyError(f"the step asked for model role {role!r}, which it does not declare") from None

    def write_file(self, name: str, filename: str | Path, data: str | bytes) -> Path:
        """Write a side file (atomically) and register it under ``name``. A relative ``filename`` lands in the
        run directory."""
        from reflectkit.data.io import _atomic_write_bytes

        p = Path(filename)
        if not p.is_absolute():
            p = self.run_dir / p
        _atomic_write_bytes(p, data.encode("utf-8") if isinstance(data, str) else data)
        self.files[name] = p
        return p

    def add_file(self, name: str, path: Path) -> None:
        self.files[name] = Path(path)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def prepare_embeddings(self, texts: Iterable[str], *, batch_size: int = 64) -> int:
        """Compute ahead, on the run's executor, the sentence embeddings of ``texts`` that the embedding cache
        lacks (Ray: one embedder per actor; the driver stores them). Locally this does nothing: ``embed.encode``
        computes them as the step asks. Returns how many were computed."""
        if self.embedder is None:
            return 0
        return int(self.embedder.embed_missing(texts, cache_dir=self.cache_dir, batch_size=batch_size))

    def store(self, table: str) -> "KeyedStore":
        """A keyed table in the run's own ledger (e.g. decontamination's judged pairs): resumable work that is
        not one row of the dataset, with the same durability as the rows."""
        if table not in self._stores:
            self._stores[table] = self._ledger.keyed(table)
        return self._stores[table]

    async def map_concurrent(self, fn: Callable[[Any], Awaitable[Any]], items: Iterable[Any]) -> list[Any]:
        """Run ``fn`` over ``items`` with the run's concurrency; results in input order."""
        sem = asyncio.Semaphore(max(1, self.concurrency))

        async def one(x: Any) -> Any:
            async with sem:
                return await fn(x)

        return list(await asyncio.gather(*(one(x) for x in items)))


class StageRefs(Protocol):
    """What a pipeline tells a step about its surroundings (see :meth:`Step.for_stage`)."""

    def data(self, stage: str) -> Path:
        """The data output of an earlier stage (``input`` is the pipeline's input); UserError if none."""
        ...

    def artefact(self, stage: str) -> Path | None:
        """A non-data output of an earlier stage (a trained model directory), or None."""
        ...

    def path(self, p: str) -> str:
        """``p`` resolved against the pipeline file's directory when it looks like a path, else unchanged."""
        ...

    def model(self, role: str) -> "ModelSpec | None":
        """The pipeline's model for ``role`` (oracle, student, judge), or None."""
        ...

    def data_stages(self) -> list[str]:
        """Names of the earlier stages with a data output, in order."""
        ...


# --------------------------------------------------------------------------------------------- steps

O = TypeVar("O", bound=StepOptions)


class Step(Generic[O]):
    """Base of every step; see the module docstring. Subclass one of the four kinds, not this class."""

    name: ClassVar[str]
    kind: ClassVar[StepKind]
    Options: ClassVar[type[StepOptions]]
    #: the models it may call, by role
    model_roles: ClassVar[dict[str, ModelRole]] = {}
    #: key under ``reflectkit.`` in output rows (default: ``name``)
    output_key: ClassVar[str | None] = None
    #: side files it writes besides the output, by name (the names in ``ctx.files`` and ``summary.files``)
    files: ClassVar[dict[str, str]] = {}
    #: the sections it adds to the manifest (``manifest_extra``)
    manifest_sections: ClassVar[tuple[str, ...]] = ()
    #: source files whose edits change its results (package dirs or .py files under reflectkit/)
    code: ClassVar[tuple[str, ...]] = ()
    #: does its output feed the next pipeline stage?
    produces_data: ClassVar[bool] = True
    #: in a pipeline: does it read the previous stage's rows (so an empty input skips it, with a note)?
    consumes_previous: ClassVar[bool] = True
    #: in a pipeline: the name of its output inside the stage directory (None: it writes only side files)
    stage_output: ClassVar[str | None] = "output.jsonl"
    #: rows required to carry an output text when read
    require_output: ClassVar[bool] = True
    #: how many positional inputs the CLI takes: "one", or "many" (the rest go to ``extra_inputs``)
    inputs: ClassVar[Literal["one", "many", "none"]] = "one"
    input_help: ClassVar[str] = "Dataset file: JSONL, JSON array, Parquet or CSV."
    #: does the CLI require -o?
    needs_output: ClassVar[bool] = True
    #: the shared flags its CLI command takes (a task step that reads no dataset takes fewer)
    cli_plumbing: ClassVar[tuple[str, ...]] = ("run_dir", "limit", "dry_run", "restart", "format", "map",
                                               "skip_bad_rows", "quiet")
    #: does the generated CLI print the standard run summary (stats prints only its table)?
    cli_summary: ClassVar[bool] = True
    #: the CLI command name (None: ``name``; False: the step is attached to a command group by hand)
    cli_command: ClassVar[str | None | bool] = None

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> "Dataset":
        """The dataset it runs over. Default: the input file read as a dataset; a step overrides this to read its own
        kind of input (an eval set by name, a pair of answer files, a list of scored files)."""
        from reflectkit.data.io import read_dataset
        from reflectkit.errors import UserError

        if input is None:
            raise UserError(f"{self.name} needs an input dataset")
        return read_dataset(input, format=format, mapping=mapping, skip_bad_rows=skip_bad_rows,
                            require_output=self.require_output).limit(limit)

    def for_stage(self, refs: "StageRefs", input: Any) -> tuple["Step[Any]", Any]:
        """In a pipeline: resolve references in the options (earlier stage names, files relative to the YAML,
        a model role by name) and say what the input is. Default: this step, the previous stage's data."""
        return self, input

    @classmethod
    def split_inputs(cls, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
        """For ``inputs = "many"``: (the primary input, option values taken from the other positionals)."""
        return (inputs[0] if inputs else None), {}

    def __init__(self, options: O | Mapping[str, Any] | None = None, *, models: Mapping[str, Any] | None = None,
                 **option_values: Any) -> None:
        from reflectkit.llm.spec import ModelSpec

        if options is None:
            options = self.Options(**option_values)  # type: ignore[assignment]
        elif isinstance(options, Mapping):
            options = self.Options(**{**options, **option_values})  # type: ignore[assignment]
        elif option_values:  # validated like any other options
            options = self.Options.model_validate({**options.model_dump(), **option_values})  # type: ignore[assignment]
        self.options: O = options  # type: ignore[assignment]
        unknown = set(models or {}) - set(self.model_roles)
        if unknown:
            raise ValueError(f"step {self.name!r} has no model role {', '.join(sorted(unknown))}")
        self.models: dict[str, ModelSpec] = {r: ModelSpec.coerce(m) for r, m in (models or {}).items() if m is not None}
        self.validate()

    # ---- declared behaviour (override where needed)
    def validate(self) -> None:
        """Checks across options and models that a field validator cannot express. Raise UserError."""

    def active_roles(self) -> tuple[str, ...]:
        """The roles this configuration calls (``decontaminate`` needs its judge only with ``llm``)."""
        return tuple(self.model_roles)

    def spec(self, role: str) -> "ModelSpec":
        from reflectkit.llm.spec import ModelSpec

        return self.models.get(role) or ModelSpec()

    def config(self) -> dict[str, Any]:
        """What determines the output: the options (and anything derived, e.g. a prompt set's hash)."""
        return self.options.fingerprint_dict()

    @property
    def key(self) -> str:
        return self.output_key or self.name

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        """The ``--dry-run`` estimate. Works from options alone: no client, no key."""
        return {"rows": len(records)}

    async def setup(self, ctx: RunContext) -> None:
        """Once per invocation, after the models are opened and before the first row (e.g. decide a mode)."""

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        """Manifest sections of its own."""
        return {}

    def finish(self, ctx: RunContext, results: "ResultReader") -> None:
        """After every row is in the ledger: write side files (reports, dropped rows)."""

    def output_row(self, row: dict[str, Any], result: RowResult) -> dict[str, Any]:
        """The output row as written (default: unchanged). A step whose files have a shape of their own (the
        judgments file keeps its reviews at the top level) reshapes it here."""
        return row

    def stage_roles(self) -> tuple[str, ...]:
        """The pipeline's model roles this configuration uses (default: its active roles); they enter the stage
        key, and the pipeline file must define them."""
        return self.active_roles()

    def details(self, ctx: RunContext) -> dict[str, Any]:
        """Step-specific values for the run summary (reachable as attributes of the summary)."""
        return {}

    def summary_lines(self, summary: Any) -> list[str]:
        """Extra lines the CLI prints after the standard summary."""
        return []

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "models": self.models}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]
        self.models = state["models"]


class RowStep(Step[O]):
    kind: ClassVar[StepKind] = "row"

    async def process(self, record: Record, ctx: RunContext) -> RowResult:  # pragma: no cover - abstract
        raise NotImplementedError


class BatchStep(Step[O]):
    kind: ClassVar[StepKind] = "batch"
    batch_size: ClassVar[int] = 64

    def rows_per_batch(self) -> int:
        return self.batch_size

    def process_batch(self, records: list[Record], ctx: RunContext) -> list[RowResult]:  # pragma: no cover
        raise NotImplementedError


class DatasetStep(BatchStep[O]):
    kind: ClassVar[StepKind] = "dataset"
    batch_size: ClassVar[int] = 1024

    async def plan(self, records: list[Record], ctx: RunContext) -> None:  # pragma: no cover - abstract
        """See every row once (also on resume: decisions are recomputed, they are deterministic) and keep the
        decisions in ``ctx.state``; ``process_batch`` then turns them into per-row results."""
        raise NotImplementedError


class TaskStep(Step[O]):
    """A step that produces files, not rows (train, eval, stats). ``run_task`` returns counts for the summary."""

    kind: ClassVar[StepKind] = "task"
    produces_data: ClassVar[bool] = False
    consumes_previous: ClassVar[bool] = False
    stage_output: ClassVar[str | None] = None

    def run_task(self, ctx: RunContext) -> dict[str, int]:  # pragma: no cover - abstract
        raise NotImplementedError


class ResultReader:
    """Read access to the ledger's results for ``finish``: ``(record, RowResult)`` in input order."""

    def __init__(self, records: list[Record], ledger: Any) -> None:
        self._records = records
        self._ledger = ledger

    def __iter__(self) -> Any:
        results = {idx: res for idx, _rid, _st, res in self._ledger.iter_results()}
        for rec in self._records:
            res = results.get(rec.index)
            if res is not None:
                yield rec, RowResult.from_json(res)

    def counts(self) -> dict[str, int]:
        return self._ledger.counts()

    def rows(self, step: "Step[Any]", mapping: dict[str, str]) -> list[dict[str, Any]]:
        """The output rows as the engine will write them (dropped rows left out)."""
        return [result_row(step, rec, rr, mapping) for rec, rr in self if not rr.drop]


def result_row(step: "Step[Any]", rec: Record, rr: RowResult, mapping: dict[str, str]) -> dict[str, Any]:
    """One output row: the record with the result's texts and ``reflectkit.<key>`` = status, reason and ``rk``."""
    from reflectkit.data.io import record_to_row

    stage: dict[str, Any] = {"status": rr.status}
    if rr.reason is not None:
        stage["reason"] = rr.reason
    stage.update(rr.rk)
    row = record_to_row(rec, instruction=rr.instruction, input=rr.input, output=rr.output, rk={step.key: stage},
                        mapping=mapping)
    return step.output_row(row, rr)


def estimate_tokens(text: str) -> int:
    """Rough token estimate used by ``--dry-run`` (about 4 characters per token for English)."""
    return max(1, len(text) // 4)


def option_names(options: type[StepOptions]) -> dict[str, str]:
    """Every keyword an options model accepts (field names and their aliases) -> the field name."""
    from pydantic import AliasChoices

    names: dict[str, str] = {}
    for name, f in options.model_fields.items():
        names[name] = name
        alias = f.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({a: name for a in alias.choices if isinstance(a, str)})
        elif isinstance(alias, str):
            names[alias] = name
    return names
