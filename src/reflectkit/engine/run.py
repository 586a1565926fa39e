"""Drive one Step over a dataset inside a run directory: models, concurrency, ledger (exact resume), progress,
manifest.

Run directory layout::

    <run_dir>/manifest.json   what ran: versions, command/config, input hashes, model ids, prompt hashes, counts
    <run_dir>/ledger.sqlite   per-row status and output (plus keyed tables of steps); this makes resume exact
    <run_dir>/skipped.jsonl   rows that could not be read (with --skip-bad-rows), with file/line and reason
    OUTPUT                    materialised from the ledger in input order (atomically)

Re-running the same command resumes: finished rows are not redone; rows recorded as ``failed`` or ``suspect``
(answered by an endpoint after its last good verification check) are redone.

Row and batch steps stream: rows are pulled from the input (a :class:`~reflectkit.data.io.LazyRecords` for large
files) as workers free up, so only the rows in flight are in memory; finished rows are group-committed to the
ledger (see :mod:`reflectkit.engine.ledger`); the output is written by streaming the ledger in input order, and the
manifest's counts and token sums are SQL aggregates. Dataset steps (``plan`` sees every row) hold their rows.
``--max-cost`` stops the run gracefully (:class:`~reflectkit.llm.pricing.BudgetExhausted`): rows in flight finish,
finished rows are kept, the manifest records the spend, and the run exits 1; re-running with a higher
``--max-cost`` continues (the spend of earlier invocations counts against it).
The engine opens the models a step declares (from its specs), probes endpoints before the first row, and closes
them when the run ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset, dumps_jsonl, write_rows
from reflectkit.data.record import Record
from reflectkit.engine.ledger import Ledger
from reflectkit.engine.manifest import (
    code_info,
    command_line,
    read_manifest,
    write_json_atomic,
)
from reflectkit.engine.progress import Progress
from reflectkit.engine.step import (
    FAILED,
    SUSPECT,
    ResultReader,
    RowResult,
    RunContext,
    Step,
    result_row,
)
from reflectkit.errors import UserError
from reflectkit.llm.base import (
    EndpointDrift,
    FatalModelError,
    RequestFailed,
    current_row,
)
from reflectkit.llm.pricing import BudgetExhausted
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
        if self.counts.get(SUSPECT):  # evidence that an endpoint is not what it was verified as
            return 3
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
    # the same digest as hashing "\n".join(ids) at once (so existing run directories resume), streamed
    ids = dataset.row_ids_sha256() if hasattr(dataset, "row_ids_sha256") else \
        hashlib.sha256("\n".join(r.id for r in dataset.records).encode()).hexdigest()
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


def _chain(m: Any) -> Iterator[Any]:
    """A client and the clients it wraps (cache -> verifying guard -> endpoint client)."""
    seen = 0
    while m is not None and seen < 8:
        yield m
        m, seen = getattr(m, "inner", None), seen + 1


def _find(m: Any, attr: str) -> Any:
    """The first object in ``m``'s wrapper chain that has ``attr`` (None if none)."""
    for x in _chain(m):
        if hasattr(type(x), attr) or attr in getattr(x, "__dict__", {}):
            return getattr(x, attr)
    return None


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
        executor: Any = None,
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
        #: where rows run (engine.executors): None is the local executor, this class's own loops
        self.executor = executor
        self.models: dict[str, Any] = {}
        self._failed_live = 0
        self._started = ""
        self._spend_before = 0.0
        self._row_endpoint_takers: list[Callable[[int], list[str]]] = []

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
        budgets = self._budgets()
        spent = sum(b.spent() for b in budgets.values()) if budgets else None
        return {**s, "completion_tokens": tok, "failed": self._failed_live, "spent": spent}

    async def _process_one(self, rec: Record, ctx: RunContext) -> RowResult:
        token = current_row.set(rec.index)  # lets a verifying client tie its calls to this row
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
        finally:
            current_row.reset(token)

    def _apply_suspects(self, ledger: Ledger) -> int:
        """Record as ``suspect`` the finished rows a verifying client names (answered after its last good check).
        Returns how many rows were marked."""
        named: list[tuple[int, str]] = []
        for m in _clients(self.models):
            suspects = _find(m, "suspects")
            if callable(suspects):
                named.extend(sorted(suspects().items()))
        if not named:
            return 0
        wanted = {idx for idx, _ in named}
        ids = {r.index: r.id for r in self.dataset.records if r.index in wanted}  # one streamed pass, only now
        done = ledger.statuses_of(sorted(wanted))
        items = [(idx, ids[idx], SUSPECT, RowResult(SUSPECT, reason, drop=True).to_json()) for idx, reason in named
                 if idx in ids and done.get(idx) not in (None, SUSPECT, UPSTREAM_FAILED)]
        if items:
            ledger.put_many(items)
        return len(items)

    # ------------------------------------------------------------------ spend (--price-in/--price-out/--max-cost)
    def _budgets(self) -> dict[str, Any]:
        return {role: b for role, m in self.models.items() if not isinstance(m, ModelSpec)
                and (b := _find(m, "budget")) is not None and getattr(b, "prices", None) is not None}

    def _restore_spend(self, ledger: Ledger) -> None:
        """Earlier invocations' spend counts against --max-cost (the budget is the run's, not one invocation's)."""
        before = ledger.get_meta("spend_usd") or {}
        for role, b in self._budgets().items():
            b.spent_before = float(before.get(role, 0.0))
        self._spend_before = sum(float(v) for v in before.values())

    def _save_spend(self, ledger: Ledger, *, with_next_group: bool = False) -> None:
        budgets = self._budgets()
        if budgets:
            value = {role: round(b.spent(), 6) for role, b in budgets.items()}
            if with_next_group:  # in the same transaction as the rows it paid for
                ledger.set_meta_with_next_group("spend_usd", value)
            else:
                ledger.set_meta("spend_usd", value)

    def spend(self) -> dict[str, Any] | None:
        budgets = self._budgets()
        if not budgets:
            return None
        total = sum(b.spent() for b in budgets.values())
        return {"currency": "USD", "estimated_total": round(total, 6),
                "this_invocation": round(total - self._spend_before, 6),
                "max_cost": next((b.max_cost for b in budgets.values() if b.max_cost is not None), None),
                "by_role": {role: {"estimated": round(b.spent(), 6), "prompt_tokens": b.prompt_tokens,
                                   "completion_tokens": b.completion_tokens, **b.prices.describe()}
                            for role, b in budgets.items()}}

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
            raise UserError(redact(str(exc)), exit_code=getattr(exc, "exit_code", 2)) from None

    async def _execute_inner(self, t0: float) -> RunSummary:
        self.config = self.step.config()
        self.fp = fingerprint(self.step.name, self.config, self.dataset, self.models)
        self.run_dir = self.run_dir_arg or default_run_dir(self.step.name, self.dataset, self.fp)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ledger = self._open_ledger()
        ctx = RunContext(run_dir=self.run_dir, output=self.output, dataset=self.dataset, models=self.models,
                         concurrency=self.concurrency, progress=self.progress_enabled, cache_dir=self.cache_dir,
                         restart=self.restart, _ledger=ledger,
                         embedder=self.executor if self._executor_embeds() else None)
        records = self.dataset.records
        self._restore_spend(ledger)
        self._row_endpoint_takers = [f for m in _clients(self.models)
                                     if callable(f := _find(m, "take_row_endpoints"))]
        try:
            self._write_manifest(ledger, ctx, status="running", wall=0.0)
            await self.step.setup(ctx)
            if self.step.kind == "task":
                ctx.counters.update(self.step.run_task(ctx))  # type: ignore[attr-defined]
            else:
                if self.step.kind == "dataset":  # decisions over every row that reaches this stage
                    stopped = self._gate_all(ledger)
                    await self.step.plan([r for r in records if r.index not in stopped], ctx)  # type: ignore[attr-defined]
                    if ctx.embedder is not None:  # the plan ran on the driver, its embeddings on the executor
                        self._executor_done(ledger)
                with Progress(self.step.name, len(records), stats=self._stats, enabled=self.progress_enabled) as prog:
                    prog.resume(ledger.count_where((FAILED, SUSPECT)))
                    if prog.done < prog.total:
                        try:
                            if self.step.kind == "row":
                                await self._run_rows(self._pending(ledger, prog), ledger, prog, ctx)
                            else:
                                self._run_batches(self._pending(ledger, prog), ledger, prog, ctx)
                        except EndpointDrift as exc:
                            # rows answered since the last good check never count as done; the run stops (exit 3)
                            self._apply_suspects(ledger)
                            self._save_spend(ledger)
                            self._write_manifest(ledger, ctx, status="stopped: endpoint drift",
                                                 wall=time.monotonic() - t0)
                            raise UserError(redact(str(exc)), exit_code=exc.exit_code) from None
                        except BudgetExhausted as exc:
                            self._budget_stop(exc, ledger, ctx, t0)
                for m in _clients(self.models):  # one last check covers the rows after the last canary
                    final = getattr(getattr(m, "inner", m), "final_check", None)
                    if callable(final):
                        await final()  # never raises; drift found here marks the rows (exit 3)
                self._apply_suspects(ledger)  # --on-drift mark: the run goes on, the suspect rows are left out
                self.step.finish(ctx, _JoinedResults(records, ledger))
            undeclared = sorted(set(ctx.files) - set(self.step.files))
            if undeclared:  # the contract: a step declares its side files (a bug in the step, not in the data)
                raise AssertionError(f"step {self.step.name!r} wrote side files it does not declare in `files`: "
                                     f"{', '.join(undeclared)}")
            rows_out = self._materialise(ledger) if self.step.kind != "task" else 0
            wall = time.monotonic() - t0
            self._save_spend(ledger)
            manifest = self._write_manifest(ledger, ctx, status="finished", wall=wall, rows_out=rows_out)
        except BudgetExhausted as exc:  # in setup, plan or finish
            self._budget_stop(exc, ledger, ctx, t0)
            raise AssertionError("unreachable")  # pragma: no cover
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

    def _budget_stop(self, exc: BudgetExhausted, ledger: Ledger, ctx: RunContext, t0: float) -> None:
        """--max-cost reached: keep every finished row, record the spend, exit 1 with how to continue."""
        self._apply_suspects(ledger)
        self._save_spend(ledger)
        m = self._write_manifest(ledger, ctx, status="stopped: --max-cost reached", wall=time.monotonic() - t0)
        done = sum(n for st, n in m["counts"].items() if st not in (FAILED, SUSPECT))
        raise UserError(f"{redact(str(exc))}: stopped with {done} of {len(self.dataset.records)} rows finished "
                        f"(kept in {self.run_dir}); re-run the same command with a higher --max-cost to continue",
                        exit_code=exc.exit_code) from None

    def _gate_all(self, ledger: Ledger) -> set[int]:
        """Gate every pending row up front (dataset steps: ``plan`` must not see rows failed upstream)."""
        if not self.gate_failed:
            return {i for i, st in ledger.iter_statuses() if st == UPSTREAM_FAILED}
        done = ledger.statuses()
        gated = [(r, g) for r in self.dataset.records if done.get(r.index) in (None, FAILED, SUSPECT)
                 and (g := self._upstream_failure(r)) is not None]
        if gated:
            ledger.put_many([(r.index, r.id, g.status, g.to_json()) for r, g in gated])
        return {r.index for r, _ in gated} | {i for i, st in done.items() if st == UPSTREAM_FAILED}

    def _pending(self, ledger: Ledger, prog: Progress, window: int = 4096) -> Iterator[Record]:
        """The rows still to do, in input order, streamed: the input is merged with the ledger's statuses one
        window of row positions at a time (never all statuses at once). Rows failed upstream are gated here."""
        records = self.dataset.records
        ordered = _in_order(records)
        win_end = -1
        statuses: dict[int, str] = {} if ordered else ledger.statuses()
        for rec in records:
            if ordered and rec.index > win_end:
                win_end = rec.index + window - 1
                statuses = ledger.statuses_between(rec.index, win_end)
            if statuses.get(rec.index) not in (None, FAILED, SUSPECT):
                continue
            gate = self._upstream_failure(rec)
            if gate is not None:
                ledger.add(rec.index, rec.id, gate.status, gate.to_json())
                prog.advance()
                continue
            yield rec

    def _take_endpoints(self, idx: int) -> list[str] | None:
        eps: list[str] = []
        for take in self._row_endpoint_takers:
            eps.extend(take(idx))
        return eps or None

    # ------------------------------------------------------------------ executors (engine.executors)
    def _remote_executor(self) -> bool:
        """Is there an executor other than the local one, with work for it? Not for a cache-only replay (it calls
        nothing)."""
        return (self.executor is not None and getattr(self.executor, "name", "local") != "local"
                and not self.cache_only)

    def _on_executor(self) -> bool:
        """Do rows run on another executor? Not on the local one, in a cache-only replay or for a dataset step
        (``plan``'s decisions live on the driver)."""
        return self._remote_executor() and self.step.kind != "dataset"

    def _executor_embeds(self) -> bool:
        """Can the executor compute a dataset step's embeddings (Ray), while its plan stays on the driver?"""
        return (self._remote_executor() and self.step.kind == "dataset"
                and callable(getattr(self.executor, "embed_missing", None)))

    def _commit(self, ledger: Ledger, prog: Progress) -> Callable[..., None]:
        """The engine's commit of one finished row, for executors: the ledger (group commit), progress, failures;
        ``endpoints``: the fleet endpoints that answered the row, as a worker recorded them."""
        budgets = bool(self._budgets())

        def commit(rec: Record, res: RowResult, endpoints: list[str] | None = None) -> None:
            if res.status == FAILED:
                self._failed_live += 1
            if budgets:  # the spend so far, in the same transaction as the rows it paid for (as locally)
                self._save_spend(ledger, with_next_group=True)
            ledger.add(rec.index, rec.id, res.status, res.to_json(), endpoints or None)
            prog.advance()

        return commit

    def _executor_done(self, ledger: Ledger) -> None:
        ledger.flush()
        describe = getattr(self.executor, "describe", None)
        if callable(describe):
            self.extra_manifest = {**self.extra_manifest, "executor": describe()}

    async def _run_rows(self, pending: Iterator[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        if self._on_executor():
            try:
                return await self.executor.run_rows(self, pending, ctx, self._commit(ledger, prog))
            finally:
                self._executor_done(ledger)
        fatal: list[BaseException] = []
        takers = bool(self._row_endpoint_takers)

        async def worker() -> None:
            while not fatal:
                rec = next(pending, None)  # one event loop thread: the shared iterator needs no lock
                if rec is None:
                    return
                try:
                    res = await self._process_one(rec, ctx)
                except (FatalModelError, UserError) as exc:
                    fatal.append(exc)
                    if takers:
                        self._take_endpoints(rec.index)
                    return
                if res.status == FAILED:
                    self._failed_live += 1
                if ledger.add(rec.index, rec.id, res.status, res.to_json(),
                              self._take_endpoints(rec.index) if takers else None):
                    wake.set()
                prog.advance()

        wake = asyncio.Event()
        stopping = False

        async def flusher() -> None:  # group commit off the event loop: every group_rows rows or group_ms
            while not stopping:
                try:
                    await asyncio.wait_for(wake.wait(), timeout=ledger.group_s or 0.05)
                except TimeoutError:
                    pass
                wake.clear()
                if ledger.due():
                    self._save_spend(ledger, with_next_group=True)
                    await ledger.aflush()

        ledger.deferred = True
        timer = asyncio.create_task(flusher())
        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            stopping = True
            wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(timer), timeout=60)
            except BaseException:  # cancelled or failed: the commit it started is still awaited by flush()
                timer.cancel()
            ledger.deferred = False
            self._save_spend(ledger, with_next_group=True)
            ledger.flush()
        if fatal:
            exc = fatal[0]
            if isinstance(exc, (EndpointDrift, BudgetExhausted)):
                raise exc
            raise UserError(redact(str(exc))) if isinstance(exc, FatalModelError) else exc

    def _run_batches(self, pending: Iterator[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        if self._on_executor():
            try:
                return self.executor.run_batches(self, pending, ctx, self._commit(ledger, prog))
            finally:
                self._executor_done(ledger)
        size = max(1, int(self.step.rows_per_batch()))  # type: ignore[attr-defined]
        while True:
            chunk = [r for _, r in zip(range(size), pending)]
            if not chunk:
                return
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

    def _joined(self, ledger: Ledger) -> Iterator[tuple[Record, RowResult | None]]:
        """Each record with its ledger result (None if it has none), both streamed in input order."""
        return _join(self.dataset.records, ledger)

    def iter_output_rows(self, ledger: Ledger) -> Iterable[dict[str, Any]]:
        for rec, rr in self._joined(ledger):
            if rr is None:  # cannot happen after a complete run; guard against silent loss
                raise AssertionError(f"row {rec.id} missing from ledger")
            if not rr.drop:
                yield result_row(self.step, rec, rr, self.dataset.mapping)

    def _materialise(self, ledger: Ledger) -> int:
        if self.output is not None:
            n = write_rows(self.iter_output_rows(ledger), self.output)
        else:
            n = sum(1 for _ in self.iter_output_rows(ledger))
        if self.dataset.bad_rows:
            (self.run_dir / "skipped.jsonl").write_bytes(dumps_jsonl(b.to_dict() for b in self.dataset.bad_rows))
        return n

    def _write_manifest(self, ledger: Ledger, ctx: RunContext, *, status: str, wall: float,
                        rows_out: int | None = None) -> dict[str, Any]:
        prev = read_manifest(self.run_dir) or {}
        tokens = ledger.token_sums()
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
            "retries": sum(int(_find(m, "retries") or 0) for m in clients),
        }
        spend = self.spend()
        if spend is not None:
            invocation["spend_usd"] = spend["this_invocation"]
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
        if spend is not None:
            manifest["spend"] = spend
        endpoints = ledger.endpoint_counts()
        if endpoints:  # a fleet: rows answered per endpoint (each row's endpoints are in the ledger)
            manifest["endpoints"] = {"rows_answered": endpoints,
                                     "stats": [s for m in clients if callable(f := _find(m, "endpoint_stats"))
                                               for s in f()]}
        manifest.update(self.extra_manifest)
        extra = self.step.manifest_extra(ctx)
        undeclared = sorted(set(extra) - set(self.step.manifest_sections))
        if undeclared:  # the contract: a step declares its manifest sections
            raise AssertionError(f"step {self.step.name!r} adds manifest sections it does not declare in "
                                 f"`manifest_sections`: {', '.join(undeclared)}")
        manifest.update(extra)
        write_json_atomic(self.run_dir / "manifest.json", manifest)
        return manifest


def _in_order(records: Iterable[Record]) -> bool:
    """Records read from a file come in position order; a hand-built list is checked (cheap next to a run)."""
    if not isinstance(records, list):
        return True
    return all(a.index < b.index for a, b in zip(records, records[1:]))


def _join(records: Iterable[Record], ledger: Ledger) -> Iterator[tuple[Record, RowResult | None]]:
    if not _in_order(records):
        by_idx = {idx: res for idx, _rid, _st, res in ledger.iter_results()}
        for rec in records:
            res = by_idx.get(rec.index)
            yield rec, (RowResult.from_json(res) if res is not None else None)
        return
    results = ledger.iter_results()
    cur = next(results, None)
    for rec in records:
        while cur is not None and cur[0] < rec.index:
            cur = next(results, None)
        if cur is not None and cur[0] == rec.index:
            yield rec, RowResult.from_json(cur[3])
        else:
            yield rec, None


class _JoinedResults(ResultReader):
    """``finish``'s view of the results, streamed: the input merged with the ledger in row order (flat memory)."""

    def __iter__(self) -> Any:
        for rec, rr in _join(self._records, self._ledger):
            if rr is not None:
                yield rec, rr


def run_step(step: Step[Any], dataset: Dataset, **kwargs: Any) -> RunSummary:
    """Synchronous wrapper around :class:`Run` (see its keyword arguments)."""
    return asyncio.run(Run(step, dataset, **kwargs).execute())
