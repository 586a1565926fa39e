"""``reflectkit generate``: answers from any model for an eval set, as a resumable, cached engine step.

The input is an eval set: a built-in name (``gsm8k``, ``ifeval``, ``vicuna``, ...) or a file (fields renamed with
``--map``). Output rows (JSONL): ``id``, ``prompt`` (the question), ``response``, ``model`` (the spec), ``answer``
(the reference, when the set has one), ``key`` (IFEval), and under ``reflectkit.generate`` the model identity, the
finish reason and token counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import ModelRole, RowResult, RowStep, RunContext, StageRefs, StepOptions, estimate_tokens, option
from reflectkit.errors import UserError
from reflectkit.evalsets import EvalItem, builtin_path, is_builtin, load_evalset
from reflectkit.llm.base import Message, SamplingParams, stable_identity
from reflectkit.llm.spec import ModelSpec
from reflectkit.prompts import PromptSet, load_prompt_set

GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")
#: Output rows use these names for the record's instruction / output texts.
ROW_MAPPING = {"instruction": "prompt", "output": "response"}
#: model roles a pipeline's ``model_from`` may name (besides an earlier train stage)
PIPELINE_MODELS = ("student", "oracle")


def _fill(template: str, **values: str) -> str:
    return re.sub(r"\{(question|answer|feedback)\}", lambda m: values.get(m.group(1), m.group(0)), template)


class GenerateOptions(StepOptions):
    """Options of ``generate`` (and of ``refine``, which drafts its first answer the same way)."""

    shots: int = option(0, "GSM8K: k-shot exemplars from gsm8k_train (0 = zero-shot).", ge=0)
    max_tokens: int = option(512, "Max new tokens per answer.", ge=1)
    temperature: float = option(0.0, "Sampling temperature (0 = greedy).", ge=0)
    top_p: float = option(1.0, "Nucleus sampling.", gt=0, le=1)
    system: str | None = option(None, "System prompt.")
    gsm8k_format: bool | None = option(None, "The lm-eval 'Question: ... Answer:' prompt with its stop strings "
                                       "(default: for GSM8K sets only).")
    data: Path | None = option(None, "Shared data directory (default: auto-detected).", flag="--data-dir",
                               fingerprint=False)
    evalset: str | None = option(None, "In a pipeline: the eval set (a built-in name or a file relative to the "
                                 "pipeline file). Elsewhere it is the input.", cli=False, fingerprint=False)
    model_from: str = option("student", "In a pipeline: the model that answers: a model role (student, oracle) or "
                             "the name of an earlier train stage.", cli=False, fingerprint=False)


class PromptBuilder:
    """Builds the messages for one eval item (shared by ``generate`` and ``refine``).

    ``gsm8k``: use the lm-evaluation-harness ``Question: ...\\nAnswer:`` format (default: when ``evalset`` names a
    GSM8K set, or as ``options.gsm8k_format`` says)."""

    def __init__(self, options: GenerateOptions, evalset: str = "", data: str | Path | None = None,
                 *, gsm8k: bool | None = None) -> None:
        self.options = options
        name = Path(str(evalset)).name.lower()
        auto = options.gsm8k_format if options.gsm8k_format is not None else "gsm8k" in name
        self.gsm8k = auto if gsm8k is None else gsm8k
        if options.shots and not self.gsm8k:
            raise UserError("--shots (k-shot exemplars from gsm8k_train) only applies to GSM8K-style sets")
        self.prompts: PromptSet = load_prompt_set("evaluate", "gsm8k")
        self.exemplars: list[EvalItem] = load_evalset("gsm8k_train", data=data, limit=options.shots) if options.shots else []

    def user_text(self, item: EvalItem) -> str:
        if not self.gsm8k:
            return item.prompt_text
        shots = [_fill(self.prompts["exemplar"], question=e.question, answer=e.answer or "") for e in self.exemplars]
        return "\n\n".join(shots + [_fill(self.prompts["question"], question=item.prompt_text)])

    def messages(self, item: EvalItem) -> list[Message]:
        return messages(self.options.system, self.user_text(item))

    def sampling(self, seed: int | None = None) -> SamplingParams:
        return sampling(self.options, self.gsm8k, seed)

    @property
    def version(self) -> str:
        return self.prompts.version


def messages(system: str | None, user: str) -> list[Message]:
    msgs: list[Message] = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": user})
    return msgs


def sampling(options: GenerateOptions, gsm8k: bool, seed: int | None = None) -> SamplingParams:
    return SamplingParams(temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_tokens,
                          seed=seed, stop=GSM8K_STOP if gsm8k else None)


def _first_row(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a .json/.jsonl file (None when there is none or the file is another format)."""
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json") or not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.read(1 << 16).lstrip()
    except (OSError, UnicodeDecodeError):
        return None
    line = head.lstrip("[").lstrip().split("\n", 1)[0].rstrip().rstrip(",")
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def evalset_mapping(evalset: str, mapping: dict[str, str] | None) -> dict[str, str]:
    """``--map`` for an eval set file, with GSM8K-style columns found without it: ``question`` (or ``prompt``, as
    in answers files and upstream IFEval) as the question, ``answer`` as the reference. An explicit map wins."""
    m = dict(mapping or {})
    if is_builtin(evalset):
        return m
    first = _first_row(Path(evalset))
    if first is None:
        return m
    if not ({"question", "instruction"} & set(m)) and not ({"instruction", "messages", "conversations"} & set(first)):
        for col in ("question", "prompt"):
            if isinstance(first.get(col), str):
                m["question"] = col
                break
    if "answer" not in m and "output" not in m and "answer" in first and "output" not in first:
        m["answer"] = "answer"
    return m


def evalset_dataset(evalset: str, options: GenerateOptions, *, data: str | Path | None = None,
                    mapping: dict[str, str] | None = None, limit: int | None = None,
                    model_label: str = "") -> Dataset:
    """The eval set as an engine Dataset: one Record per item; ``raw`` holds the output row's fixed fields and
    ``extra`` the rendered prompt (``_messages``), the question text (``_question``) and the format (``_gsm8k``)."""
    builder = PromptBuilder(options, evalset, data)
    items = load_evalset(evalset, data=data, mapping=evalset_mapping(evalset, mapping), limit=limit)
    if not items:
        raise UserError(f"eval set {evalset}: no items")
    seen: set[str] = set()
    records = []
    for i, it in enumerate(items):
        if it.id in seen:
            raise UserError(f"eval set {evalset}: duplicate id {it.id!r} (map a unique id column with --map id=COLUMN)")
        seen.add(it.id)
        raw: dict[str, Any] = {"id": it.id, "prompt": it.question}
        if it.input:
            raw["input"] = it.input
        if it.answer is not None:
            raw["answer"] = it.answer
        if "instruction_id_list" in it.extra:
            raw["key"] = int(it.id) if it.id.isdigit() else it.id
        raw["model"] = model_label
        extra = {**it.extra, "_messages": builder.messages(it), "_question": it.prompt_text, "_gsm8k": builder.gsm8k}
        records.append(Record(id=it.id, index=i, instruction=it.question, input=it.input, output="", raw=raw,
                              extra=extra))
    path = builtin_path(evalset, data) if is_builtin(evalset) else Path(evalset)
    payload = json.dumps({"items": [asdict(it) for it in items], "gsm8k_prompt": builder.gsm8k,
                          "exemplars": [asdict(e) for e in builder.exemplars]},
                         sort_keys=True, default=str, ensure_ascii=False)
    return Dataset(path, "jsonl", "alpaca", records, [], hashlib.sha256(payload.encode()).hexdigest(),
                   dict(ROW_MAPPING), len(records))


def spec_summary(spec: ModelSpec) -> dict[str, Any]:
    """The model spec as the manifest's ``model_spec`` records it (``{"kind": "embedded"}`` for the default)."""
    if spec.embedded:
        return {"kind": "embedded"}
    return {"kind": spec.kind, **spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)}


class GenerateStep(RowStep[GenerateOptions]):
    """Answer an eval set with any model (resumable, cached); writes JSONL rows id/prompt/response/model."""

    name = "generate"
    manifest_sections = ("sampling", "gsm8k_prompt", "model_spec")
    Options = GenerateOptions
    model_roles = {"model": ModelRole("chat", "The model that answers (also hf:DIR, a HF model directory or a "
                                      "`reflectkit train` output directory)", prefix="--", local=True)}
    code = ("evaluate/generate.py", "prompts/evaluate")
    require_output = False
    #: in a pipeline it reads its eval set (options.evalset), not the previous stage's rows
    consumes_previous = False
    input_help = ("Eval set: a built-in name (gsm8k, gsm8k_train, ifeval, vicuna, koala, wizardlm, sinstruct, lima) "
                  "or a JSONL/JSON file (rename fields with --map).")
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "map", "quiet")

    @cached_property
    def prompt_set(self) -> PromptSet:
        return load_prompt_set("evaluate", "gsm8k")

    # ----------------------------------------------------------------- Step contract
    def validate(self) -> None:
        self.spec("model").check("--")

    def config(self) -> dict[str, Any]:
        return {**self.options.fingerprint_dict(), "prompt_set_sha256": self.prompt_set.sha256}

    def stage_roles(self) -> tuple[str, ...]:
        """The pipeline role that answers (``model_from``), so the stage key follows that model."""
        return (self.options.model_from,) if self.options.model_from in PIPELINE_MODELS else ()

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["GenerateStep", Any]:
        """In a pipeline: ``evalset`` (relative to the pipeline file) is the input and ``model_from`` names the model
        that answers: ``student``, ``oracle`` or an earlier train stage (its model directory)."""
        o = self.options
        if not o.evalset:
            raise UserError(f"{self.name}: options.evalset is required (a built-in eval set name or a file)")
        src = o.model_from
        spec: ModelSpec | None
        if src in PIPELINE_MODELS:
            spec = refs.model(src)
            if spec is None:
                raise UserError(f"options.model_from {src!r}: models.{src} is not defined in the pipeline")
        elif (art := refs.artefact(src)) is not None:
            spec = ModelSpec(model=str(art))
        else:
            raise UserError(f"options.model_from {src!r} is neither a model role ({', '.join(PIPELINE_MODELS)}) nor "
                            "an earlier train stage")
        update: dict[str, Any] = {}
        if o.data is not None and not o.data.is_absolute():
            update["data"] = Path(refs.path(f"./{o.data}"))
        opts = o.model_copy(update=update) if update else o
        return type(self)(opts, models={**self.models, "model": spec}), refs.path(o.evalset)

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        evalset = input if input is not None else self.options.evalset
        if evalset is None:
            raise UserError(f"{self.name} needs an eval set: a built-in name (gsm8k, ifeval, vicuna, ...) or a file")
        spec = self.spec("model")
        return evalset_dataset(str(evalset), self.options, data=self.options.data, mapping=mapping, limit=limit,
                               model_label=str(spec.model or spec.kind))

    def _messages(self, rec: Record) -> list[Message]:
        """The rendered prompt (records read by :meth:`read_input` carry it; any other record: its instruction)."""
        msgs = rec.extra.get("_messages")
        return msgs if msgs is not None else messages(self.options.system, rec.prompt_text)

    def _question(self, rec: Record) -> str:
        q = rec.extra.get("_question")
        return q if q is not None else rec.prompt_text

    def sampling(self, gsm8k: bool = False) -> SamplingParams:
        return sampling(self.options, gsm8k)

    def _gsm8k(self, ctx: RunContext) -> bool:
        return any(r.extra.get("_gsm8k") for r in ctx.dataset.records[:1])

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        return {"sampling": self.sampling(self._gsm8k(ctx)).to_dict(), "gsm8k_prompt": self._gsm8k(ctx),
                "model_spec": spec_summary(self.spec("model"))}

    def estimate(self, records: list[Record]) -> dict[str, int]:
        pt = sum(estimate_tokens(m["content"]) for r in records for m in self._messages(r))
        return {"rows": len(records), "model_calls": len(records), "prompt_tokens": pt,
                "max_completion_tokens": len(records) * self.options.max_tokens}

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        model = ctx.model("model")
        res = await model.chat(self._messages(rec), self.sampling(bool(rec.extra.get("_gsm8k"))),
                               prompt_version=self.prompt_set.version)
        rk = {"model": stable_identity(model.identity), "finish_reason": res.finish_reason, "truncated": res.truncated,
              "shots": self.options.shots, "tokens": {"prompt": res.prompt_tokens, "completion": res.completion_tokens}}
        return RowResult("generated", "cut off by --max-tokens" if res.truncated else None, rk=rk, output=res.text,
                         prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens)
