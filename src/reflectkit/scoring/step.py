"""``score`` as a batched engine step (resumable, streaming: one ``batch_size`` chunk of rows at a time).

The student's weights are loaded lazily, once per process (:func:`_load`), by the first batch that needs them:
never when the step is built, so ``--dry-run`` needs no model and the step pickles.

A student given as an OpenAI-compatible endpoint (``--student-base-url URL --student-model NAME``; in YAML
``student: {model: NAME, base_url: URL}``) is scored from its prompt log-probs (:mod:`reflectkit.scoring.endpoint`)
after the correctness probe (:mod:`reflectkit.scoring.probe`) has passed; the probe's result is the manifest's
``probe`` section. Each batch runs its requests on a private event loop in a worker thread (the engine calls
``process_batch`` synchronously from inside its own loop).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal, TypeVar

from pydantic import field_validator

from reflectkit.data.record import Record
from reflectkit.engine.step import (BatchStep, ModelRole, RowResult, RunContext, StepOptions, choice_validator,
                                    estimate_tokens, option)
from reflectkit.errors import UserError
from reflectkit.prompts import PromptSet, load_prompt_set
from reflectkit.scoring.metrics import missing_reason
from reflectkit.scoring.wrappers import PROMPTS

if TYPE_CHECKING:  # pragma: no cover - the scorer imports torch: only when a batch is scored
    from reflectkit.llm.prompt_logprobs import PromptLogprobsClient
    from reflectkit.scoring.endpoint import EndpointScorer
    from reflectkit.scoring.scorer import Scorer

T = TypeVar("T")

Triple = tuple[str, str, str]

SCORED = "scored"
PARTIAL = "partial"
SKIPPED = "skipped"
VARIANTS = ("original", "instruction", "response", "both")
DEFAULT_BATCH_SIZE = 32


def parse_variants(value: Any) -> str:
    """The canonical spelling of a ``variants`` value: ``all``, ``none`` or a comma list of variant names.

    Accepts the CLI's text (``all``, ``none``, ``original,both``) and the Python API's values (None: all present;
    ``[]``: none; a list of names)."""
    if value is None:
        return "all"
    if isinstance(value, (list, tuple)):
        names = [str(v).strip().lower() for v in value if str(v).strip()]
        if not names:
            return "none"
        if names in (["all"], ["none"]):
            return names[0]
    elif isinstance(value, str):
        t = value.strip().lower()
        if t in ("all", "none"):
            return t
        names = [v.strip() for v in t.split(",") if v.strip()]
        if not names:
            raise UserError("--variants: expected all, none, or variant names separated by commas (e.g. original,both)")
    else:
        raise UserError(f"--variants: expected all, none or a list of variant names, got {value!r}")
    for v in names:
        if v not in VARIANTS:
            raise UserError(f"--variants: unknown variant {v!r}; choose from {', '.join(VARIANTS)}, 'all' or 'none'")
    return ",".join(dict.fromkeys(names))


class ScoreOptions(StepOptions):
    """The options of ``score``. ``variants`` also takes, from Python, None (all), [] (none) or a list of names;
    it is stored as ``all``, ``none`` or a comma list."""

    max_length: int = option(2048, "Truncate as the reference does (tokens).", ge=8)
    prompt: Literal["vicuna", "alpaca", "chat"] = option(
        "vicuna", "Student prompt wrapper: vicuna (paper default), alpaca or chat.")
    variants: str = option("all", "Recycle variants to score: all, none, or e.g. original,both.")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "Rows per batch (and per ledger commit).", ge=1, fingerprint=False)
    token_budget: int = option(4096, "Padded tokens per forward micro-batch.", ge=64, fingerprint=False)
    device: str | None = option(None, "cpu, cuda, cuda:1 ... (default: cuda if present).", fingerprint=False)
    threads: int | None = option(None, "torch CPU threads (default: torch's choice; 1 is often fastest on a busy "
                                 "machine).", ge=1, fingerprint=False)
    coherence: bool = option(True, "Compute the Sentence-BERT coherence score (--no-coherence skips it).")
    tokenizer: str | None = option(
        None, "Endpoint student: the local tokenizer of the model it serves ('embedded', a .gguf or an HF dir); the "
        "probe checks the server's tokens against it. 'server' (the default without one): use the server's "
        "tokenization, recorded in the manifest. Default: the student's 'claims', else 'server'.")
    logprob_api: Literal["auto", "echo", "prompt_logprobs"] = option(
        "auto", "Endpoint student: how to ask for prompt log-probs: echo (/v1/completions echo+logprobs), "
        "prompt_logprobs (vLLM) or auto (the first that passes the probe).", fingerprint=False)
    probe_tolerance: float = option(0.05, "Endpoint student: the probe's tolerance (nats) between a token's "
                                    "log-prob as a prompt token and as a generated token.", gt=0, fingerprint=False)

    _known_prompt = choice_validator("prompt", PROMPTS, "--prompt")

    @field_validator("variants", mode="before")
    @classmethod
    def _variants(cls, v: Any) -> str:
        return parse_variants(v)

    @property
    def variant_list(self) -> list[str] | None:
        """None: every variant present in the input; []: none; else those names."""
        if self.variants == "all":
            return None
        if self.variants == "none":
            return []
        return self.variants.split(",")


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


class ScoreStep(BatchStep[ScoreOptions]):
    """Score rows with a student model: IFD, r-IFD, perplexities, coherence, gzip ratio (Cherry LLM, Selective
    Reflection-Tuning).

    Scores go under ``reflectkit.score`` of each output row; with ``recycle --phase all`` inputs, each variant's
    scores go under ``reflectkit.score.variants.<name>``. ``threads`` sets torch's (process-wide) CPU thread count.
    Resumable: re-running with the same arguments continues where a killed run stopped.
    """

    name = "score"
    manifest_sections = ("scoring", "student", "probe")
    Options = ScoreOptions
    model_roles = {"student": ModelRole("student", "'embedded' (SmolLM2-135M-Instruct), a local HF model dir or a "
                                        ".gguf (or an endpoint: --student-base-url and --student-model).",
                                        endpoint=True)}
    code = ("scoring", "student.py", "embed.py", "prompts/scoring")

    @cached_property
    def prompt_set(self) -> PromptSet:
        return load_prompt_set("scoring", "paper")

    @cached_property
    def device(self) -> str:
        """The torch device (a bad ``--device`` is a UserError here, before any model is loaded)."""
        from reflectkit.student import pick_device

        return pick_device(self.options.device)

    @cached_property
    def dtype(self) -> str:
        from reflectkit.student import default_dtype

        return str(default_dtype(self.device)).replace("torch.", "")

    # ------------------------------------------------------------------ Step contract
    def rows_per_batch(self) -> int:
        return self.options.batch_size

    @property
    def endpoint(self) -> bool:
        """Is the student an OpenAI-compatible endpoint (scored from its prompt log-probs)?"""
        return self.spec("student").kind == "openai-compatible"

    def tokenizer_ref(self) -> str:
        """Endpoint student: 'server', or the local model whose tokenizer the server's tokens must match."""
        t = self.options.tokenizer or self.spec("student").claims or "server"
        return "server" if t.strip().lower() == "server" else t

    def validate(self) -> None:
        if self.endpoint:
            self.spec("student").check("--student-")
            if self.options.prompt == "chat" and self.tokenizer_ref() == "server":
                raise UserError("--prompt chat with an endpoint student needs the student's local tokenizer (for its "
                                "chat template): set tokenizer (e.g. 'embedded' or the model's HF directory)")

    def config(self) -> dict[str, Any]:
        if self.endpoint:  # no local weights: no device or dtype; the tokenization decides the token sequences
            return {**self.options.fingerprint_dict(), "tokenizer": self.tokenizer_ref(),
                    "prompt_set_sha256": self.prompt_set.sha256}
        return {**self.options.fingerprint_dict(), "dtype": self.dtype, "prompt_set_sha256": self.prompt_set.sha256}

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        triples = 0
        tokens = 0
        for rec in records:
            ts = [(rec.instruction, rec.input, rec.output), *(t for t in self._wanted(rec).values() if t is not None)]
            for t in dict.fromkeys(ts):
                if t[2].strip():
                    triples += 1
                    tokens += 2 * sum(estimate_tokens(x) for x in t if x)
        return {"rows": len(records), "texts_to_score": triples, "student_forward_passes": 4 * triples,
                "student_tokens": tokens, "oracle_calls": 0}

    async def setup(self, ctx: RunContext) -> None:
        from reflectkit.student import ENV_STUDENT_CACHE, resolve_student

        if self.endpoint:
            await self._setup_endpoint(ctx)
            return
        if self.options.threads:  # process-wide: torch has one intra-op pool
            import torch

            torch.set_num_threads(self.options.threads)
        spec = ctx.model("student")
        # REFLECTKIT_STUDENT_CACHE, when set, says where converted students live (shared across cache dirs).
        cache = None if os.environ.get(ENV_STUDENT_CACHE) else ctx.cache_dir
        ctx.state["student"] = resolve_student(spec.student_ref(), cache_dir=cache)

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        info = ctx.state.get("student")
        out: dict[str, Any] = {"scoring": {"batch_size": self.options.batch_size,
                                           "token_budget": self.options.token_budget}}
        if self.endpoint:
            spec = self.spec("student")
            out["scoring"] = {"batch_size": self.options.batch_size, "endpoint": {
                k: ctx.counters.get(f"endpoint_{k}", 0)
                for k in ("probe_requests", "requests", "retries", "cache_hits", "prompt_tokens")}}
            out["student"] = {"kind": "openai-compatible", "base_url": spec.base_url, "model": spec.model,
                              "tokenizer": self.tokenizer_ref()}
            probe = ctx.state.get("probe")
            if probe is not None:
                out["probe"] = probe.to_manifest()
            return out
        if info is not None:
            out["student"] = {**info.identity, "device": self.device, "dtype": self.dtype}
        return out

    def scorer(self, ctx: RunContext) -> "Scorer":
        """The run's scorer; the first call loads the student (once per process)."""
        if "scorer" not in ctx.state:
            from reflectkit.scoring.scorer import Scorer

            info = ctx.state["student"]
            model, tok = _load(info.hf_dir, self.device)
            o = self.options
            ctx.state["scorer"] = Scorer(model, tok, prompt=o.prompt, max_length=o.max_length,
                                         token_budget=o.token_budget, cache_dir=ctx.cache_dir, coherence=o.coherence)
        return ctx.state["scorer"]

    def _wanted(self, rec: Record) -> dict[str, Triple | None]:
        vs = row_variants(rec)
        chosen = self.options.variant_list
        names = [n for n in VARIANTS if n in vs] if chosen is None else [n for n in chosen if n in vs]
        return {n: _triple(vs[n]) for n in names}

    def _collect(self, records: list[Record]) -> tuple[dict[Triple, int], list[tuple[Triple, dict[str, Triple | None]]]]:
        """The batch's distinct triples (rows and their variants share texts) and, per row, its own and wanted."""
        uniq: dict[Triple, int] = {}
        per_row: list[tuple[Triple, dict[str, Triple | None]]] = []
        for rec in records:
            own = (rec.instruction, rec.input, rec.output)
            wanted = self._wanted(rec)
            per_row.append((own, wanted))
            for t in [own, *wanted.values()]:
                if t is not None and t not in uniq:
                    uniq[t] = len(uniq)
        return uniq, per_row

    def process_batch(self, records: list[Record], ctx: RunContext) -> list[RowResult]:
        if self.endpoint:
            return self._process_endpoint(records, ctx)
        uniq, per_row = self._collect(records)
        scorer = self.scorer(ctx)  # load errors are the user's (bad --student/--device), not the rows': raise them here
        try:
            scores = scorer.score(list(uniq))
        except (UserError, KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # one bad row must not sink its batch: score row by row, record the failures
            return [self._one(rec, own, wanted, scorer) for rec, (own, wanted) in zip(records, per_row)]
        return [self._result(rec, own, wanted, scores, uniq) for rec, (own, wanted) in zip(records, per_row)]

    def _one(self, rec: Record, own: Triple, wanted: dict[str, Triple | None], scorer: "Scorer") -> RowResult:
        uniq: dict[Triple, int] = {}
        for t in [own, *wanted.values()]:
            if t is not None and t not in uniq:
                uniq[t] = len(uniq)
        try:
            scores = scorer.score(list(uniq))
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


    # ------------------------------------------------------------------ endpoint student
    def _client(self, ctx: RunContext) -> "PromptLogprobsClient":
        from reflectkit.llm.cache import ResponseCache
        from reflectkit.llm.prompt_logprobs import PromptLogprobsClient
        from reflectkit.llm.retry import RetryPolicy

        spec = self.spec("student")
        if "cache" not in ctx.state:
            ctx.state["cache"] = ResponseCache(ctx.cache_dir)
        retry = RetryPolicy(max_attempts=spec.max_attempts, base_delay=spec.backoff_base, timeout=spec.timeout)
        return PromptLogprobsClient(str(spec.base_url), str(spec.model), api_key_env=spec.api_key_env,
                                    concurrency=ctx.concurrency, retry=retry, cache=ctx.state["cache"])

    @staticmethod
    def _account(ctx: RunContext, client: "PromptLogprobsClient") -> None:
        for k in ("requests", "retries", "cache_hits", "prompt_tokens"):
            ctx.count(f"endpoint_{k}", getattr(client, k))

    async def _setup_endpoint(self, ctx: RunContext) -> None:
        """Probe the endpoint (refusing it with one line if it fails) and keep the scorer for the batches."""
        from reflectkit.llm.base import FatalModelError
        from reflectkit.scoring.endpoint import EndpointScorer
        from reflectkit.scoring.plan import Tokenize
        from reflectkit.scoring.probe import probe_endpoint
        from reflectkit.scoring.wrappers import make_wrapper

        ref = self.tokenizer_ref()
        # as for a local student: REFLECTKIT_STUDENT_CACHE, when set, says where converted students live
        from reflectkit.student import ENV_STUDENT_CACHE

        cache = None if os.environ.get(ENV_STUDENT_CACHE) else ctx.cache_dir
        tok = None if ref == "server" else load_tokenizer(ref, cache)
        try:
            client = self._client(ctx)
        except FatalModelError as exc:
            raise UserError(str(exc)) from None
        try:
            probe = await probe_endpoint(client, tokenizer=tok, tokenizer_name=None if tok is None else ref,
                                         api=self.options.logprob_api, tolerance=self.options.probe_tolerance)
        finally:
            ctx.count("endpoint_probe_requests", client.requests)  # the probe asks the live server, never the cache
            await client.aclose()
        ctx.state["probe"] = probe
        o = self.options
        ctx.state["endpoint_scorer"] = EndpointScorer(
            probe, make_wrapper(o.prompt, tok), Tokenize(tok) if tok is not None else None, max_length=o.max_length,
            coherence=o.coherence, cache_dir=ctx.cache_dir)

    def finish(self, ctx: RunContext, results: Any) -> None:
        cache = ctx.state.pop("cache", None)
        if cache is not None:
            cache.close()

    def _process_endpoint(self, records: list[Record], ctx: RunContext) -> list[RowResult]:
        uniq, per_row = self._collect(records)
        triples = list(uniq)
        scorer: "EndpointScorer" = ctx.state["endpoint_scorer"]

        async def go() -> list[tuple[Any, int]]:
            client = self._client(ctx)
            try:
                return await scorer.score(client, triples)
            finally:
                self._account(ctx, client)
                await client.aclose()

        outcomes = _run_on_own_loop(go)
        scores = [o if not isinstance(o, Exception) else None for o, _ in outcomes]
        results: list[RowResult] = []
        for rec, (own, wanted) in zip(records, per_row):
            mine = dict.fromkeys(t for t in [own, *wanted.values()] if t is not None)
            errors = [outcomes[uniq[t]][0] for t in mine if isinstance(outcomes[uniq[t]][0], Exception)]
            if errors:
                from reflectkit.llm.secrets import redact

                e = errors[0]
                results.append(RowResult.failure(redact(f"scoring through the endpoint failed: {type(e).__name__}: {e}")))
                continue
            r = self._result(rec, own, wanted, scores, uniq)
            r.prompt_tokens = sum(outcomes[uniq[t]][1] for t in mine)
            results.append(r)
        return results


def load_tokenizer(ref: str, cache_dir: Path | None = None) -> Any:
    """The tokenizer of a local student ('embedded', a .gguf or an HF dir), without loading its weights. A GGUF's
    tokenizer comes from its converted student directory when one exists (reading it from the GGUF takes ~15 s)."""
    from reflectkit.llm.embedded import embedded_gguf_path, gguf_sha256
    from reflectkit.student import _as_user_error, _cache_root, hf_offline

    with hf_offline():
        from transformers import AutoTokenizer

    p = Path(ref).expanduser()
    if ref.lower() in ("embedded", "default", "smollm2"):
        p = embedded_gguf_path()
    with _as_user_error(f"tokenizer {ref}: cannot load it"), hf_offline():
        if p.is_dir():
            return AutoTokenizer.from_pretrained(str(p))
        if p.is_file() and p.suffix.lower() == ".gguf":
            root = _cache_root(cache_dir)
            converted = root / gguf_sha256(p, root.parent)[:16]
            if (converted / "tokenizer.json").exists():
                return AutoTokenizer.from_pretrained(str(converted))
            return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    raise UserError(f"tokenizer {ref!r}: expected 'embedded', 'server', a .gguf file or a Hugging Face model directory")


def _run_on_own_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread (we may be inside the engine's)."""
    with ThreadPoolExecutor(1, thread_name_prefix="score-endpoint") as pool:
        return pool.submit(asyncio.run, fn()).result()  # type: ignore[arg-type]


__all__ = ["ScoreOptions", "ScoreStep", "DEFAULT_BATCH_SIZE", "VARIANTS", "parse_variants", "row_variants"]
