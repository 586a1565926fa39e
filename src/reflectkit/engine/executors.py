"""Executors: where a step's rows run. The engine (:class:`~reflectkit.engine.run.Run`) keeps everything stateful
(the ledger, resume, progress, the manifest); an executor only decides where ``process``/``process_batch`` run and
hands every result back through the engine's ``commit(record, result)``.

* ``local`` (the default): today's behaviour, rows concurrently on the run's event loop, batches in order;
* ``ray``: :class:`~reflectkit.engine.ray_executor.RayExecutor`, rows and batches on a Ray cluster.

Dataset steps (``plan`` needs every row) and task steps always run on the driver.

Until the engine takes an executor itself (the ``executor=`` keyword of ``Run``), :class:`ExecutorRun` is the glue:
a ``Run`` whose row and batch loops hand over to the executor, and :func:`run_with_executor` is
:func:`reflectkit.engine.api.run` with the executor keywords.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

from reflectkit.data.record import Record
from reflectkit.engine.ledger import Ledger
from reflectkit.engine.progress import Progress
from reflectkit.engine.run import Run, RunSummary
from reflectkit.engine.step import FAILED, RowResult, RunContext, Step
from reflectkit.errors import UserError

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")


class Executor(Protocol):
    name: str

    async def run_rows(self, run: Run, pending: Iterator[Record], ctx: RunContext, commit: Any) -> None: ...

    def run_batches(self, run: Run, pending: Iterator[Record], ctx: RunContext, commit: Any) -> None: ...


class LocalExecutor:
    """Today's behaviour: the engine's own loops (``Run._run_rows`` / ``Run._run_batches``)."""

    name = "local"

    def describe(self) -> dict[str, Any]:
        return {"kind": "local"}


def executor_for(name: Any, *, ray_address: str | None = None, ray_workers: int | None = None) -> Any:
    """The executor called ``name`` (``local`` or ``ray``; an executor object is returned as it is); a wrong name or
    a missing Ray is one UserError."""
    if name is not None and not isinstance(name, str):
        return name
    name = (name or "local").strip().lower()
    if name == "local":
        if ray_address:
            raise UserError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        from reflectkit.engine.ray_executor import RayExecutor, require_ray

        require_ray()
        return RayExecutor(ray_address, workers=ray_workers)
    raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")


class ExecutorRun(Run):
    """A :class:`Run` whose row and batch loops run on ``executor`` (glue until ``Run`` takes it itself)."""

    def __init__(self, *args: Any, executor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor = executor or LocalExecutor()
        if not isinstance(self.executor, LocalExecutor):
            self.extra_manifest = {**self.extra_manifest, "executor": {"kind": self.executor.name}}

    def _distributed(self) -> bool:
        # a cache-only replay calls nothing: it is answered on the driver
        return not isinstance(self.executor, LocalExecutor) and not self.cache_only

    def _commit(self, ledger: Ledger, prog: Progress) -> Any:
        def commit(rec: Record, res: RowResult) -> None:
            if res.status == FAILED:
                self._failed_live += 1
            ledger.add(rec.index, rec.id, res.status, res.to_json())
            prog.advance()

        return commit

    async def _run_rows(self, pending: Iterator[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        if not self._distributed():
            return await super()._run_rows(pending, ledger, prog, ctx)
        try:
            await self.executor.run_rows(self, pending, ctx, self._commit(ledger, prog))
        finally:
            ledger.flush()
            self._record_executor()

    def _run_batches(self, pending: Iterator[Record], ledger: Ledger, prog: Progress, ctx: RunContext) -> None:
        if not self._distributed() or self.step.kind == "dataset":  # plan's decisions live on the driver
            return super()._run_batches(pending, ledger, prog, ctx)
        try:
            self.executor.run_batches(self, pending, ctx, self._commit(ledger, prog))
        finally:
            ledger.flush()
            self._record_executor()

    def _record_executor(self) -> None:
        describe = getattr(self.executor, "describe", None)
        if callable(describe):
            self.extra_manifest = {**self.extra_manifest, "executor": describe()}


def run_with_executor(step: Step[Any] | str | type[Step[Any]], input: Any = None, output: str | Path | None = None, *,
                      executor: str | Any = "local", ray_address: str | None = None, ray_workers: int | None = None,
                      models: Any = None, **kwargs: Any) -> RunSummary:
    """:func:`reflectkit.engine.api.run` with an executor (a name or an executor object). The local executor is
    exactly ``api.run``."""
    from reflectkit.engine import api, registry

    if "executor" in api.PLUMBING:  # the engine takes the executor itself (the patch in the notes is applied)
        return api.run(step, input, output, models=models, executor=executor, ray_address=ray_address,
                       ray_workers=ray_workers, **kwargs)
    ex = executor_for(executor, ray_address=ray_address, ray_workers=ray_workers)
    if isinstance(ex, LocalExecutor):
        return api.run(step, input, output, models=models, **kwargs)
    if isinstance(step, str):
        step = registry.get(step)
    names = api.option_names(step.Options) if isinstance(step, type) else {}
    plumbing = {k: kwargs.pop(k) for k in list(kwargs) if k in api.PLUMBING and k not in names}
    if isinstance(step, type):
        step = api.make_step(step, kwargs, models)
    elif kwargs:
        raise TypeError(f"unexpected keyword arguments for a step instance: {', '.join(kwargs)}")
    p = {**api.PLUMBING, **plumbing}
    api.check_plumbing(p)
    ds = step.read_input(input, format=p["format"], mapping=p["mapping"], skip_bad_rows=p["skip_bad_rows"],
                         limit=p["limit"])
    out = Path(output) if output else None
    if out is not None and ds.path is not None and out.exists() and out.resolve() == Path(ds.path).resolve():
        raise UserError(f"-o {out}: the output would overwrite the input file")
    runner = ExecutorRun(step, ds, output=out, run_dir=Path(p["run_dir"]) if p["run_dir"] else None,
                         concurrency=p["concurrency"], progress=p["progress"], restart=p["restart"],
                         cache_dir=Path(p["cache_dir"]) if p["cache_dir"] else None, use_cache=p["use_cache"],
                         cache_only=p["cache_only"], clients=p["clients"], gate_failed=p["gate_failed"],
                         executor=ex)
    return asyncio.run(runner.execute())


__all__ = ["Executor", "LocalExecutor", "ExecutorRun", "executor_for", "run_with_executor", "EXECUTORS"]
