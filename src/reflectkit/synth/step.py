"""The ``synth`` step: ask the oracle for a Reflection-format (or plain-CoT) answer, validate it, verify it.

Per row, up to ``max_attempts`` samples are drawn. Attempt 0 uses ``first_temperature`` (default 0, greedy);
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from reflectkit.data.record import Record
from reflectkit.engine.step import FAILED, RowResult, estimate_tokens
from reflectkit.errors import UserError
from reflectkit.llm.base import Message, SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import PromptSet, load_prompt_set
from reflectkit.synth.reflection_format import validate
from reflectkit.synth.verify import CHECKERS, Checker, check, reference_from_value

Format = Literal["reflection", "plain-cot"]
FORMATS: tuple[str, ...] = ("reflection", "plain-cot")
VERIFIED, VALID, UNVERIFIED, NO_REFERENCE, MALFORMED = "verified", "valid", "unverified", "no_reference", "malformed"
_SYSTEM_KEY = {"reflection": "reflection.system", "plain-cot": "plain_cot.system"}


@dataclass
class SynthConfig:
    format: Format = "reflection"
    answer_field: str | None = None
    checker: Checker = "numeric"
    max_attempts: int = 4
    keep_unverified: bool = False
    temperature: float = 0.7
    first_temperature: float = 0.0
    top_p: float = 0.95
    seed_base: int = 0
    max_tokens: int = 1024
    prompt_set: str = "paper"
    system_prompt: str | None = None  # overrides the prompt set's system prompt

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.checker not in CHECKERS:
            raise UserError(f"--checker must be one of {', '.join(CHECKERS)}, got {self.checker!r}")
        if self.max_attempts < 1:
            raise UserError(f"--attempts must be >= 1, got {self.max_attempts}")
        if self.max_attempts > 1 and self.temperature <= 0:
            raise UserError(f"--temperature must be > 0 for retries (got {self.temperature}); retries need new samples")


class SynthStep:
    """Reflection-format data synthesis with structure validation and answer verification, as an engine Step."""

    name = "synth"

    def __init__(self, oracle: CachedChatModel, config: SynthConfig | None = None) -> None:
        self.oracle = oracle
        self.cfg = config or SynthConfig()
        self.cfg.validate()
        self.prompt_set: PromptSet = load_prompt_set("synth", self.cfg.prompt_set)
        self.system = self.cfg.system_prompt if self.cfg.system_prompt is not None else self.prompt_set[_SYSTEM_KEY[self.cfg.format]]
        self.stats: dict[str, Any] = {}

    # ----------------------------------------------------------------- Step protocol
    def models(self) -> dict[str, CachedChatModel]:
        return {"oracle": self.oracle}

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "system_prompt": self.system, "prompt_set_sha256": self.prompt_set.sha256}

    def sampling(self, attempt: int) -> SamplingParams:
        temp = self.cfg.first_temperature if attempt == 0 else self.cfg.temperature
        top_p = 1.0 if temp == 0 else self.cfg.top_p
        return SamplingParams(temperature=temp, top_p=top_p, max_tokens=self.cfg.max_tokens, seed=self.cfg.seed_base + attempt)

    def messages(self, rec: Record) -> list[Message]:
        user = f"{rec.instruction}\n\n{rec.input}" if rec.input else rec.instruction
        msgs: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": user}]

    def estimate(self, records: list[Record]) -> dict[str, int]:
        prompt = sum(sum(estimate_tokens(m["content"]) for m in self.messages(r)) for r in records)
        return {"rows": len(records), "oracle_calls_min": len(records), "oracle_calls_max": len(records) * self.cfg.max_attempts,
                "prompt_tokens_min": prompt, "max_completion_tokens": len(records) * self.cfg.max_attempts * self.cfg.max_tokens}

    def manifest_extra(self) -> dict[str, Any]:
        return {"synthesis": self.stats, "sampling": {"first": self.sampling(0).to_dict(), "retries": self.sampling(1).to_dict()}}

    # ----------------------------------------------------------------- per row
    def reference(self, rec: Record) -> tuple[bool, str | None]:
        """(verification wanted, comparable reference or None)."""
        if not self.cfg.answer_field:
            return False, None
        field_ = self.cfg.answer_field
        value = rec.raw.get(field_, rec.extra.get(field_))
        return True, reference_from_value(value, self.cfg.checker)

    async def process(self, rec: Record) -> RowResult:
        wanted, ref = self.reference(rec)
        base: dict[str, Any] = {"format": self.cfg.format, "oracle": self.oracle.cache_identity,
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
        for attempt in range(self.cfg.max_attempts):
            params = self.sampling(attempt)
            res = await self.oracle.chat(msgs, params, prompt_version=self.prompt_set.version)
            tokens["prompt"] += res.prompt_tokens
            tokens["completion"] += res.completion_tokens
            entry: dict[str, Any] = {"seed": params.seed, "temperature": params.temperature}
            fc = validate(res.text, self.cfg.format)
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
        n = self.cfg.max_attempts
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
    def finalize(self, records: list[Record], ledger: Any, run_dir: Path) -> None:
        self.stats = synthesis_stats(ledger)
        rejected = []
        for idx, rid, status, res in ledger.iter_results():
            if res.get("drop") or status == FAILED:
                rejected.append({"index": idx, "id": rid, "status": status, "reason": res.get("reason"),
                                 "attempts": (res.get("rk") or {}).get("attempts")})
        path = run_dir / "synth_rejected.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected), encoding="utf-8")
        self.stats["rejected_file"] = str(path)


def synthesis_stats(ledger: Any) -> dict[str, Any]:
    """Verification rate and attempts per verified example, from the ledger (deterministic across resumes)."""
    counts: dict[str, int] = {}
    attempts_total = 0
    attempts_verified: list[int] = []
    checked = 0
    for _idx, _rid, status, res in ledger.iter_results():
        counts[status] = counts.get(status, 0) + 1
        rk = res.get("rk") or {}
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
