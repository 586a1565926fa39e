"""``reflectkit generate``: answers from any model for an eval set, as a resumable, cached engine Step.

Output rows (JSONL): ``id``, ``prompt`` (the question), ``response``, ``model`` (the spec), ``answer`` (the
reference, when the set has one), ``key`` (IFEval), and under ``reflectkit.generate`` the model identity, the
finish reason and token counts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult, estimate_tokens
from reflectkit.errors import UserError
from reflectkit.evalsets import EvalItem, is_builtin, builtin_path, load_evalset
from reflectkit.llm.base import Message, SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import PromptSet, load_prompt_set

GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")
#: Output rows use these names for the record's instruction / output texts.
ROW_MAPPING = {"instruction": "prompt", "output": "response"}


def _fill(template: str, **values: str) -> str:
    import re

    return re.sub(r"\{(question|answer|feedback)\}", lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass
class GenerateConfig:
    evalset: str = "gsm8k"
    shots: int = 0
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    system: str | None = None
    gsm8k_format: bool | None = None  # None: lm-eval "Question: ...\nAnswer:" format for gsm8k sets only


class PromptBuilder:
    """Builds the messages for one eval item (shared by ``generate`` and ``refine``)."""

    def __init__(self, cfg: GenerateConfig, data: str | Path | None = None) -> None:
        self.cfg = cfg
        name = Path(cfg.evalset).name.lower()
        self.gsm8k = cfg.gsm8k_format if cfg.gsm8k_format is not None else "gsm8k" in name
        if cfg.shots < 0:
            raise UserError(f"--shots must be >= 0, got {cfg.shots}")
        if cfg.shots and not self.gsm8k:
            raise UserError("--shots (k-shot exemplars from gsm8k_train) only applies to GSM8K-style sets")
        self.prompts: PromptSet = load_prompt_set("evaluate", "gsm8k")
        self.exemplars: list[EvalItem] = load_evalset("gsm8k_train", data=data, limit=cfg.shots) if cfg.shots else []

    def user_text(self, item: EvalItem) -> str:
        if not self.gsm8k:
            return item.prompt_text
        shots = [_fill(self.prompts["exemplar"], question=e.question, answer=e.answer or "") for e in self.exemplars]
        return "\n\n".join(shots + [_fill(self.prompts["question"], question=item.prompt_text)])

    def messages(self, item: EvalItem) -> list[Message]:
        msgs: list[Message] = []
        if self.cfg.system:
            msgs.append({"role": "system", "content": self.cfg.system})
        msgs.append({"role": "user", "content": self.user_text(item)})
        return msgs

    def sampling(self, seed: int | None = None) -> SamplingParams:
        return SamplingParams(temperature=self.cfg.temperature, top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens,
                              seed=seed, stop=GSM8K_STOP if self.gsm8k else None)

    @property
    def version(self) -> str:
        return self.prompts.version


def evalset_dataset(evalset: str, *, data: str | Path | None = None, mapping: dict[str, str] | None = None,
                    limit: int | None = None, model_label: str = "") -> tuple[Dataset, list[EvalItem]]:
    """The eval set as an engine Dataset (one Record per item; ``raw`` holds the output row's fixed fields)."""
    items = load_evalset(evalset, data=data, mapping=mapping, limit=limit)
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
        records.append(Record(id=it.id, index=i, instruction=it.question, input=it.input, output="", raw=raw,
                              extra=dict(it.extra)))
    path = builtin_path(evalset, data) if is_builtin(evalset) else Path(evalset)
    payload = json.dumps([asdict(it) for it in items], sort_keys=True, default=str, ensure_ascii=False)
    ds = Dataset(path, "jsonl", "alpaca", records, [], hashlib.sha256(payload.encode()).hexdigest(), dict(ROW_MAPPING),
                 len(records))
    return ds, items


class GenerateStep:
    """One model answer per eval item. Temperature 0 (greedy) by default."""

    name = "generate"

    def __init__(self, model: CachedChatModel, cfg: GenerateConfig, items: list[EvalItem],
                 data: str | Path | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.builder = PromptBuilder(cfg, data)
        self.prompt_set = self.builder.prompts
        self.items = {it.id: it for it in items}

    def models(self) -> dict[str, CachedChatModel]:
        return {"model": self.model}

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "gsm8k_prompt": self.builder.gsm8k, "prompt_set_sha256": self.prompt_set.sha256}

    def manifest_extra(self) -> dict[str, Any]:
        return {"sampling": self.builder.sampling().to_dict()}

    def estimate(self, records: list[Record]) -> dict[str, int]:
        pt = sum(estimate_tokens(m["content"]) for r in records for m in self.builder.messages(self.items[r.id]))
        return {"rows": len(records), "model_calls": len(records), "prompt_tokens": pt,
                "max_completion_tokens": len(records) * self.cfg.max_tokens}

    async def process(self, rec: Record) -> RowResult:
        item = self.items[rec.id]
        res = await self.model.chat(self.builder.messages(item), self.builder.sampling(),
                                    prompt_version=self.builder.version)
        rk = {"model": self.model.identity, "finish_reason": res.finish_reason, "truncated": res.truncated,
              "shots": self.cfg.shots, "tokens": {"prompt": res.prompt_tokens, "completion": res.completion_tokens}}
        return RowResult("generated", "cut off by --max-tokens" if res.truncated else None, rk=rk, output=res.text,
                         prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens)
