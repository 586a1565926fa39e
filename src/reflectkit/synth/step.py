"""The ``synth`` step: ask the oracle for a Reflection-format (or plain-CoT) answer, validate it, verify it.

Per row, up to ``attempts`` samples are drawn. Attempt 0 uses ``first_temperature`` (default 0, greedy);
every retry uses ``temperature`` (> 0) with its own seed (``seed_base + attempt``), so each attempt is its own
cache entry and a resumed run replays exactly the same samples. An attempt fails when its structure is invalid
(see :mod:`reflectkit.synth.reflection_format`) or, when the row has a reference answer, when the final answer
does not match it (:mod:`reflectkit.synth.verify`).

Row statuses (``reflectkit.synth.status``):

* ``verified``: well formed and matches the reference;
* ``valid``: well formed, no verification asked for (no answer field);
* ``unverified``: well formed in some attempt but never matched (kept only with ``keep_unverified``);
* ``no_reference``: verification asked for but this row has no usable reference (kept only with ``keep_unverified``);
* ``malformed``: no attempt was well formed (never written to the output; reason recorded);
* ``failed``: the oracle request failed (retried on re-run).

Dropped rows stay in the ledger and the manifest counts, and are listed with their reasons in
``<run_dir>/synth_rejected.jsonl``.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable, Literal

from pydantic import AliasChoices, field_validator, model_validator

from reflectkit.data.record import Record
from reflectkit.engine.step import (FAILED, ModelRole, ResultReader, RowResult, RowStep, RunContext, StepOptions,
                                    choice_validator, estimate_tokens, option)
from reflectkit.errors import UserError
from reflectkit.llm.base import Message, SamplingParams, model_name_identity
from reflectkit.prompts import PromptSet, load_prompt_set
from reflectkit.synth.reflection_format import validate
from reflectkit.synth.verify import CHECKERS, Checker, check, reference_from_value

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.data.io import Dataset

Format = Literal["reflection", "plain-cot"]
FORMATS: tuple[str, ...] = ("reflection", "plain-cot")
VERIFIED, VALID, UNVERIFIED, NO_REFERENCE, MALFORMED = "verified", "valid", "unverified", "no_reference", "malformed"
_SYSTEM_KEY = {"reflection": "reflection.system", "plain-cot": "plain_cot.system"}


class SynthOptions(StepOptions):
    """The options of ``synthesize``. ``answer_format`` is also accepted as ``format`` and ``attempts`` as
    ``max_attempts`` (their names in pipeline files and in :func:`reflectkit.synth.api.synthesize`): on the command
    line ``--format`` is the answer format, ``--max-attempts`` the attempts per oracle *request*, and the record
    shape is ``--shape``."""

    answer_format: Format = option("reflection", "reflection (<thinking>/<reflection>/<output>) or plain-cot.",
                                   flag="--format", validation_alias=AliasChoices("answer_format", "format"))
    answer_field: str | None = option(None, "Column with the reference answer (GSM8K: answer). Enables verification.")
    checker: Checker = option("numeric", "numeric (GSM8K-style numbers) or exact (case/space-insensitive match).")
    attempts: int = option(4, "Samples per row before it is recorded as malformed/unverified.", ge=1,
                           validation_alias=AliasChoices("attempts", "max_attempts"))
    keep_unverified: bool = option(False, "Write well-formed rows whose answer never matched (status unverified).")
    temperature: float = option(0.7, "Temperature of retries (each retry has its own seed).", ge=0)
    first_temperature: float = option(0.0, "Temperature of the first attempt.", ge=0)
    top_p: float = option(0.95, "Nucleus sampling of sampled attempts (greedy attempts use 1).", gt=0, le=1)
    seed_base: int = option(0, "Seed of attempt 0; attempt i uses seed_base + i.")
    max_tokens: int = option(1024, "Oracle max_tokens per sample.", ge=1)
    prompt_set: str = option("paper", "'paper' (Reflection 70B system prompt, verbatim) or a directory.")
    system_prompt: str | None = option(None, "Use this system prompt instead of the prompt set's.")
    shape: str | None = option(None, "Record shape: alpaca, messages or sharegpt (auto-detected).")

    _known_format = choice_validator("answer_format", FORMATS, "--format")

    _known_checker = choice_validator("checker", CHECKERS, "--checker")

    @field_validator("prompt_set")
    @classmethod
    def _known_set(cls, v: str) -> str:
        load_prompt_set("synth", v)  # a UserError naming the built-in sets
        return v

    @model_validator(mode="after")
    def _retries_sample(self) -> "SynthOptions":
        if self.attempts > 1 and self.temperature <= 0:
            raise UserError(f"--temperature must be > 0 for retries (got {self.temperature}); retries need new samples")
        return self


class SynthStep(RowStep[SynthOptions]):
    """Synthesize Reflection-70B-format (or plain-CoT) answers, validated and verified against reference answers."""

    name = "synthesize"
    files = {"rejected": "rows whose answers failed validation or verification (synth_rejected.jsonl)"}
    manifest_sections = ("synthesis", "sampling")
    output_key = "synth"
    Options = SynthOptions
    model_roles = {"oracle": ModelRole("chat", "The oracle that writes the answers", prefix="--oracle-")}
    code = ("synth", "prompts/synth")
    require_output = False
    input_help = "Dataset file: JSONL, JSON array, Parquet or CSV (GSM8K question/answer rows work as is)."
    # --format is the answer format here; the record shape is --shape (an option)
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "map", "skip_bad_rows", "quiet")

    @property
    def cfg(self) -> SynthOptions:
        return self.options

    @cached_property
    def prompt_set(self) -> PromptSet:
        return load_prompt_set("synth", self.options.prompt_set)

    @cached_property
    def system(self) -> str:
        if self.options.system_prompt is not None:
            return self.options.system_prompt
        return self.prompt_set[_SYSTEM_KEY[self.options.answer_format]]

    # ----------------------------------------------------------------- Step contract
    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> "Dataset":
        """The input file (GSM8K ``question`` columns map to the instruction without ``--map``); with
        ``answer_field``, at least one row must have that field."""
        from reflectkit.data.io import read_dataset
        from reflectkit.synth.inputs import auto_mapping

        if input is None:
            raise UserError(f"{self.name} needs an input dataset")
        ds = read_dataset(input, format=self.options.shape or format, mapping=auto_mapping(input, mapping),
                          skip_bad_rows=skip_bad_rows, require_output=False).limit(limit)
        field_ = self.options.answer_field
        if field_ and not any(field_ in r.raw for r in ds.records):
            raise UserError(f"--answer-field {field_!r}: no row of {input} has that field")
        return ds

    def config(self) -> dict[str, Any]:
        return {**self.options.fingerprint_dict(), "system_prompt": self.system,
                "prompt_set_sha256": self.prompt_set.sha256}

    def sampling(self, attempt: int) -> SamplingParams:
        temp = self.cfg.first_temperature if attempt == 0 else self.cfg.temperature
        top_p = 1.0 if temp == 0 else self.cfg.top_p
        return SamplingParams(temperature=temp, top_p=top_p, max_tokens=self.cfg.max_tokens, seed=self.cfg.seed_base + attempt)

    def messages(self, rec: Record) -> list[Message]:
        user = f"{rec.instruction}\n\n{rec.input}" if rec.input else rec.instruction
        msgs: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": user}]

    def estimate(self, records: list[Record]) -> dict[str, int]:
        """One attempt per row at least, ``attempts`` at most (``oracle_calls``/``prompt_tokens`` are the upper
        bounds, as every step's estimate gives them)."""
        prompt = sum(sum(estimate_tokens(m["content"]) for m in self.messages(r)) for r in records)
        n, k = len(records), self.cfg.attempts
        return {"rows": n, "oracle_calls_min": n, "oracle_calls_max": n * k, "oracle_calls": n * k,
                "prompt_tokens_min": prompt, "prompt_tokens": prompt * k, "max_completion_tokens": n * k * self.cfg.max_tokens}

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        return {"synthesis": ctx.state.get("synthesis", {}),
                "sampling": {"first": self.sampling(0).to_dict(), "retries": self.sampling(1).to_dict()}}

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return {"synthesis": ctx.state.get("synthesis", {})}

    def summary_lines(self, summary: Any) -> list[str]:
        return synthesis_lines(summary.manifest.get("synthesis", {}))

    # ----------------------------------------------------------------- per row
    def reference(self, rec: Record) -> tuple[bool, str | None]:
        """(verification wanted, comparable reference or None)."""
        if not self.cfg.answer_field:
            return False, None
        field_ = self.cfg.answer_field
        value = rec.raw.get(field_, rec.extra.get(field_))
        return True, reference_from_value(value, self.cfg.checker)

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        oracle = ctx.model("oracle")
        wanted, ref = self.reference(rec)
        base: dict[str, Any] = {"format": self.cfg.answer_format, "oracle": model_name_identity(oracle.cache_identity),
                                "prompt_set": self.prompt_set.version, "original": {"output": rec.output}}
        if wanted:
            base.update({"checker": self.cfg.checker, "answer_field": self.cfg.answer_field, "reference": ref})
        if rec.turns > 1:
            return RowResult(MALFORMED, "multi-turn conversation: only single-turn rows can be synthesized",
                             rk={**base, "attempts": 0, "attempt_log": []}, drop=True)
        tokens = {"prompt": 0, "completion": 0}
        log: list[dict[str, Any]] = []
        best: tuple[str, Any] | None = None  # last well-formed (text, FormatCheck) that did not verify
        msgs = self.messages(rec)
        for attempt in range(self.cfg.attempts):
            params = self.sampling(attempt)
            res = await oracle.chat(msgs, params, prompt_version=self.prompt_set.version)
            tokens["prompt"] += res.prompt_tokens
            tokens["completion"] += res.completion_tokens
            entry: dict[str, Any] = {"seed": params.seed, "temperature": params.temperature}
            fc = validate(res.text, self.cfg.answer_format)
            if not fc.ok:
                reason = fc.reason or "malformed"
                if res.truncated:
                    reason += " (cut off by max_tokens)"
                log.append({**entry, "result": MALFORMED, "reason": reason})
                continue
            if not wanted:
                log.append({**entry, "result": VALID})
                return self._done(VALID, None, res.text, fc, base, log, tokens)
            if ref is None:
                log.append({**entry, "result": NO_REFERENCE})
                return self._done(NO_REFERENCE, f"row has no usable reference in field {self.cfg.answer_field!r}",
                                  res.text, fc, base, log, tokens)
            verdict = check(fc.output, ref, self.cfg.checker)
            if verdict.match:
                log.append({**entry, "result": VERIFIED, "predicted": verdict.predicted})
                return self._done(VERIFIED, None, res.text, fc, base, log, tokens)
            log.append({**entry, "result": "mismatch", "predicted": verdict.predicted})
            best = (res.text, fc)
        n = self.cfg.attempts
        if best is not None:
            last_pred = next(e.get("predicted") for e in reversed(log) if e["result"] == "mismatch")
            reason = f"answer did not match the reference {ref!r} in {n} attempts (last: {last_pred!r})"
            return self._done(UNVERIFIED, reason, best[0], best[1], base, log, tokens)
        reason = f"no well-formed answer in {n} attempts (last: {log[-1]['reason']})"
        return RowResult(MALFORMED, reason, rk={**base, "attempts": n, "attempt_log": log, "tokens": tokens}, drop=True,
                         prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])

    def _done(self, status: str, reason: str | None, text: str, fc: Any, base: dict[str, Any], log: list[dict[str, Any]],
              tokens: dict[str, int]) -> RowResult:
        keep = status in (VERIFIED, VALID) or self.cfg.keep_unverified
        rk = {**base, "attempts": len(log), "attempt_log": log, "reflections": len(fc.reflections),
              "final_answer": fc.output, "tokens": tokens}
        return RowResult(status, reason, rk=rk, output=text.strip(), drop=not keep,
                         prompt_tokens=tokens["prompt"], completion_tokens=tokens["completion"])

    # ----------------------------------------------------------------- after all rows
    def finish(self, ctx: RunContext, results: ResultReader) -> None:
        """Statistics from the ledger (deterministic across resumes) and the dropped rows with their reasons."""
        pairs = list(results)
        stats = synthesis_stats((res.status, res) for _rec, res in pairs)
        rejected = [{"index": rec.index, "id": rec.id, "status": res.status, "reason": res.reason,
                     "attempts": res.rk.get("attempts")}
                    for rec, res in pairs if res.drop or res.status == FAILED]
        path = ctx.write_file("rejected", "synth_rejected.jsonl",
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))
        stats["rejected_file"] = str(path)
        ctx.state["synthesis"] = stats


def synthesis_lines(stats: dict[str, Any]) -> list[str]:
    """What the CLI prints after the run summary."""
    lines = []
    rate = stats.get("verification_rate")
    if stats.get("rows_checked"):
        lines.append(f"  verified {stats['verified']}/{stats['rows_checked']} rows with a reference "
                     f"(rate {rate:.3f}); attempts per verified example: {stats.get('attempts_per_verified')}; "
                     f"oracle calls per verified example: {stats.get('oracle_calls_per_verified')}")
    if stats.get("rejected_file"):
        lines.append(f"  dropped rows and reasons: {stats['rejected_file']}")
    return lines


def synthesis_stats(results: Iterable[tuple[str, RowResult]]) -> dict[str, Any]:
    """Verification rate and attempts per verified example, from ``(status, result)`` of every row."""
    counts: dict[str, int] = {}
    attempts_total = 0
    attempts_verified: list[int] = []
    checked = 0
    for status, res in results:
        counts[status] = counts.get(status, 0) + 1
        rk = res.rk or {}
        n = int(rk.get("attempts") or 0)
        if rk.get("reference") is not None and status in (VERIFIED, UNVERIFIED, MALFORMED):
            checked += 1
        attempts_total += n
        if status == VERIFIED:
            attempts_verified.append(n)
    verified = counts.get(VERIFIED, 0)
    return {
        "counts": dict(sorted(counts.items())),
        "rows_checked": checked,
        "verified": verified,
        "verification_rate": round(verified / checked, 4) if checked else None,
        "oracle_attempts_total": attempts_total,
        "attempts_per_verified": round(sum(attempts_verified) / verified, 3) if verified else None,
        "oracle_calls_per_verified": round(attempts_total / verified, 3) if verified else None,
    }
