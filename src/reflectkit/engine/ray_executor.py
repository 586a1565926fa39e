"""The Ray executor: a step's rows run on a Ray cluster; the ledger, the response cache and the output stay exact.

What runs where:

* **The driver owns the truth.** It reads the input, skips the rows the ledger holds (the engine's ``_pending``),
  and *resolves cache hits before dispatch*: each pending row of a row step is first run on the driver with the
  clients in a probe mode that answers from the response cache and raises :class:`CacheMiss` (a BaseException, so
  no step's ``except Exception`` can swallow it) on the first request that is not there. A row the cache answers
  completely is committed on the driver and never travels; only the others go to the workers, together with the
  cache entries their probe found. The driver is the only writer of the ledger (every result comes back to it and
  goes through the engine's own commit).
* **Responses are made durable before a row finishes.** A worker that obtains a response hands it at once to the
  run's :class:`_CacheWriter`, an actor pinned to the driver's node and the one writer of the response cache for
  the run, and looks a request up there before calling out. So a row re-dispatched after its worker was killed,
  or re-run after the driver was killed with SIGKILL, finds the responses its first attempt paid for: the
  idempotency key of a call is the cache key (model identity, messages, sampling, prompt version) inside the row's
  key (step fingerprint + row id), and a paid response is never paid again.
* **Per step kind.** Row steps (endpoint calls, or a local chat model) run in an actor pool (Ray Data
  ``map_batches`` with a callable class, ``concurrency=(1, n)``); each actor opens the step's models from their
  specs once (one local model per actor), and runs a batch's rows concurrently on its own event loop with the
  run's concurrency split between the actors (and ``rpm``/``tpm`` split the same way). Batch steps (scoring with
  a student) run one engine batch per call in an actor pool with one student per actor (GPUs requested when the
  cluster has them), so batch boundaries, and therefore the floating-point results, are those of a local run.
  Dataset steps (``plan`` needs every row) and task steps run on the driver; a dataset step's sentence embeddings
  (``RunContext.prepare_embeddings``) are computed by an actor pool and stored by the driver (engine/ray_embed.py).
* **Verification during the run.** The driver verifies each endpoint at start; every worker wraps its client in
  a guard built from the driver's (:meth:`VerifiedEndpoint.from_state`) that sends the periodic canaries of its own
  calls. A batch returns with its worker's report (checks, rows not vouched for yet, suspects, a new drift), which
  the driver merges into its guard; the cache writer keeps what each worker stored since its last good canary
  pending and drops it on drift. Rows still unverified at the end get one final canary from the driver.
* **Budgets.** With ``--max-cost`` every actor of a dispatch gets an equal share of what is left of the budget
  (together they cannot cross it) and reports the tokens it paid for; an actor out of its share fails its next
  rows with :class:`BudgetExhausted`, the driver drains the others and stops the run as locally (exit 1).
* **Failures.** Ray restarts a killed actor and retries its batch (``max_task_retries``); the retry finds the
  responses already paid for in the cache. A batch that still fails (the actor keeps crashing, out of memory) is
  recorded row by row as ``failed`` with Ray's reason, never lost; re-running retries it.

Ray is an optional extra (``pip install reflectkit[ray]``); without it ``--executor ray`` is one UserError.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult, RunContext, Step
from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, FatalModelError, Message, RequestFailed, SamplingParams, current_row, stable_identity
from reflectkit.llm.pricing import BudgetExhausted
from reflectkit.llm.secrets import redact

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.engine.run import Run

Commit = Callable[..., None]  # commit(record, result, endpoints=None): the engine's, see Run._commit

#: Ray's object store when this process starts a local cluster (MiB): small, results are small
DEFAULT_OBJECT_STORE_MB = 256
#: retries of a batch whose actor died (killed, crashed, out of memory) before its rows are recorded as failed
MAX_TASK_RETRIES = 3
#: rows dispatched per Ray Data dataset (bounds the driver's memory; each window starts its actor pool)
WINDOW_ROWS = 4096


def require_ray() -> Any:
    """The ``ray`` module, or one clear UserError when the optional extra is not installed."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'reflectkit[ray]'") from None
    return ray


def ensure_ray(address: str | None, *, num_cpus: int | None = None) -> Any:
    """Connect to the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start a local one
    when None. An already-initialised Ray (a test fixture, a notebook) is used as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                mb = int(os.environ.get("REFLECTKIT_RAY_OBJECT_STORE_MB", DEFAULT_OBJECT_STORE_MB))
                ray.init(num_cpus=num_cpus, object_store_memory=mb * 1024 * 1024, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address}" if address else "locally"
            raise UserError(f"--ray-address: could not start or join a Ray cluster {where}: {exc}") from None
    import logging

    for name in ("ray.data", "ray.data._internal"):  # the run has its own progress line
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_progress = False
    return ray


class CacheMiss(BaseException):
    """Raised by a driver-side probe on the first request the response cache cannot answer: the row is dispatched."""


# --------------------------------------------------------------------------------------------- driver side


class _ProbeModel:
    """A driver client in cache-only probe mode: answers from the response cache, raises CacheMiss otherwise, and
    remembers the entries it used (they travel with the row when it is dispatched)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.found: dict[str, dict[str, Any]] = {}
        self.producers: list[Any] = []

    def __getattr__(self, name: str) -> Any:  # cache_identity, identity, spec ...
        return getattr(self._client, name)

    async def chat(self, messages: list[Message], params: SamplingParams, *, prompt_version: str = "") -> ChatResult:
        from reflectkit.llm.cache import cache_key

        cache = getattr(self._client, "cache", None)
        key = cache_key(self._client.cache_identity, messages, params, prompt_version)
        if cache is None:
            raise CacheMiss(key)
        entry = cache.get_entry(key) if hasattr(cache, "get_entry") else ((r, None) if (r := cache.get(key)) else None)
        if entry is None:
            raise CacheMiss(key)
        self.found[key] = entry[0]
        self.producers.append(entry[1])
        return ChatResult.from_dict(entry[0], cached=True)


def _chat_clients(models: dict[str, Any]) -> dict[str, Any]:
    from reflectkit.llm.spec import ModelSpec

    return {r: m for r, m in models.items() if not isinstance(m, ModelSpec)}


def _credit_hits(client: Any, probe: _ProbeModel) -> None:
    """Count a row answered on the driver from the cache as the local executor would (hits, replayed producers)."""
    client.hits = getattr(client, "hits", 0) + len(probe.producers)
    replayed = getattr(client, "replayed", None)
    if isinstance(replayed, dict):
        for p in probe.producers:
            p = p or {}
            who = (p.get("identity"), p.get("host"), p.get("date"))
            replayed[who] = replayed.get(who, 0) + 1


def _credit_worker_stats(client: Any, stats: dict[str, int]) -> None:
    """Fold a worker's calls, hits and tokens into the driver's client, so the summary and manifest count them."""
    inner = getattr(client, "inner", client)
    while hasattr(inner, "inner") and isinstance(getattr(type(inner), "calls", None), property):
        inner = inner.inner  # a verifying guard derives its count from the client it wraps
    canary_calls = int(((stats.get("guard") or {}).get("counters") or {}).get("canary_calls", 0))
    if hasattr(inner, "calls"):
        try:
            inner.calls += stats.get("calls", 0) + canary_calls  # the guard subtracts its canary calls
        except AttributeError:  # a read-only proxy attribute: counted on the cache layer only
            pass
    budget = getattr(_unwrap_endpoint(client), "budget", None)
    if budget is not None and stats.get("paid_tokens"):
        budget.prompt_tokens += int(stats["paid_tokens"][0])
        budget.completion_tokens += int(stats["paid_tokens"][1])
    client.misses = getattr(client, "misses", 0) + stats.get("calls", 0)
    client.hits = getattr(client, "hits", 0) + stats.get("hits", 0)
    client.prompt_tokens = getattr(client, "prompt_tokens", 0) + stats.get("prompt_tokens", 0)
    client.completion_tokens = getattr(client, "completion_tokens", 0) + stats.get("completion_tokens", 0)


# --------------------------------------------------------------------------------------------- worker side


class _WorkerModel:
    """A worker's chat client: the step sees the driver's identity (so cache keys and ``rk`` are the driver's),
    requests are answered from the entries shipped with the row, then from the run's cache writer, then by the
    model itself; every response obtained goes to the cache writer before the call returns."""

    def __init__(self, inner: Any, identity: str, ident: dict[str, Any], producer: dict[str, Any],
                 writer: Any, worker_id: str = "") -> None:
        self.inner = inner
        self._identity = identity
        self._ident = ident
        self._producer = producer
        self._writer = writer
        self._worker_id = worker_id
        self.shipped: dict[str, dict[str, Any]] = {}
        self.calls = self.hits = self.prompt_tokens = self.completion_tokens = 0
        self._paid = (0, 0)  # the client's budget tokens already reported
        #: the worker's own verifying guard (periodic canaries on this worker's calls), if the driver verified
        self.guard = inner if _is_guard(inner) else None
        if self.guard is not None:
            self.guard.listeners.append(self)

    @property
    def cache_identity(self) -> str:
        return self._identity

    @property
    def identity(self) -> dict[str, Any]:
        return self._ident

    async def chat(self, messages: list[Message], params: SamplingParams, *, prompt_version: str = "") -> ChatResult:
        from reflectkit.llm.cache import cache_key

        key = cache_key(self._identity, messages, params, prompt_version)
        hit = self.shipped.get(key)
        if hit is None and self._writer is not None:
            hit = await self._writer.get.remote(key)
        if hit is not None:
            self.hits += 1
            return ChatResult.from_dict(hit, cached=True)
        self.calls += 1
        res = await self.inner.chat(messages, params)
        seq = getattr(self.guard, "completed_calls", None)  # read before any await: this call's number
        self.prompt_tokens += res.prompt_tokens
        self.completion_tokens += res.completion_tokens
        if self._writer is not None and not getattr(self.guard, "in_drift", False):
            # durable before the row can finish (a killed worker loses nothing paid for); with periodic canaries
            # the writer keeps it pending until this worker's next good canary, and drops it on drift
            tag = (self._worker_id, seq) if seq is not None and self.guard.canary_every else None
            request = {"messages": messages, "params": params.to_dict(), "prompt_version": prompt_version}
            await self._writer.put.remote(key, self._identity, request, res.to_dict(), self._producer, tag)
        return res

    # listeners of the guard (as the response cache is locally): a good canary vouches for the calls before it
    def verified(self, seq: int) -> None:
        if self._writer is not None:
            self._writer.verified.remote(self._worker_id, seq)

    def drifted(self) -> None:
        if self._writer is not None:
            self._writer.drop_pending.remote(self._worker_id)

    def take_stats(self) -> dict[str, Any]:
        s: dict[str, Any] = {"calls": self.calls, "hits": self.hits, "prompt_tokens": self.prompt_tokens,
                             "completion_tokens": self.completion_tokens}
        self.calls = self.hits = self.prompt_tokens = self.completion_tokens = 0
        ep_stats = getattr(self.inner, "endpoint_stats", None)  # a fleet: this actor's view of its endpoints
        if callable(ep_stats):
            s["endpoints"] = {"worker": self._worker_id, "stats": ep_stats()}
        budget = getattr(self.inner, "budget", None)  # the tokens paid for, canaries included (for --max-cost)
        if budget is not None:
            paid = (budget.prompt_tokens, budget.completion_tokens)
            s["paid_tokens"] = (paid[0] - self._paid[0], paid[1] - self._paid[1])
            self._paid = paid
        return s

    async def aclose(self) -> None:
        await self.inner.aclose()


def _unwrap_endpoint(m: Any) -> Any:
    """The client under the cache layer and the verifying guard. The driver verified the endpoint once at start
    (its verified identity is the cache identity the workers use); a worker wraps the plain client in a guard of
    its own built from the driver's (:meth:`VerifiedEndpoint.from_state`) for the periodic canaries."""
    guard = _guard_of(m)
    return guard.inner if guard is not None else getattr(m, "inner", m)


def _is_guard(x: Any) -> bool:
    """Is ``x`` a verifying guard (by name: importing verify.guard here would load it for every Ray run)?"""
    return type(x).__name__ == "VerifiedEndpoint"


def _guard_of(m: Any) -> Any:
    """The verifying guard of a client (under the cache layer), or None."""
    inner = getattr(m, "inner", m)
    return inner if _is_guard(inner) else None


@dataclass
class _Shipment:
    """What every worker of a run needs, sent once per actor."""

    step: Step[Any]
    kind: str
    roles: dict[str, dict[str, Any]]  # role -> {identity, ident, producer}
    state: dict[str, Any]
    run_dir: Path
    cache_dir: Path | None
    concurrency: int
    threads: int | None
    env: dict[str, str] = field(default_factory=dict)


class _Worker:
    """The callable class Ray Data runs in each actor: opens the step's models once, then processes batches."""

    def __init__(self, shipment: _Shipment, writer: Any) -> None:
        os.environ.update(shipment.env)
        self.s = shipment
        self.writer = writer
        if shipment.threads:
            try:
                import torch

                torch.set_num_threads(shipment.threads)
            except ImportError:  # pragma: no cover - torch is a dependency of scoring only
                pass
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.models = self._run(self._open())
        self.ctx = RunContext(run_dir=shipment.run_dir, output=None, dataset=None,  # type: ignore[arg-type]
                              models=self.models, concurrency=shipment.concurrency, progress=False,
                              cache_dir=shipment.cache_dir, state=dict(shipment.state))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __del__(self) -> None:  # the actor is going away: close the clients it opened
        try:
            from reflectkit.engine.run import close_models

            asyncio.run_coroutine_threadsafe(close_models(self.models), self.loop).result(timeout=10)
        except Exception:
            pass

    async def _open(self) -> dict[str, Any]:
        from reflectkit.engine.run import open_models

        opened = open_models(self.s.step, cache=None, concurrency=self.s.concurrency, cache_only=False)
        models: dict[str, Any] = {}
        worker_id = uuid.uuid4().hex[:12]
        for role, m in opened.items():
            info = self.s.roles.get(role)
            if info is None:
                models[role] = m
                continue
            client = _unwrap_endpoint(m)
            if info.get("guard"):
                from reflectkit.verify.guard import VerifiedEndpoint

                client = VerifiedEndpoint.from_state(client, self.s.step.spec(role), info["guard"],
                                                     setting_name=self.s.step.model_roles[role].flag_prefix(role))
            models[role] = _WorkerModel(client, info["identity"], info["ident"], info["producer"], self.writer,
                                        worker_id)
        return models

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        items = [pickle.loads(b) for b in batch["payload"]]
        if self.s.kind == "row":
            out = self._run(self._rows(items))
        else:
            out = [r for chunk in items for r in self._batch(chunk)]
        stats = {role: m.take_stats() for role, m in self.models.items() if isinstance(m, _WorkerModel)}
        rows = [o["index"] for o in out if "result" in o]
        for role, m in self.models.items():
            if isinstance(m, _WorkerModel) and m.guard is not None:
                self._run(m.guard.settle())  # a canary in flight decides about this batch's rows
                stats[role]["guard"] = m.guard.take_report(rows)
        counters = dict(self.ctx.counters)
        self.ctx.counters.clear()
        if out:
            out[0]["stats"], out[0]["counters"] = stats, counters
        return {"result": np.array([pickle.dumps(o) for o in out], dtype=object)}

    async def _rows(self, items: list[tuple[Record, dict[str, dict[str, Any]]]]) -> list[dict[str, Any]]:
        sem = asyncio.Semaphore(max(1, self.s.concurrency))
        for _, shipped in items:  # keys are content hashes: one dict for the batch is safe
            for m in self.models.values():
                if isinstance(m, _WorkerModel):
                    m.shipped.update(shipped)

        async def one(rec: Record) -> dict[str, Any]:
            async with sem:
                token = current_row.set(rec.index)
                try:
                    res = await self.s.step.process(rec, self.ctx)  # type: ignore[attr-defined]
                except (FatalModelError, UserError) as exc:  # the run stops, as locally
                    return {"index": rec.index, "fatal": redact(str(exc)),
                            "exit_code": getattr(exc, "exit_code", 2), "budget": isinstance(exc, BudgetExhausted)}
                except RequestFailed as exc:
                    res = RowResult.failure(redact(str(exc)))
                except Exception as exc:  # a bad row must not kill the run; it is recorded with its reason
                    res = RowResult.failure(redact(f"{type(exc).__name__}: {exc}"))
                finally:
                    current_row.reset(token)
                out: dict[str, Any] = {"index": rec.index, "result": res.to_json()}
                eps = [e for m in self.models.values() if isinstance(m, _WorkerModel)
                       and callable(take := getattr(m.inner, "take_row_endpoints", None)) for e in take(rec.index)]
                if eps:  # a fleet: who answered this row (the driver stores it with the row)
                    out["endpoints"] = eps
                return out

        out = await asyncio.gather(*(one(rec) for rec, _ in items))
        for m in self.models.values():
            if isinstance(m, _WorkerModel):
                m.shipped.clear()
        return list(out)

    def _batch(self, chunk: list[Record]) -> list[dict[str, Any]]:
        try:
            results = self.s.step.process_batch(chunk, self.ctx)  # type: ignore[attr-defined]
        except UserError as exc:
            return [{"index": chunk[0].index, "fatal": str(exc), "exit_code": exc.exit_code}]
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # the batch's rows are failed with the reason; re-running retries them
            reason = redact(f"{type(exc).__name__}: {exc}")
            return [{"index": r.index, "result": RowResult.failure(reason).to_json()} for r in chunk]
        if len(results) != len(chunk):
            raise AssertionError(f"{self.s.step.name}: process_batch returned {len(results)} results for "
                                 f"{len(chunk)} rows")
        return [{"index": r.index, "result": res.to_json()} for r, res in zip(chunk, results)]


def _cache_writer_class(ray: Any) -> Any:
    @ray.remote(num_cpus=0, max_concurrency=64)
    class _CacheWriter:
        """The run's one writer of the response cache, on the driver's node. Counts puts of a key it already had:
        a response paid for twice (the benchmark and the tests assert 0)."""

        def __init__(self, cache_dir: str) -> None:
            from reflectkit.llm.cache import ResponseCache

            self.cache = ResponseCache(cache_dir)
            self.lock = threading.Lock()
            self.puts = 0
            self.duplicates = 0
            self.dropped = 0
            #: worker -> [(its call number, key)] stored since that worker's last good canary
            self.pending: dict[str, list[tuple[int, str]]] = {}

        def get(self, key: str) -> dict[str, Any] | None:
            return self.cache.get(key)

        def put(self, key: str, model: str, request: dict[str, Any], response: dict[str, Any],
                producer: dict[str, Any] | None, tag: tuple[str, int] | None = None) -> None:
            with self.lock:
                if self.cache.get(key) is not None:
                    self.duplicates += 1
                self.puts += 1
                self.cache.put(key, model, request, response, producer)
                if tag is not None:
                    self.pending.setdefault(tag[0], []).append((tag[1], key))

        def verified(self, worker: str, seq: int) -> None:
            """A good canary of ``worker`` vouches for its calls up to number ``seq``."""
            with self.lock:
                self.pending[worker] = [(s, k) for s, k in self.pending.get(worker, []) if s > seq]

        def drop_pending(self, worker: str | None = None) -> int:
            """Drift: delete what ``worker`` (None: every worker) stored since its last good canary, so that no
            answer of the model that replaced the verified one is ever replayed from the cache."""
            with self.lock:
                workers = [worker] if worker is not None else list(self.pending)
                keys = [k for w in workers for _s, k in self.pending.pop(w, [])]
                n = self.cache.delete(keys) if keys else 0
                self.dropped += n
                return n

        def stats(self) -> dict[str, int]:
            return {"puts": self.puts, "duplicate_calls": self.duplicates, "dropped_after_drift": self.dropped}

    return _CacheWriter


# --------------------------------------------------------------------------------------------- the executor


def _picklable_state(state: dict[str, Any]) -> dict[str, Any]:
    """What of ``ctx.state`` can travel (decided modes, a resolved student); open handles stay on the driver."""
    import cloudpickle

    out = {}
    for k, v in state.items():
        try:
            cloudpickle.dumps(v)
        except Exception:
            continue
        out[k] = v
    return out


class RayExecutor:
    """Run row and batch steps on a Ray cluster (see the module docstring). ``workers``: the most actors (default:
    the cluster's CPUs, or its GPUs for a batch step when it has any); ``address``: a running cluster (None: start a
    local one)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, window: int = WINDOW_ROWS,
                 max_task_retries: int = MAX_TASK_RETRIES) -> None:
        if workers is not None and workers < 1:
            raise UserError(f"--ray-workers must be at least 1, got {workers}")
        self.address = address
        self.workers = workers
        self.window = max(1, window)
        self.max_task_retries = max_task_retries
        self.writer: Any = None
        self._writer_stats: dict[str, int] = {"puts": 0, "duplicate_calls": 0, "dropped_after_drift": 0}
        self.dispatched = 0
        self.resolved_on_driver = 0
        self.ray_start_s = 0.0
        #: per dataset dispatched: seconds from dispatch to the first result (actor pool start + one batch)
        self.first_result_s: list[float] = []
        #: what :meth:`embed_missing` did (a dataset step's embeddings), for the manifest
        self.embedding: dict[str, Any] = {}
        #: (actor, endpoint url) -> the actor's last reported stats of a fleet's endpoint
        self._endpoint_seen: dict[tuple[str, str], dict[str, Any]] = {}

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.address or "local", "workers": self.workers,
                "rows_dispatched": self.dispatched, "rows_resolved_on_driver": self.resolved_on_driver,
                "first_result_s": [round(x, 3) for x in self.first_result_s], "cache_writer": self.writer_stats(),
                **({"embedding": dict(self.embedding)} if self.embedding else {})}

    def writer_stats(self) -> dict[str, int]:
        """Responses stored by the run's cache writer, and how many of them were paid for twice (must be 0)."""
        if self.writer is None:
            return dict(self._writer_stats)
        import ray

        return dict(ray.get(self.writer.stats.remote()))

    # ---------------------------------------------------------------- set-up
    def _start(self) -> Any:
        t0 = time.monotonic()
        ray = ensure_ray(self.address)
        self.ray_start_s = time.monotonic() - t0
        return ray

    def _resources(self, ray: Any, kind: str, local_model: bool) -> tuple[int, float, float]:
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
        if kind == "batch" and gpus:
            return (self.workers or gpus), 1.0, 1.0
        n = self.workers or max(1, cpus)
        # an endpoint-bound actor mostly waits on the network; one holding a model needs its CPU share
        per = max(0.1, min(1.0, cpus / n)) if (kind == "batch" or local_model) else max(0.1, min(0.5, cpus / n))
        return n, per, 0.0

    def _shipment(self, run: "Run", ctx: RunContext, n: int) -> _Shipment:
        from reflectkit.llm.cache import default_cache_dir, producer_of

        roles: dict[str, dict[str, Any]] = {}
        step = run.step
        shares = {}
        for role, m in _chat_clients(run.models).items():
            ident = stable_identity(dict(m.identity))
            guard = _guard_of(m)
            roles[role] = {"identity": m.cache_identity, "ident": ident,
                           "producer": producer_of(getattr(m, "inner", m)),
                           "guard": guard.worker_state() if guard is not None else None}
            # the run's rate limits and budget are the cluster's: each actor gets its share. The budget's share
            # is of what is left now (this dispatch's actors start from it), so the actors together never spend
            # more than --max-cost; the spend they report comes back to the driver's budget with their results.
            spec = step.spec(role)
            upd: dict[str, Any] = {k: getattr(spec, k) / n for k in ("rpm", "tpm") if n > 1 and getattr(spec, k, None)}
            budget = getattr(_unwrap_endpoint(m), "budget", None)
            if getattr(spec, "max_cost", None) is not None and budget is not None:
                left = spec.max_cost - budget.spent()
                if left <= 0:
                    raise BudgetExhausted(f"the estimated spend ${budget.spent():.4f} has reached --max-cost "
                                          f"${spec.max_cost:g}")
                upd["max_cost"] = left / n
            if upd:
                shares[role] = spec.model_copy(update=upd)
        if shares:
            step = type(step)(step.options, models={**step.models, **shares})
        threads = getattr(step.options, "threads", None) if step.kind != "row" else None
        env = {k: v for k, v in os.environ.items()
               if k.startswith(("REFLECTKIT_", "HF_", "TRANSFORMERS_")) and "KEY" not in k and "TOKEN" not in k}
        for role in roles:  # the endpoint's key by the name the spec gives (never written anywhere)
            key_env = getattr(step.spec(role), "api_key_env", None) or "OPENAI_API_KEY"
            if key_env in os.environ:
                env[key_env] = os.environ[key_env]
        return _Shipment(step=step, kind="row" if step.kind == "row" else "batch", roles=roles,
                         state=_picklable_state(ctx.state), run_dir=run.run_dir,
                         cache_dir=Path(run.cache_dir) if run.cache_dir else default_cache_dir(),
                         concurrency=max(1, -(-run.concurrency // n)), threads=threads or 1, env=env)

    def _writer(self, ray: Any, cache_dir: Path) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = ray.get_runtime_context().get_node_id()
        return _cache_writer_class(ray).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(str(cache_dir))

    # ---------------------------------------------------------------- row steps
    async def run_rows(self, run: "Run", pending: Iterator[Record], ctx: RunContext, commit: Commit) -> None:
        ray = self._start()
        clients = _chat_clients(run.models)
        local_model = any(getattr(run.step.spec(r), "kind", "") in ("embedded", "gguf", "hf")
                          for r in run.step.active_roles())
        n, cpus, gpus = self._resources(ray, "row", local_model)
        window: list[tuple[Record, dict[str, dict[str, Any]]]] = []

        def dispatch() -> None:
            ship = self._shipment(run, ctx, n)  # per window: the budget's shares are of what is left
            if self.writer is None and clients and run.use_cache:  # only once a row has to travel
                self.writer = self._writer(ray, ship.cache_dir or Path("."))
            self._dispatch(ray, run, ctx, window, ship, n, cpus, gpus, commit, rows_per_call=2 * ship.concurrency)

        try:
            for rec in pending:
                resolved = await self._resolve(run, rec, ctx, clients)
                if isinstance(resolved, RowResult):
                    commit(rec, resolved)
                    self.resolved_on_driver += 1
                    continue
                window.append((rec, resolved))
                if len(window) >= self.window:
                    dispatch()
                    window = []
            if window:
                dispatch()
            await self._final_checks(clients)
        finally:
            self.shutdown()

    async def _final_checks(self, clients: dict[str, Any]) -> None:
        """One canary from the driver for the rows no worker canary vouched for yet (as the engine does after a
        local run), while the cache writer still runs: on drift it drops what the workers stored unverified."""
        for m in clients.values():
            guard = _guard_of(m)
            if guard is None:
                continue
            before = guard.drift
            await guard.final_check()
            if guard.drift is not None and before is None and self.writer is not None:
                import ray

                ray.get(self.writer.drop_pending.remote())

    async def _resolve(self, run: "Run", rec: Record, ctx: RunContext,
                       clients: dict[str, Any]) -> RowResult | dict[str, dict[str, Any]]:
        """The row's result when the cache answers all of it, else the cache entries found before the first miss."""
        if not clients or not run.use_cache:
            return {}
        probes = {r: _ProbeModel(m) for r, m in clients.items()}
        pctx = replace(ctx, models={**ctx.models, **probes}, counters={})
        token = current_row.set(rec.index)
        try:
            res = await run.step.process(rec, pctx)  # type: ignore[attr-defined]
        except CacheMiss:
            return {k: v for p in probes.values() for k, v in p.found.items()}
        except (FatalModelError, UserError):
            raise
        except RequestFailed as exc:
            res = RowResult.failure(redact(str(exc)))
        except Exception as exc:
            res = RowResult.failure(redact(f"{type(exc).__name__}: {exc}"))
        finally:
            current_row.reset(token)
        for role, p in probes.items():
            _credit_hits(clients[role], p)
        for k, v in pctx.counters.items():
            ctx.count(k, v)
        return res

    # ---------------------------------------------------------------- batch steps
    def run_batches(self, run: "Run", pending: Iterator[Record], ctx: RunContext, commit: Commit) -> None:
        ray = self._start()
        n, cpus, gpus = self._resources(ray, "batch", True)
        ship = self._shipment(run, ctx, n)
        size = max(1, int(run.step.rows_per_batch()))  # type: ignore[attr-defined]
        chunks: list[list[Record]] = []
        rows = 0
        for chunk in _chunks(pending, size):
            chunks.append(chunk)
            rows += len(chunk)
            if rows >= self.window:
                self._dispatch(ray, run, ctx, chunks, ship, n, cpus, gpus, commit, rows_per_call=1)
                chunks, rows = [], 0
        if chunks:
            self._dispatch(ray, run, ctx, chunks, ship, n, cpus, gpus, commit, rows_per_call=1)

    def _fold_endpoint_stats(self, client: Any, report: dict[str, Any]) -> None:
        """A fleet on the workers: add what each actor's endpoints did since its last report to the driver's
        fleet (answered, errors, 429 pauses, concurrency cuts; health as the actor last saw it), so the manifest's
        endpoint stats cover the whole cluster."""
        fleet = getattr(_unwrap_endpoint(client), "fleet", None)
        if fleet is None:
            return
        by_url = {e.url: e for e in fleet.endpoints}
        for now in report["stats"]:
            ep = by_url.get(now["url"])
            if ep is None:
                continue
            key = (report["worker"], now["url"])
            was = self._endpoint_seen.get(key, {})
            ep.answered += now["answered"] - was.get("answered", 0)
            ep.errors += now["errors"] - was.get("errors", 0)
            ep.limiter.pauses += now["pauses_429"] - was.get("pauses_429", 0)
            if ep.limit is not None:
                ep.limit.cuts += now["concurrency_cuts"] - was.get("concurrency_cuts", 0)
            ep.healthy = bool(now["healthy"])
            self._endpoint_seen[key] = now

    def embed_missing(self, texts: Iterable[str], *, cache_dir: Path | None, batch_size: int) -> int:
        """Compute on the cluster, and store in the embedding cache on the driver, the sentence embeddings of
        ``texts`` that the cache lacks (one embedder per actor); returns how many were computed."""
        from reflectkit.engine.ray_embed import embed_on_ray

        ray = self._start()
        n, cpus, gpus = self._resources(ray, "batch", True)
        st = embed_on_ray(ray, texts, cache_dir=cache_dir, batch_size=batch_size, workers=n, cpus=cpus, gpus=gpus,
                          max_task_retries=self.max_task_retries)
        for k, v in st.items():
            self.embedding[k] = round(self.embedding.get(k, 0) + v, 3)
        return int(st["embeddings_computed"])

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self, ray: Any, run: "Run", ctx: RunContext, items: list[Any], ship: _Shipment, n: int,
                  cpus: float, gpus: float, commit: Commit, *, rows_per_call: int) -> None:
        """One Ray Data dataset over ``items`` (rows with their cache entries, or engine batches); results are
        committed as they stream back. Rows whose batch failed for good are committed as ``failed``."""
        by_index: dict[int, Record] = {}
        for it in items:
            for rec in (it if isinstance(it, list) else [it[0]]):
                by_index[rec.index] = rec
        self.dispatched += len(by_index)
        ds = ray.data.from_items([{"payload": pickle.dumps(it)} for it in items],
                                 override_num_blocks=max(1, min(len(items), 4 * n)))
        out = ds.map_batches(_Worker, fn_constructor_args=(ship, self.writer), batch_size=rows_per_call,
                             compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n), num_cpus=cpus, num_gpus=gpus, batch_format="numpy",
                             zero_copy_batch=True, max_restarts=-1, max_task_retries=self.max_task_retries)
        done: set[int] = set()
        fatal: dict[str, Any] | None = None
        budget_stop: dict[str, Any] | None = None
        clients = _chat_clients(run.models)
        t0 = time.monotonic()
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                if not done:
                    self.first_result_s.append(time.monotonic() - t0)
                for blob in batch["result"]:
                    r = pickle.loads(blob)
                    for role, st in (r.get("stats") or {}).items():
                        if role in clients:
                            _credit_worker_stats(clients[role], st)
                            if st.get("endpoints"):
                                self._fold_endpoint_stats(clients[role], st["endpoints"])
                            guard = _guard_of(clients[role])
                            if guard is not None and st.get("guard"):
                                guard.merge_report(st["guard"])
                    for k, v in (r.get("counters") or {}).items():
                        ctx.count(k, v)
                    if "fatal" in r:
                        if r.get("budget"):  # an actor spent its share: drain (the others stop at theirs)
                            budget_stop = budget_stop or r
                        else:
                            fatal = fatal or r
                        continue
                    rec = by_index[r["index"]]
                    commit(rec, RowResult.from_json(r["result"]), r.get("endpoints"))
                    done.add(rec.index)
                if fatal is not None:
                    break
        except Exception as exc:  # the actor kept dying (crash, out of memory) or Ray failed: never lose the rows
            reason = redact(f"worker failed after {self.max_task_retries} retries: {_first_line(exc)}")
            for idx, rec in by_index.items():
                if idx not in done:
                    commit(rec, RowResult.failure(reason))
        for m in clients.values():  # drift seen by a worker (--on-drift stop): the engine marks the rows, exit 3
            guard = _guard_of(m)
            if guard is not None and guard.stopped is not None:
                if self.writer is not None:
                    ray.get(self.writer.drop_pending.remote())
                raise guard.stopped
        if fatal is not None:
            raise UserError(str(fatal["fatal"]), exit_code=int(fatal.get("exit_code", 2)))
        if budget_stop is not None:  # every paid response is credited; the rows not done are pending for a re-run
            raise BudgetExhausted(str(budget_stop["fatal"]))

    def shutdown(self) -> None:
        """Stop the cache writer (its counts are kept for :meth:`writer_stats` and the manifest)."""
        if self.writer is not None:
            import ray

            try:
                self._writer_stats = self.writer_stats()
            finally:
                ray.kill(self.writer)
                self.writer = None


def _chunks(it: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(it)
    while True:
        chunk = [r for _, r in zip(range(size), it)]
        if not chunk:
            return
        yield chunk


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if any(w in ln for w in ("OutOfMemory", "memory", "died", "ActorDied",
                                                               "unexpectedly", "Error:"))]
    return (interesting[0] if interesting else lines[0] if lines else type(exc).__name__)[:300]


__all__ = ["RayExecutor", "CacheMiss", "ensure_ray", "require_ray"]
