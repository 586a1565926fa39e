"""Drive one Step over a dataset inside a run directory: models, concurrency, ledger (exact resume), progress,
manifest.

Run directory layout::

    <run_dir>/manifest.json   what ran: versions, command/config, input hashes, model ids, prompt hashes, counts
    <run_dir>/ledger.sqlite   per-row status and output (plus keyed tables of steps); this makes resume exact
    <run_dir>/skipped.jsonl   rows that could not be read (with --skip-bad-rows), with file/line and reason
    OUTPUT                    materialised from the ledger in input order (atomically)

Re-running the same command resumes: finished rows are not redone; rows recorded as ``failed`` are retried.
The engine opens the models a step declares (from its specs), probes endpoints before the first row, and closes
them when the run ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from reflectkit.data.io import Dataset, dumps_jsonl, write_dataset
from reflectkit.data.record import Record
from reflectkit.engine.ledger import Ledger
from reflectkit.engine.manifest import code_info, command_line, read_manifest, write_json_atomic
from reflectkit.engine.progress import Progress
from reflectkit.engine.step import FAILED, ResultReader, RowResult, RunContext, Step, result_row
from reflectkit.errors import UserError
from reflectkit.llm.base import FatalModelError, RequestFailed
from reflectkit.llm.secrets import redact
from reflectkit.llm.spec import ModelSpec

#: status of rows that failed in an earlier pipeline stage and are therefore not processed (see ``gate_failed``)
UPSTREAM_FAILED = "upstream_failed"


@dataclass
class RunSummary:
    """The one result type of every step. ``files`` holds its side outputs by name (reports, dropped rows);
    ``details`` holds step-specific values (a funnel, per-benchmark counts), also readable as attributes
    (``summary.funnel``)."""

    step: str
    run_dir: Path
    output: Path | None
    manifest_path: Path
    counts: dict[str, int]
    failed: int
    rows_in: int
    rows_out: int
    calls: int
    cache_hits: int
    wall_time_s: float
    manifest: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        details = self.__dict__.get("details") or {}
        if name in details:
            return details[name]
        files = self.__dict__.get("files") or {}
        if name in files:
            return files[name]
        raise AttributeError(f"RunSummary of {self.__dict__.get('step')!r} has no {name!r}")


def fingerprint(step_name: str, config: dict[str, Any], dataset: Dataset, models: dict[str, Any]) -> str:
    ids = hashlib.sha256("\n".join(r.id for r in dataset.records).encode()).hexdigest()
    payload = {
        "step": step_name,
        "config": config,
        "input_sha256": dataset.sha256,
        "row_ids": ids,
        "mapping": dataset.mapping,
        "models": {role: _identity_key(m) for role, m in sorted(models.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _identity_key(m: Any) -> str:
    ident = getattr(m, "cache_identity", None)
    if ident is not None:
        return str(ident)
    describe = getattr(m, "describe", None)
    return json.dumps(describe(), sort_keys=True) if callable(describe) else str(m)


def default_run_dir(step_name: str, dataset: Dataset, fp: str, root: Path = Path("runs")) -> Path:
    return root / f"{step_name}-{dataset.path.stem}-{fp[:10]}"


def _clients(models: Mapping[str, Any]) -> list[Any]:
    """The opened chat clients (student roles are handed over as specs)."""
    return [m for m in models.values() if not isinstance(m, ModelSpec)]


def _model_stats(models: Mapping[str, Any]) -> dict[str, int]:
    cs = _clients(models)
    return {"calls": sum(getattr(getattr(m, "inner", m), "calls", 0) for m in cs),
            "cache_hits": sum(getattr(m, "hits", 0) for m in cs)}


def open_models(step: Step[Any], *, cache: Any, concurrency: int, cache_only: bool,
                clients: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The clients for the roles ``step`` calls: ``clients`` where given (a test's fake, a caller's own client),
    else built from the step's specs. Student roles stay specs: the step loads the weights itself (once per
    process), since only it knows the device and dtype it needs."""
    from reflectkit.llm.factory import build_chat_model

    opened: dict[str, Any] = {}
    for role in step.active_roles():
        if clients and role in clients:
            opened[role] = clients[role]
        elif step.model_roles[role].kind == "student":
            opened[role] = step.spec(role)
        else:
            opened[role] = build_chat_model(step.spec(role), cache=cache, concurrency=concurrency,
                                            setting_name=step.model_roles[role].flag_prefix(role),
                                            cache_only=cache_only)
    return opened


async def close_models(models: Mapping[str, Any]) -> None:
    for m in _clients(models):
        try:
            await m.aclose()
        except Exception:  # closing must never hide the run's own outcome
            pass


class Run:
    """Run ``step`` over ``dataset``. See the module docstring for the run directory layout.

    ``clients``: already-open clients by role, used instead of building them from the step's specs (the caller
    keeps ownership of those). ``gate_failed``: rows that an earlier pipeline stage recorded as ``failed`` are not
    processed; they are recorded as ``upstream_failed`` with the earlier reason and left out of the output.
    """

    def __init__(
        self,
        step: Step[Any],
        dataset: Dataset,
        *,
        output: Path | None,
        run_dir: Path | None = None,
        concurrency: int = 8,
        progress: bool = True,
        restart: bool = False,
        cache_dir: Path | None = None,
        use_cache: bool = True,
        cache_only: bool = False,
        clients: Mapping[str, Any] | None = None,
        gate_failed: bool = False,
        extra_manifest: dict[str, Any] | None = None,
    ) -> None:
        self.step = step
        self.dataset = dataset
        self.output = Path(output) if output else None
        self.run_dir_arg = Path(run_dir) if run_dir else None
        self.concurrency = max(1, concurrency)
        self.progress_enabled = progress
        self.restart = restart
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.cache_only = cache_only
        self.given_clients = dict(clients or {})
        self.gate_failed = gate_failed
        self.extra_manifest = extra_manifest or {}
        self.models: dict[str, Any] = {}
        self._failed_live = 0
        self._started = ""

    # ------------------------------------------------------------------ helpers
    def _open_ledger(self) -> Ledger:
        path = self.run_dir / "ledger.sqlite"
        if self.restart and path.exists():
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    p.unlink()
        try:
            ledger = Ledger(path)
        except Exception as exc:  # sqlite3.Error, OSError
            raise UserError(f"run directory {self.run_dir} (--run-dir) is not usable: {exc}") from None
        ledger.check_fingerprint(self.fp, self.run_dir)
        return ledger

    def _stats(self) -> dict[str, Any]:
        s = _model_stats(self.models)
        tok = sum(getattr(m, "completion_tokens", 0) for m in _clients(self.models))
        return {**s, "completion_tokens": tok, "failed": self._failed_live}

    async def _process_one(self, rec: Record, ctx: RunContext) -> RowResult:
        try:
            return await self.step.process(rec, ctx)  # type: ignore[attr-defined]
        except FatalModelError:
            raise
        except RequestFailed as exc:
            return RowResult.failure(redact(str(exc)))
        except UserError:
            raise
        except Exception as exc:  # a bad row must not kill the run; it is recorded with its reason
            return RowResult.failure(redact(f"{type(exc).__name__}: {exc}"))

    def _upstream_failure(self, rec: Record) -> RowResult | None:
        if not self.gate_failed:
            return None
        for stage, info in rec.meta.items():
            if isinstance(info, dict) and info.get("status") == FAILED:
                return RowResult(UPSTREAM_FAILED, f"failed in the earlier stage {stage!r}: {info.get('reason')}",
                                 drop=True)
        return None

    # ------------------------------------------------------------------ main
    async def execute(self) -> RunSummary:
        t0 = time.monotonic()
        self._started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        cache = None
        if self.use_cache and any(self.step.model_roles[r].kind == "chat" and r not in self.given_clients
                                  for r in self.step.active_roles()):
            from reflectkit.llm.cache import ResponseCache

            cache = ResponseCache(self.cache_dir)
        if self.cache_only and not self.use_cache:
            raise UserError("--cache-only needs the cache; drop --no-cache")
        self.models = open_models(self.step, cache=cache, concurrency=self.concurrency, cache_only=self.cache_only,
                                  clients=self.given_clients)
        own = {r: m for r, m in self.models.items() if r not in self.given_clients}
        try:
            from reflectkit.llm.factory import probe_model

            for m in _clients(own):
                await probe_model(m)
            return await self._execute(t0)
        finally:
            await close_models(own)

    async def _execute(self, t0: float) -> RunSummary:
        try:
            return await self._execute_inner(t0)
        except FatalModelError as exc:  # wrong key, unknown model... in setup, plan, a batch or finish: exit 2
            raise UserError(redact(str(exc))) from None

    async def _execute_inner(self, t0: float) -> RunSummary:
        self.config = self.step.config()
        self.fp = fingerprint(self.step.name, self.config, self.dataset, self.models)
        self.run_dir = self.run_dir_arg or default_run_dir(self.step.name, self.dataset, self.fp)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ledger = self._open_ledger()
        ctx = RunContext(run_dir=self.run_dir, output=self.output, dataset=self.dataset, models=self.models,
                         concurrency=self.concurrency, progress=self.progress_enabled, cache_dir=self.cache_dir,
                         restart=self.restart, _ledger=ledger)
        records = self.dataset.records
        try:
            self._write_manifest(ledger, ctx, status="running", wall=0.0)
            await self.step.setup(ctx)
            if self.step.kind == "task":
                ctx.counters.update(self.step.run_task(ctx))  # type: ignore[attr-defined]
            else:
                done = ledger.statuses()
                pending = [r for r in records if done.get(r.index) in (None, FAILED)]
                gated = [(r, g) for r in pending if (g := self._upstream_failure(r)) is not None]
                if gated:
                    ledger.put_many([(r.index, r.id, g.status, g.to_json()) for r, g in gated])
                # rows gated now or by an earlier invocation of this run
                stopped = {r.index for r, _ in gated} | {i for i, st in done.items() if st == UPSTREAM_FAILED}
                pending = [r for r in pending if r.index not in stopped]
                if self.step.kind == "dataset":  # decisions over every row that reaches this stage
                    await self.step.plan([r for r in records if r.index not in stopped], ctx)  # type: ignore[attr-defined]
                with Progress(self.step.name, len(records), stats=self._stats, enabled=self.progress_enabled) as prog:
                    prog.resume(len(records) - len(pending))
                    if pending:
                        if self.step.kind == "row":
                            await self._run_rows(pending, ledger, prog, ctx)
                        else:
                            self._run_batches(pending, ledger, prog, ctx)
                self.step.finish(ctx, ResultReader(records, ledger))
            undeclared = sorted(set(ctx.files) - set(self.step.files))
            if undeclared:  # the contract: a step declares its side files (a bug in the step, not in the data)
                raise AssertionError(f"step {self.step.name!r} wrote side files it does not declare in `files`: "
                                     f"{', '.join(undeclared)}")
            rows_out = self._materialise(ledger) if self.step.kind != "task" else 0
            wall = time.monotonic() - t0
            manifest = self._write_manifest(ledger, ctx, status="finished", wall=wall, rows_out=rows_out)
        finally:
            ledger.close()
        counts = manifest["counts"]
        stats = _model_stats(self.models)
        return RunSummary(
            step=self.step.name,
            run_dir=self.run_dir,
            output=self.output,
            manifest_path=self.run_dir / "manifest.json",
            counts=counts,
            failed=counts.get(FAILED, 0),
            rows_in=len(records),
            rows_out=rows_out,
            calls=stats["calls"],
            cache_hits=stats["cache_hits"],
            wall_time_s=wall,
            manifest=manifest,
            files=dict(ctx.files),
            details=self.step.details(ctx),
        )

    async def _run_rows(self, pending: list[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        queue: asyncio.Queue[Record] = asyncio.Queue()
        for rec in pending:
            queue.put_nowait(rec)
        fatal: list[BaseException] = []

        async def worker() -> None:
            while not fatal:
                try:
                    rec = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    res = await self._process_one(rec, ctx)
                except (FatalModelError, UserError) as exc:
                    fatal.append(exc)
                    return
                if res.status == FAILED:
                    self._failed_live += 1
                ledger.put(rec.index, rec.id, res.status, res.to_json())
                prog.advance()

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(pending)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
        if fatal:
            exc = fatal[0]
            raise UserError(redact(str(exc))) if isinstance(exc, FatalModelError) else exc

    def _run_batches(self, pending: list[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        size = max(1, int(self.step.rows_per_batch()))  # type: ignore[attr-defined]
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            results = self.step.process_batch(chunk, ctx)  # type: ignore[attr-defined]
            if len(results) != len(chunk):
                raise AssertionError(f"{self.step.name}: process_batch returned {len(results)} results for {len(chunk)} rows")
            items = []
            for rec, res in zip(chunk, results):
                if res.status == FAILED:
                    self._failed_live += 1
                items.append((rec.index, rec.id, res.status, res.to_json()))
            ledger.put_many(items)
            prog.advance(len(chunk))

    def iter_output_rows(self, ledger: Ledger) -> Iterable[dict[str, Any]]:
        results = {idx: res for idx, _rid, _st, res in ledger.iter_results()}
        for rec in self.dataset.records:
            res = results.get(rec.index)
            if res is None:  # cannot happen after a complete run; guard against silent loss
                raise AssertionError(f"row {rec.id} missing from ledger")
            rr = RowResult.from_json(res)
            if not rr.drop:
                yield result_row(self.step, rec, rr, self.dataset.mapping)

    def _materialise(self, ledger: Ledger) -> int:
        rows = list(self.iter_output_rows(ledger))
        if self.output is not None:
            write_dataset(rows, self.output)
        if self.dataset.bad_rows:
            (self.run_dir / "skipped.jsonl").write_bytes(dumps_jsonl(b.to_dict() for b in self.dataset.bad_rows))
        return len(rows)

    def _write_manifest(self, ledger: Ledger, ctx: RunContext, *, status: str, wall: float,
                        rows_out: int | None = None) -> dict[str, Any]:
        prev = read_manifest(self.run_dir) or {}
        tokens = {"prompt": 0, "completion": 0}
        for _idx, _rid, _st, res in ledger.iter_results():
            tokens["prompt"] += int(res.get("prompt_tokens") or 0)
            tokens["completion"] += int(res.get("completion_tokens") or 0)
        stats = _model_stats(self.models)
        clients = _clients(self.models)
        invocation = {
            "started": self._started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if status == "finished" else None,
            "command": command_line(),
            "status": status,
            "wall_time_s": round(wall, 3),
            "oracle_calls": stats["calls"],
            "cache_hits": stats["cache_hits"],
            "tokens_in": sum(getattr(m, "prompt_tokens", 0) for m in clients),
            "tokens_out": sum(getattr(m, "completion_tokens", 0) for m in clients),
        }
        invocations = list(prev.get("invocations", []))
        if invocations and invocations[-1].get("status") == "running" and status == "finished" \
                and invocations[-1].get("started") == self._started:
            invocations[-1] = invocation
        else:
            invocations.append(invocation)
        manifest: dict[str, Any] = {
            "step": self.step.key,
            "status": status,
            "code": code_info(),
            "command": command_line(),
            "config": self.config,
            "fingerprint": self.fp,
            "input": {
                "path": str(self.dataset.path),
                "sha256": self.dataset.sha256,
                "file_format": self.dataset.file_format,
                "shape": self.dataset.shape,
                "rows_read": len(self.dataset.records),
                "rows_in_file": self.dataset.n_rows,
                "bad_rows_skipped": len(self.dataset.bad_rows),
                "bad_rows": [b.to_dict() for b in self.dataset.bad_rows[:100]],
                "mapping": self.dataset.mapping,
            },
            "models": {role: m.describe() if isinstance(m, ModelSpec) else m.identity for role, m in self.models.items()},
            "model_specs": {role: self.step.spec(role).describe() for role in self.models},
            "counts": ledger.counts(),
            "rows_out": rows_out,
            "output": str(self.output) if self.output else None,
            "files": {k: str(v) for k, v in ctx.files.items()},
            "counters": dict(ctx.counters),
            "tokens": tokens,
            "oracle_calls_this_invocation": stats["calls"],
            "cache_hits_this_invocation": stats["cache_hits"],
            "wall_time_s": round(wall, 3),
            "invocations": invocations,
        }
        manifest.update(self.extra_manifest)
        extra = self.step.manifest_extra(ctx)
        undeclared = sorted(set(extra) - set(self.step.manifest_sections))
        if undeclared:  # the contract: a step declares its manifest sections
            raise AssertionError(f"step {self.step.name!r} adds manifest sections it does not declare in "
                                 f"`manifest_sections`: {', '.join(undeclared)}")
        manifest.update(extra)
        write_json_atomic(self.run_dir / "manifest.json", manifest)
        return manifest


def run_step(step: Step[Any], dataset: Dataset, **kwargs: Any) -> RunSummary:
    """Synchronous wrapper around :class:`Run` (see its keyword arguments)."""
    return asyncio.run(Run(step, dataset, **kwargs).execute())
