"""Executors: where a step's rows run. The engine (:class:`~reflectkit.engine.run.Run`) keeps everything stateful
(the ledger, resume, progress, the manifest); an executor only decides where ``process``/``process_batch`` run and
hands every result back through the engine's ``commit(record, result)``.

* ``local`` (the default): today's behaviour, rows concurrently on the run's event loop, batches in order;
* ``ray``: :class:`~reflectkit.engine.ray_executor.RayExecutor`, rows and batches on a Ray cluster.

Dataset steps (``plan`` needs every row) and task steps always run on the driver (a dataset step's embeddings excepted:
``RayExecutor.embed_missing``).

``Run(executor=...)`` hands its row and batch loops to an executor other than the local one;
:func:`run_with_executor` is :func:`reflectkit.engine.api.run` with the executor keywords.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

from reflectkit.data.record import Record
from reflectkit.engine.run import Run, RunSummary
from reflectkit.engine.step import RunContext, Step
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


def run_with_executor(step: Step[Any] | str | type[Step[Any]], input: Any = None, output: str | Path | None = None, *,
                      executor: str | Any = "local", ray_address: str | None = None, ray_workers: int | None = None,
                      models: Any = None, **kwargs: Any) -> RunSummary:
    """:func:`reflectkit.engine.api.run` with an executor (a name or an executor object)."""
    from reflectkit.engine import api

    return api.run(step, input, output, models=models, executor=executor, ray_address=ray_address,
                   ray_workers=ray_workers, **kwargs)


__all__ = ["Executor", "LocalExecutor", "executor_for", "run_with_executor", "EXECUTORS"]
