"""``score`` as a batched engine Step (resumable, streaming: one ``batch_size`` chunk of rows at a time)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult
from reflectkit.errors import UserError
from reflectkit.prompts import load_prompt_set
from reflectkit.scoring.metrics import missing_reason
from reflectkit.scoring.scorer import Scorer, Triple

SCORED = "scored"
PARTIAL = "partial"
SKIPPED = "skipped"
VARIANTS = ("original", "instruction", "response", "both")


@dataclass
class ScoreConfig:
    student: str = "embedded"
    prompt: str = "vicuna"
    max_length: int = 2048
    variants: list[str] | None = None  # None: every variant present in the input; []: none
    coherence: bool = True


def row_variants(rec: Record) -> dict[str, Any]:
    """``reflectkit.recycle.variants`` of an input row (written by ``recycle --phase all``), or {}."""
    rc = rec.meta.get("recycle")
    v = rc.get("variants") if isinstance(rc, dict) else None
    return v if isinstance(v, dict) else {}


def _triple(v: Any) -> Triple | None:
    if not isinstance(v, dict):
        return None
    return (str(v.get("instruction") or ""), str(v.get("input") or ""), str(v.get("output") or ""))


_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}


def _load(hf_dir: Path, device: str) -> tuple[Any, Any]:
    """Load the student once per process (the pipeline and tests score several files with one student)."""
    from reflectkit.student import load_student

    key = (str(Path(hf_dir).resolve()), device)
    if key not in _LOADED:
        model, tok, _ = load_student(str(hf_dir), device=device)
        _LOADED.clear()  # keep at most one student in memory
        _LOADED[key] = (model, tok)
    return _LOADED[key]


class ScoreStep:
    """Per-row student scores (IFD, r-IFD, perplexities, coherence, gzip ratio) under ``reflectkit.score``."""

    name = "score"

    def __init__(self, cfg: ScoreConfig, *, cache_dir: Path | None = None, device: str | None = None,
                 batch_size: int = 64, token_budget: int = 4096) -> None:
        from reflectkit.scoring.wrappers import PROMPTS
        from reflectkit.student import ENV_STUDENT_CACHE, default_dtype, pick_device, resolve_student

        if cfg.prompt not in PROMPTS:
            raise UserError(f"--prompt must be one of {', '.join(PROMPTS)}, got {cfg.prompt!r}")
        if cfg.max_length < 8:
            raise UserError(f"--max-length must be at least 8, got {cfg.max_length}")
        for v in cfg.variants or []:
            if v not in VARIANTS:
                raise UserError(f"--variants: unknown variant {v!r}; choose from {', '.join(VARIANTS)}, 'all' or 'none'")
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.device = pick_device(device)
        self.dtype = str(default_dtype(self.device)).replace("torch.", "")
        self.batch_size = batch_size
        self.token_budget = token_budget
        # REFLECTKIT_STUDENT_CACHE, when set, says where converted students live (shared across cache dirs).
        self.info = resolve_student(cfg.student, cache_dir=None if os.environ.get(ENV_STUDENT_CACHE) else cache_dir)
        self.prompt_set = load_prompt_set("scoring", "paper")
        self._scorer: Scorer | None = None

    # ------------------------------------------------------------------ Step protocol
    def config(self) -> dict[str, Any]:
        # a GGUF is identified by its sha256 (its path and conversion dir vary by machine); an HF dir by its path
        drop = ("path", "hf_dir") if "gguf_sha256" in self.info.identity else ()
        ident = {k: v for k, v in self.info.identity.items() if k not in drop}
        return {**asdict(self.cfg), "student": ident, "dtype": self.dtype, "prompt_set_sha256": self.prompt_set.sha256}

    def models(self) -> dict[str, Any]:
        return {}

    def manifest_extra(self) -> dict[str, Any]:
        return {"student": {**self.info.identity, "device": self.device, "dtype": self.dtype},
                "scoring": {"batch_size": self.batch_size, "token_budget": self.token_budget}}

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            model, tok = _load(self.info.hf_dir, self.device)
            self._scorer = Scorer(model, tok, prompt=self.cfg.prompt, max_length=self.cfg.max_length,
                                  token_budget=self.token_budget, cache_dir=self.cache_dir, coherence=self.cfg.coherence)
        return self._scorer

    def _wanted(self, rec: Record) -> dict[str, Triple | None]:
        vs = row_variants(rec)
        names = [n for n in VARIANTS if n in vs] if self.cfg.variants is None else [n for n in self.cfg.variants if n in vs]
        return {n: _triple(vs[n]) for n in names}

    def process_batch(self, recs: list[Record]) -> list[RowResult]:
        uniq: dict[Triple, int] = {}
        per_row: list[tuple[Triple, dict[str, Triple | None]]] = []
        for rec in recs:
            own = (rec.instruction, rec.input, rec.output)
            wanted = self._wanted(rec)
            per_row.append((own, wanted))
            for t in [own, *wanted.values()]:
                if t is not None and t not in uniq:
                    uniq[t] = len(uniq)
        scorer = self.scorer  # load errors are the user's (bad --student/--device), not the rows': raise them here
        try:
            scores = scorer.score(list(uniq))
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # one bad row must not sink its batch: score row by row, record the failures
            return [self._one(rec, own, wanted) for rec, (own, wanted) in zip(recs, per_row)]
        return [self._result(rec, own, wanted, scores, uniq) for rec, (own, wanted) in zip(recs, per_row)]

    def _one(self, rec: Record, own: Triple, wanted: dict[str, Triple | None]) -> RowResult:
        uniq: dict[Triple, int] = {}
        for t in [own, *wanted.values()]:
            if t is not None and t not in uniq:
                uniq[t] = len(uniq)
        try:
            scores = self.scorer.score(list(uniq))
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            return RowResult.failure(f"scoring failed: {type(exc).__name__}: {exc}")
        return self._result(rec, own, wanted, scores, uniq)

    @staticmethod
    def _result(rec: Record, own: Triple, wanted: dict[str, Triple | None], scores: list[dict[str, Any] | None],
                uniq: dict[Triple, int]) -> RowResult:
        rk: dict[str, Any] = {}
        own_score = scores[uniq[own]]
        if own_score is not None:
            rk.update(own_score)
        if wanted:
            variants: dict[str, Any] = {}
            for name, t in wanted.items():
                if t is None:
                    variants[name] = None  # the variant failed in recycle; its reason is in reflectkit.recycle.phases
                elif scores[uniq[t]] is None:
                    variants[name] = {"status": SKIPPED, "reason": "empty response: nothing to score"}
                else:
                    variants[name] = scores[uniq[t]]
            rk["variants"] = variants
        if own_score is None:
            return RowResult(SKIPPED, "empty response: nothing to score", rk=rk)
        reason = missing_reason(own_score)
        return RowResult(PARTIAL if reason else SCORED, reason, rk=rk)
