"""The Reflection-Tuning recycle step (Li et al., 2023, "Reflection-Tuning: Data Recycling Improves LLM
Instruction Tuning"; code: tianyi-lab/Reflection_Tuning ``reflection_code/``).

Phases:

* ``instruction``: the oracle critiques the pair and writes a new instruction *and* a new answer
  (``[New Instruction] ... [End]`` / ``[New Answer] ... [End]``). Both or nothing: if either is unusable the
  original pair is kept and the reason recorded, so a new instruction is never paired with the old answer.
* ``response``: the oracle critiques the answer and writes a better one (``[Better Answer] ... [End]``).
* ``both``: instruction reflection, then response reflection on its result (the paper's "Recycled" data).
* ``all``: the four variants Selective Reflection-Tuning (Li et al., ACL Findings 2024) chooses from: original,
  instruction-reflected, response-reflected (of the original pair) and both-reflected (response reflection of the
  instruction-reflected pair); three oracle calls per row, recorded under ``variants``. The row's own texts become
  the most-reflected variant available (both > instruction > response).

Sampling follows the paper: temperature 0, top_p 1.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cached_property
from typing import Any, Literal

from pydantic import field_validator

from reflectkit.data.record import Record
from reflectkit.engine.step import FAILED, ModelRole, RowResult, RowStep, RunContext, StepOptions, estimate_tokens, option
from reflectkit.errors import UserError
from reflectkit.llm.base import Message, RequestFailed, SamplingParams, model_name_identity
from reflectkit.prompts import PromptSet, load_prompt_set
from reflectkit.recycle.parse import ParseResult, parse_instruction_reflection, parse_response_reflection

Phase = Literal["instruction", "response", "both", "all"]
REWRITTEN = "rewritten"
KEPT = "kept_original"

_PLACEHOLDER_RE = re.compile(r"\{(instruction|input|output)\}")

_STRUCTURED_SUFFIX = (
    "\nReturn your answer as a JSON object with the keys {keys}. Put your analysis in \"critique\"."
)
_SCHEMAS: dict[str, dict[str, Any]] = {
    "instruction": {
        "type": "object",
        "properties": {
            "critique": {"type": "string"},
            "new_instruction": {"type": "string"},
            "new_answer": {"type": "string"},
        },
        "required": ["critique", "new_instruction", "new_answer"],
    },
    "response": {
        "type": "object",
        "properties": {"critique": {"type": "string"}, "better_answer": {"type": "string"}},
        "required": ["critique", "better_answer"],
    },
}


def fill(template: str, **values: str) -> str:
    """Fill ``{instruction}``/``{input}``/``{output}`` in one pass, so braces in the data are never re-expanded."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class RecycleOptions(StepOptions):
    phase: Phase = option("response", "instruction, response, both (instruction then response) or all (the four "
                          "variants for selective selection).")
    prompt_set: str = option("paper", "Prompt set: 'paper' (verbatim) or a directory.")
    max_tokens: int = option(1024, "Oracle max_tokens; cut-off answers are flagged.", ge=1)
    temperature: float = option(0.0, "Sampling temperature (the paper: 0).", ge=0)
    top_p: float = option(1.0, "Nucleus sampling (the paper: 1).", gt=0, le=1)
    structured: bool = option(False, "Ask for JSON (response_format json_schema) where supported.")

    @field_validator("prompt_set")
    @classmethod
    def _known_set(cls, v: str) -> str:
        load_prompt_set("recycle", v)  # a UserError naming the built-in sets
        return v


#: the structured-output modes tried in order (``--structured``), decided once per run in ``setup``
STRUCTURED_MODES = ("json_schema", "json_object")


class RecycleStep(RowStep[RecycleOptions]):
    """Recycle instruction data with an oracle (Reflection-Tuning, Li et al. 2023)."""

    name = "recycle"
    manifest_sections = ("sampling", "phase", "structured_mode", "prompt_set")
    Options = RecycleOptions
    model_roles = {"oracle": ModelRole("chat", "The oracle that critiques and rewrites", prefix="--oracle-")}
    code = ("recycle", "prompts/recycle")

    @cached_property
    def prompt_set(self) -> PromptSet:
        return load_prompt_set("recycle", self.options.prompt_set)

    @property
    def cfg(self) -> RecycleOptions:
        return self.options

    # ----------------------------------------------------------------- Step contract
    def config(self) -> dict[str, Any]:
        return {**self.options.fingerprint_dict(), "prompt_set_sha256": self.prompt_set.sha256}

    def sampling(self, structured_kind: str | None = None, mode: str | None = None) -> SamplingParams:
        rf = None
        if structured_kind and mode == "json_schema":
            rf = {
                "type": "json_schema",
                "json_schema": {"name": f"reflection_{structured_kind}", "schema": _SCHEMAS[structured_kind], "strict": True},
            }
        elif structured_kind and mode == "json_object":
            # llama-cpp-python's server (and Anyscale-style endpoints) take the schema inside json_object.
            rf = {"type": "json_object", "schema": _SCHEMAS[structured_kind]}
        return SamplingParams(
            temperature=self.cfg.temperature, top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens, response_format=rf
        )

    async def setup(self, ctx: RunContext) -> None:
        """With ``structured``, decide the response_format mode once, before the first row, by one small probe
        request per mode (json_schema, then json_object with a schema); an endpoint that rejects both (4xx) gets
        the paper's tagged format. Every row of the run uses that mode: it is kept in the run's ledger, so a resumed
        run keeps it too, and recorded in the manifest."""
        ctx.state["structured_mode"] = None
        if not self.cfg.structured:
            return
        store = ctx.store("recycle_run")
        saved = store.get("structured_mode")
        if saved is not None:
            ctx.state["structured_mode"] = saved["mode"]
            return
        ctx.state["structured_mode"] = await self._decide_structured_mode(ctx.model("oracle"))
        store.put("structured_mode", {"mode": ctx.state["structured_mode"]})

    async def _decide_structured_mode(self, oracle: Any) -> str | None:
        probe: list[Message] = [{"role": "user", "content": "Reply with a JSON object."}]
        for mode in STRUCTURED_MODES:
            rf = self.sampling("response", mode).response_format
            try:
                await oracle.chat(probe, SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16, response_format=rf),
                                  prompt_version="structured-probe")
            except RequestFailed as exc:
                if "HTTP 4" in str(exc) or "request rejected" in str(exc):
                    print(f"warning: the oracle endpoint rejected response_format {mode} ({str(exc)[:160]}); --structured "
                          + ("tries json_object with a schema" if mode == "json_schema" else "falls back to the paper's tagged format"),
                          file=sys.stderr)
                    continue
                raise UserError(f"--structured: could not ask the oracle which response format it supports: {exc}") from None
            return mode
        return None

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        return {"sampling": self.sampling().to_dict(), "phase": self.cfg.phase,
                "structured_mode": ctx.state.get("structured_mode"),
                "prompt_set": {"name": self.prompt_set.name, "version": self.prompt_set.version,
                               "sha256": self.prompt_set.sha256}}

    def estimate(self, records: list[Record]) -> dict[str, int]:
        calls = len(records) * {"both": 2, "all": 3}.get(self.cfg.phase, 1)
        prompt_tokens = 0
        for r in records:
            for msgs in self._messages_for_estimate(r):
                prompt_tokens += sum(estimate_tokens(m["content"]) for m in msgs)
        return {"rows": len(records), "oracle_calls": calls, "prompt_tokens": prompt_tokens,
                "max_completion_tokens": calls * self.cfg.max_tokens}

    def _messages_for_estimate(self, r: Record) -> list[list[Message]]:
        out = []
        if self.cfg.phase in ("instruction", "both", "all"):
            out.append(self.instruction_messages(r.instruction, r.input, r.output))
        if self.cfg.phase in ("response", "both", "all"):
            out.append(self.response_messages(r.instruction, r.input, r.output))
        if self.cfg.phase == "all":
            out.append(self.response_messages(r.instruction, r.input, r.output))
        return out

    # ----------------------------------------------------------------- prompts
    def instruction_messages(self, instruction: str, input: str, output: str, mode: str | None = None) -> list[Message]:
        ins = f"{instruction}\n{input}" if input else instruction
        user = fill(self.prompt_set["instruction.user"], instruction=ins, output=output)
        if mode:
            user += _STRUCTURED_SUFFIX.format(keys='"critique", "new_instruction", "new_answer"')
        return [{"role": "system", "content": self.prompt_set["instruction.system"]}, {"role": "user", "content": user}]

    def response_messages(self, instruction: str, input: str, output: str, mode: str | None = None) -> list[Message]:
        kind = "response_with_input" if input else "response_no_input"
        user = fill(self.prompt_set[f"{kind}.user"], instruction=instruction, input=input, output=output)
        if mode:
            user += _STRUCTURED_SUFFIX.format(keys='"critique", "better_answer"')
        return [{"role": "system", "content": self.prompt_set[f"{kind}.system"]}, {"role": "user", "content": user}]

    # ----------------------------------------------------------------- calls
    def _messages(self, kind: str, texts: tuple[str, str, str], mode: str | None) -> list[Message]:
        if kind == "instruction":
            return self.instruction_messages(*texts, mode=mode)
        return self.response_messages(*texts, mode=mode)

    async def _ask(self, kind: str, texts: tuple[str, str, str], ctx: RunContext) -> tuple[str, bool, int, int, bool]:
        """Returns (text, truncated, prompt_tokens, completion_tokens, structured), in the run's one mode."""
        mode = ctx.state.get("structured_mode")
        oracle = ctx.model("oracle")
        messages = self._messages(kind, texts, mode)
        if mode:
            res = await oracle.chat(messages, self.sampling(kind, mode), prompt_version=self.prompt_set.version + "+json")
            return res.text, res.truncated, res.prompt_tokens, res.completion_tokens, True
        res = await oracle.chat(messages, self.sampling(), prompt_version=self.prompt_set.version)
        return res.text, res.truncated, res.prompt_tokens, res.completion_tokens, False

    @staticmethod
    def _parse_structured(text: str, kind: str, truncated: bool) -> ParseResult:
        from reflectkit.recycle.parse import is_placeholder

        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return ParseResult(False, "structured output is not valid JSON" + (" (cut off by the length limit)" if truncated else ""))
        if not isinstance(obj, dict):
            return ParseResult(False, "structured output is not a JSON object")
        crit = str(obj.get("critique", ""))
        if kind == "instruction":
            ins, ans = obj.get("new_instruction"), obj.get("new_answer")
            for label, v in (("new_instruction", ins), ("new_answer", ans)):
                if not isinstance(v, str) or is_placeholder(v):
                    return ParseResult(False, f"structured output: {label} missing, empty or a placeholder", critique=crit)
            return ParseResult(True, None, ins, ans, crit)
        ans = obj.get("better_answer")
        if not isinstance(ans, str) or is_placeholder(ans):
            return ParseResult(False, "structured output: better_answer missing, empty or a placeholder", critique=crit)
        return ParseResult(True, None, None, ans, crit)

    async def _phase(self, kind: str, instruction: str, input: str, output: str, original_instruction: str,
                     ctx: RunContext) -> dict[str, Any]:
        text, truncated, pt, ct, structured = await self._ask(kind, (instruction, input, output), ctx)
        if structured:
            parsed = self._parse_structured(text, kind, truncated)
        elif kind == "instruction":
            parsed = parse_instruction_reflection(text, truncated=truncated, original_instruction=original_instruction)
        else:
            parsed = parse_response_reflection(text, truncated=truncated)
        return {"parsed": parsed, "raw": text, "truncated": truncated, "prompt_tokens": pt, "completion_tokens": ct,
                "structured": structured}

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        original = {"instruction": rec.instruction, "input": rec.input, "output": rec.output}
        base_rk: dict[str, Any] = {
            "phase": self.cfg.phase,
            "original": original,
            "oracle": model_name_identity(ctx.model("oracle").cache_identity),
            "prompt_set": self.prompt_set.version,
        }
        if self.cfg.phase == "all":
            return await self._process_all(rec, base_rk, ctx)
        if rec.turns > 1:
            return RowResult(KEPT, "multi-turn conversation: only the first exchange could be recycled, row kept as is",
                             rk={**base_rk, "critique": "", "raw": None, "tokens": {"prompt": 0, "completion": 0}})
        phases: dict[str, Any] = {}
        tokens = {"prompt": 0, "completion": 0}
        ins, inp, out = rec.instruction, rec.input, rec.output
        status, reason = REWRITTEN, None
        critiques: list[str] = []
        raws: dict[str, str] = {}
        truncated_any = False
        flags: list[str] = []
        order = ["instruction", "response"] if self.cfg.phase == "both" else [self.cfg.phase]
        for kind in order:
            try:
                r = await self._phase(kind, ins, inp, out, rec.instruction, ctx)
            except RequestFailed as exc:
                # A failed call fails the row (retried on re-run; earlier phases come from the cache then).
                phases[kind] = {"status": FAILED, "reason": str(exc)}
                return RowResult(FAILED, f"{kind} reflection: {exc}",
                                 rk={**base_rk, "critique": "", "raw": raws or None, "tokens": tokens, "phases": phases},
                                 prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])
            tokens["prompt"] += r["prompt_tokens"]
            tokens["completion"] += r["completion_tokens"]
            raws[kind] = r["raw"]
            truncated_any = truncated_any or r["truncated"]
            p: ParseResult = r["parsed"]
            flags += p.flags
            if p.critique:
                critiques.append(p.critique)
            if not p.ok:
                phases[kind] = {"status": KEPT, "reason": p.reason}
                if kind == order[0]:
                    status, reason = KEPT, f"{kind} reflection: {p.reason}"
                    break
                continue
            phases[kind] = {"status": REWRITTEN}
            if kind == "instruction":
                ins, inp, out = p.instruction or ins, "", p.answer or out
            else:
                out = p.answer or out
        rk = {
            **base_rk,
            "critique": "\n\n".join(critiques),
            "raw": raws.get(order[0]) if len(order) == 1 else raws,
            "phases": phases,
            "truncated": truncated_any,
            "parse_flags": sorted(set(flags)),
            "tokens": tokens,
        }
        if status == KEPT:
            return RowResult(KEPT, reason, rk=rk, prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])
        changed = (ins, inp, out) != (rec.instruction, rec.input, rec.output)
        return RowResult(
            REWRITTEN if changed else KEPT,
            None if changed else "oracle returned the original text unchanged",
            rk=rk,
            instruction=ins,
            input=inp,
            output=out,
            prompt_tokens=tokens["prompt"],
            completion_tokens=tokens["completion"],
        )

    async def _process_all(self, rec: Record, base_rk: dict[str, Any], ctx: RunContext) -> RowResult:
        """Phase ``all``: produce every variant Selective Reflection-Tuning selects from."""
        original = base_rk["original"]
        variants: dict[str, Any] = {"original": original, "instruction": None, "response": None, "both": None}
        phases: dict[str, Any] = {}
        raws: dict[str, str] = {}
        critiques: dict[str, str] = {}
        tokens = {"prompt": 0, "completion": 0}
        truncated_any = False
        flags: list[str] = []
        if rec.turns > 1:
            return RowResult(KEPT, "multi-turn conversation: only the first exchange could be recycled, row kept as is",
                             rk={**base_rk, "variants": variants, "critique": "", "raw": None, "tokens": tokens})

        async def run(name: str, kind: str, ins: str, inp: str, out: str) -> ParseResult | None:
            nonlocal truncated_any
            r = await self._phase(kind, ins, inp, out, rec.instruction, ctx)
            tokens["prompt"] += r["prompt_tokens"]
            tokens["completion"] += r["completion_tokens"]
            raws[name] = r["raw"]
            truncated_any = truncated_any or r["truncated"]
            p: ParseResult = r["parsed"]
            flags.extend(p.flags)
            critiques[name] = p.critique
            phases[name] = {"status": REWRITTEN} if p.ok else {"status": KEPT, "reason": p.reason}
            return p if p.ok else None

        try:
            p_ins = await run("instruction", "instruction", rec.instruction, rec.input, rec.output)
            if p_ins is not None:
                variants["instruction"] = {"instruction": p_ins.instruction, "input": "", "output": p_ins.answer}
            p_res = await run("response", "response", rec.instruction, rec.input, rec.output)
            if p_res is not None:
                variants["response"] = {"instruction": rec.instruction, "input": rec.input, "output": p_res.answer}
            if p_ins is not None:
                p_both = await run("both", "response", p_ins.instruction or "", "", p_ins.answer or "")
                if p_both is not None:
                    variants["both"] = {"instruction": p_ins.instruction, "input": "", "output": p_both.answer}
            else:
                phases["both"] = {"status": KEPT, "reason": "instruction reflection failed, so there is nothing to reflect"}
        except RequestFailed as exc:
            return RowResult(FAILED, str(exc), rk={**base_rk, "variants": variants, "phases": phases, "raw": raws or None,
                                                   "critique": "", "tokens": tokens},
                             prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])
        rk = {
            **base_rk,
            "variants": variants,
            "phases": phases,
            "critique": "\n\n".join(f"[{k}] {v}" for k, v in critiques.items() if v),
            "critiques": critiques,
            "raw": raws,
            "truncated": truncated_any,
            "parse_flags": sorted(set(flags)),
            "tokens": tokens,
        }
        chosen = next((variants[k] for k in ("both", "instruction", "response") if variants[k] is not None), None)
        if chosen is None:
            reasons = "; ".join(f"{k}: {v.get('reason')}" for k, v in phases.items() if v.get("status") != REWRITTEN)
            return RowResult(KEPT, f"no variant could be parsed ({reasons})", rk=rk,
                             prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])
        return RowResult(REWRITTEN, None, rk=rk, instruction=chosen["instruction"], input=chosen["input"],
                         output=chosen["output"], prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])
