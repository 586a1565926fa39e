"""``--dry-run`` estimates: oracle/judge calls and tokens per stage (about 4 characters per token)."""

from __future__ import annotations

from typing import Any

from reflectkit.data.record import Record
from reflectkit.engine.step import estimate_tokens
from reflectkit.pipeline.stages import StageKind

_PROMPT_OVERHEAD = 150  # system prompt + template around the row, in tokens


def _recycle_prompt_tokens(opts: Any, records: list[Record]) -> int:
    from reflectkit.recycle.step import RecycleConfig, RecycleStep

    step = RecycleStep(None, RecycleConfig(phase="response", prompt_set=opts.prompt_set))  # type: ignore[arg-type]
    total = 0
    for r in records:
        kinds = {"instruction": ["instruction"], "response": ["response"], "both": ["instruction", "response"],
                 "all": ["instruction", "response", "response"]}[opts.phase]
        for k in kinds:
            msgs = (step.instruction_messages if k == "instruction" else step.response_messages)(r.instruction, r.input, r.output)
            total += sum(estimate_tokens(m["content"]) for m in msgs)
    return total


def estimate_stage(kind: StageKind, opts: Any, records: list[Record]) -> dict[str, Any]:
    """Upper bounds for one stage over ``records`` (the pipeline input rows: later stages see at most these)."""
    per_row = kind.calls_per_row(opts)
    calls = int(round(per_row * len(records)))
    if calls == 0:
        return {"rows": len(records), "oracle_calls": 0, "prompt_tokens": 0, "max_completion_tokens": 0}
    if kind.kind == "recycle":
        prompt = _recycle_prompt_tokens(opts, records)
    else:
        avg = sum(estimate_tokens(r.prompt_text + r.output) for r in records) / max(1, len(records))
        prompt = int(calls * (avg + _PROMPT_OVERHEAD))
    return {"rows": len(records), "oracle_calls": calls, "prompt_tokens": prompt,
            "max_completion_tokens": calls * kind.completion_cap(opts)}
