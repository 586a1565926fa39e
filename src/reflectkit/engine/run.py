"""Drive one Step over a dataset inside a run directory: concurrency, ledger (exact resume), progress, manifest.

Run directory layout::

    <run_dir>/manifest.json   what ran: versions, command/config, input hashes, model ids, prompt hashes, counts
    <run_dir>/ledger.sqlite   per-row status and output; this is what makes resume exact
    <run_dir>/skipped.jsonl   rows that could not be read (with --skip-bad-rows), with file/line and reason
    OUTPUT                    materialised from the ledger in input order (atomically)

Re-running the same command resumes: finished rows are not redone; rows recorded as ``failed`` are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from reflectkit.data.io import Dataset, dumps_jsonl, record_to_row, write_dataset
from reflectkit.data.record import Record
from reflectkit.engine.ledger import Ledger
from reflectkit.engine.manifest import code_info, command_line, read_manifest, write_json_atomic
from reflectkit.engine.progress import Progress
from reflectkit.engine.step import FAILED, RowResult
from reflectkit.errors import UserError
from reflectkit.llm.base import FatalModelError, RequestFailed
from reflectkit.llm.secrets import redact


@dataclass
class RunSummary:
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

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def fingerprint(step_name: str, config: dict[str, Any], dataset: Dataset, models: dict[str, Any]) -> str:
    ids = hashlib.sha256("\n".join(r.id for r in dataset.records).encode()).hexdigest()
    payload = {
        "step": step_name,
        "config": config,
        "input_sha256": dataset.sha256,
        "row_ids": ids,
        "mapping": dataset.mapping,
        "models": {role: getattr(m, "cache_identity", str(m)) for role, m in sorted(models.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def default_run_dir(step_name: str, dataset: Dataset, fp: str, root: Path = Path("runs")) -> Path:
    return root / f"{step_name}-{dataset.path.stem}-{fp[:10]}"


def _model_stats(models: dict[str, Any]) -> dict[str, int]:
    calls = sum(getattr(getattr(m, "inner", m), "calls", 0) for m in models.values())
    hits = sum(getattr(m, "hits", 0) for m in models.values())
    return {"calls": calls, "cache_hits": hits}


class Run:
    """Run ``step`` over ``dataset``. See the module docstring for the run directory layout."""

    def __init__(
        self,
        step: Any,
        dataset: Dataset,
        *,
        output: Path | None,
        run_dir: Path | None = None,
        concurrency: int = 8,
        progress: bool = True,
        restart: bool = False,
        extra_manifest: dict[str, Any] | None = None,
    ) -> None:
        self.step = step
        self.dataset = dataset
        self.output = Path(output) if output else None
        self.models: dict[str, Any] = step.models() if hasattr(step, "models") else {}
        self.config = step.config()
        self.fp = fingerprint(step.name, self.config, dataset, self.models)
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(step.name, dataset, self.fp)
        self.concurrency = max(1, concurrency)
        self.progress_enabled = progress
        self.restart = restart
        self.extra_manifest = extra_manifest or {}
        self._failed_live = 0

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
        tok = sum(getattr(m, "completion_tokens", 0) for m in self.models.values())
        return {**s, "completion_tokens": tok, "failed": self._failed_live}

    async def _process_one(self, rec: Record) -> RowResult:
        try:
            return await self.step.process(rec)
        except FatalModelError:
            raise
        except RequestFailed as exc:
            return RowResult.failure(redact(str(exc)))
        except UserError:
            raise
        except Exception as exc:  # a bad row must not kill the run; it is recorded with its reason
            return RowResult.failure(redact(f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ main
    async def _probe_models(self) -> None:
        """Ask endpoints for their identity once (unreachable endpoint or rejected key: exit 2 before any row)."""
        from reflectkit.cli_common import probe_model

        for m in self.models.values():
            await probe_model(m)

    async def execute(self) -> RunSummary:
        t0 = time.monotonic()
        await self._probe_models()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ledger = self._open_ledger()
        try:
            done = ledger.statuses()
            pending = [r for r in self.dataset.records if done.get(r.index) in (None, FAILED)]
            self._write_manifest(ledger, status="running", wall=0.0)
            if hasattr(self.step, "prepare"):
                await self.step.prepare(self.dataset.records)
            with Progress(self.step.name, len(self.dataset.records), stats=self._stats, enabled=self.progress_enabled) as prog:
                prog.advance(len(self.dataset.records) - len(pending))
                if pending:
                    if hasattr(self.step, "process_batch"):
                        self._run_batches(pending, ledger, prog)
                    else:
                        await self._run_rows(pending, ledger, prog)
            if hasattr(self.step, "finalize"):
                self.step.finalize(self.dataset.records, ledger, self.run_dir)
            rows_out = self._materialise(ledger)
            wall = time.monotonic() - t0
            manifest = self._write_manifest(ledger, status="finished", wall=wall, rows_out=rows_out)
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
            rows_in=len(self.dataset.records),
            rows_out=rows_out,
            calls=stats["calls"],
            cache_hits=stats["cache_hits"],
            wall_time_s=wall,
            manifest=manifest,
        )

    async def _run_rows(self, pending: list[Record], ledger: Ledger, prog: Progress) -> None:
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
                    res = await self._process_one(rec)
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

    def _run_batches(self, pending: list[Record], ledger: Ledger, prog: Progress) -> None:
        size = max(1, int(getattr(self.step, "batch_size", 64)))
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            results = self.step.process_batch(chunk)
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
            if rr.drop:
                continue
            stage: dict[str, Any] = {"status": rr.status}
            if rr.reason is not None:
                stage["reason"] = rr.reason
            stage.update(rr.rk)
            yield record_to_row(
                rec,
                instruction=rr.instruction,
                input=rr.input,
                output=rr.output,
                rk={self.step.name: stage},
                mapping=self.dataset.mapping,
            )

    def _materialise(self, ledger: Ledger) -> int:
        rows = list(self.iter_output_rows(ledger))
        if self.output is not None:
            write_dataset(rows, self.output)
        if self.dataset.bad_rows:
            (self.run_dir / "skipped.jsonl").write_bytes(dumps_jsonl(b.to_dict() for b in self.dataset.bad_rows))
        return len(rows)

    def _write_manifest(self, ledger: Ledger, *, status: str, wall: float, rows_out: int | None = None) -> dict[str, Any]:
        prev = read_manifest(self.run_dir) or {}
        tokens = {"prompt": 0, "completion": 0}
        for _idx, _rid, _st, res in ledger.iter_results():
            tokens["prompt"] += int(res.get("prompt_tokens") or 0)
            tokens["completion"] += int(res.get("completion_tokens") or 0)
        stats = _model_stats(self.models)
        invocation = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command_line(),
            "status": status,
            "wall_time_s": round(wall, 3),
            "oracle_calls": stats["calls"],
            "cache_hits": stats["cache_hits"],
            "tokens_in": sum(getattr(m, "prompt_tokens", 0) for m in self.models.values()),
            "tokens_out": sum(getattr(m, "completion_tokens", 0) for m in self.models.values()),
        }
        invocations = list(prev.get("invocations", []))
        if invocations and invocations[-1].get("status") == "running" and status == "finished":
            invocations[-1] = invocation
        else:
            invocations.append(invocation)
        prompt_set = getattr(self.step, "prompt_set", None)
        manifest: dict[str, Any] = {
            "step": self.step.name,
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
            "models": {role: m.identity for role, m in self.models.items()},
            "prompt_set": (
                {"name": prompt_set.name, "version": prompt_set.version, "sha256": prompt_set.sha256} if prompt_set else None
            ),
            "counts": ledger.counts(),
            "rows_out": rows_out,
            "output": str(self.output) if self.output else None,
            "tokens": tokens,
            "oracle_calls_this_invocation": stats["calls"],
            "cache_hits_this_invocation": stats["cache_hits"],
            "wall_time_s": round(wall, 3),
            "invocations": invocations,
        }
        manifest.update(self.extra_manifest)
        if hasattr(self.step, "manifest_extra"):
            manifest.update(self.step.manifest_extra())
        write_json_atomic(self.run_dir / "manifest.json", manifest)
        return manifest


def run_step(step: Any, dataset: Dataset, **kwargs: Any) -> RunSummary:
    """Synchronous convenience wrapper around :class:`Run`; closes the step's models afterwards."""

    async def _go() -> RunSummary:
        try:
            return await Run(step, dataset, **kwargs).execute()
        finally:
            for m in (step.models() if hasattr(step, "models") else {}).values():
                try:
                    await m.aclose()
                except Exception:
                    pass

    return asyncio.run(_go())
