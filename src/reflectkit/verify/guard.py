"""Verification during a run: start canaries, periodic canaries and passive checks around an endpoint client.

``guard_endpoint`` wraps every OpenAI-compatible client the factory builds (:class:`VerifiedEndpoint`). At
``probe()`` it sends a few greedy canaries, each repeated to learn how much the endpoint varies, plus a small
tokenizer probe; from the stable parts (token counts, answers that repeated exactly, the argmax of the first
token) it computes the endpoint's **verified identity**, and the cache key includes it
(``openai-compatible:NAME#IDHASH``), so two endpoints that claim one name but answer differently never share cached
responses. Then every ``canary_every`` calls one canary is repeated and compared with what was learned:

- its ``usage.prompt_tokens`` must be what it was (deterministic on every honest endpoint);
- with log-probs (the cheapest robust signal): the top-k log-probs along the greedy answer (the largest change
  over its positions while the answers agree) must stay within ``floor + z * noise`` of the start's, the noise
  being the same statistic between the start repeats;
- without log-probs: an answer outside those seen at start is drift, unless the start repeats already disagreed
  (a noisy canary only counts through its token counts).

Passive checks on every call: the ``model`` field of responses must not change; with ``--oracle-claims REF`` the
claimed tokenizer counts the exact messages locally and ``usage.prompt_tokens`` must match (up to the constant
offset learned at start). Drift stops the run (``--on-drift stop``: :class:`EndpointDrift`, exit 3) or marks the rows
(``mark``); either way the rows answered since the last good canary become ``suspect`` (``suspects()``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from reflectkit.llm.base import (ChatResult, EndpointDrift, FatalModelError, Message, RequestFailed, SamplingParams,
                                 TokenLogprob, current_row)
from reflectkit.verify.fingerprint import host_of
from reflectkit.verify.logprob_tier import distance, first_position
from reflectkit.verify.probes import CANARY_PROMPTS, TOKENIZER_UNITS, user

DEFAULT_CANARY_EVERY = 25


class GuardOptions(BaseModel):
    """How the run-time guard checks (defaults measured in benchmarks/bench_verify.py)."""

    canaries: int = Field(3, ge=1, le=len(CANARY_PROMPTS))
    start_repeats: int = Field(2, ge=1, description="each canary is asked this often at start (learns its noise)")
    max_tokens: int = Field(8, ge=1)
    top_logprobs: int = Field(5, ge=1)
    floor: float = Field(0.03, ge=0, description="nats: tolerance of the first-token log-probs beyond the noise")
    z: float = Field(4.0, ge=0)
    tokenizer_units: int = Field(3, ge=0, le=len(TOKENIZER_UNITS))


def path_distance(a: list[TokenLogprob], b: list[TokenLogprob]) -> float:
    """The largest per-position distance (:func:`~reflectkit.verify.logprob_tier.distance`) along the greedy
    path while both answers agree; the first position where they differ is included (its argmax penalty)."""
    worst = 0.0
    for ta, tb in zip(a, b):
        worst = max(worst, distance({**ta.top, ta.token: ta.logprob}, {**tb.top, tb.token: tb.logprob}))
        if ta.token != tb.token:  # later positions have other contexts
            break
    return worst


@dataclass
class Canary:
    index: int
    prompt: str
    params: SamplingParams
    texts: list[str] = field(default_factory=list)
    prompt_tokens: set[int] = field(default_factory=set)
    firsts: list[dict[str, float]] = field(default_factory=list)
    paths: list[list[TokenLogprob]] = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        return user(self.prompt)

    @property
    def stable(self) -> bool:
        return len(set(self.texts)) == 1

    def learn(self, res: ChatResult) -> None:
        self.texts.append(res.text)
        self.prompt_tokens.add(res.prompt_tokens)
        fp = first_position(res.logprobs)
        if fp is not None:
            self.firsts.append(fp)
            self.paths.append(list(res.logprobs or []))

    def noise(self) -> float:
        return max((path_distance(self.paths[0], p) for p in self.paths[1:]), default=0.0)

    def check(self, res: ChatResult, opts: GuardOptions) -> str | None:
        """None when ``res`` is what this canary gave at start; else the reason (one line)."""
        if res.prompt_tokens and self.prompt_tokens and res.prompt_tokens not in self.prompt_tokens:
            return (f"usage.prompt_tokens {res.prompt_tokens}, the endpoint counted "
                    f"{'/'.join(map(str, sorted(self.prompt_tokens)))} at start (another tokenizer or template)")
        if self.paths and res.logprobs:
            d = statistics.fmean(path_distance(p, res.logprobs) for p in self.paths)
            limit = opts.floor + opts.z * self.noise()
            if d > limit:
                return (f"answered {res.text[:30]!r} (start: {self.texts[0][:30]!r}); its log-probs moved "
                        f"{d:.3f} nats > {limit:.3f}")
            return None
        if self.stable and res.text not in self.texts:
            return f"answered {res.text[:30]!r}, the endpoint answered {self.texts[0][:30]!r} at start"
        return None

    def identity(self) -> dict[str, Any]:
        """The parts of this canary that are stable on an honest endpoint (noisy answers are left out)."""
        argmax = sorted({max(f, key=f.__getitem__) for f in self.firsts})
        return {"prompt_tokens": sorted(self.prompt_tokens), "text": self.texts[0] if self.stable else None,
                "first_token": argmax if len(argmax) == 1 else None}


class VerifiedEndpoint:
    """An endpoint client (``OpenAICompatModel``) with canaries and passive checks; delegates everything else."""

    def __init__(self, inner: Any, spec: Any, *, setting_name: str = "--oracle-",
                 options: GuardOptions | None = None) -> None:
        self.inner = inner
        self.spec = spec
        self.setting_name = setting_name
        self.options = options or GuardOptions()
        every = getattr(spec, "canary_every", None)
        self.canary_every = DEFAULT_CANARY_EVERY if every is None else int(every)
        self.on_drift = getattr(spec, "on_drift", "stop") or "stop"
        self.claims = getattr(spec, "claims", None)
        self.cache_identity = inner.cache_identity
        self.id_hash: str | None = None
        self._canaries: list[Canary] = []
        self._tokenizer: dict[str, int] = {}
        self._counter: Any = None
        self._offset: int | None = None
        self._models_seen: set[str] = set()
        self._n = 0  # calls made through the guard (canaries not counted)
        self._done = 0  # completed calls, in completion order
        self._next_canary = 0
        self._canary_lock = asyncio.Lock()
        self.canary_checks = 0
        self.canary_calls = 0
        self.canary_seconds = 0.0  # wall time spent on canaries (the guard's overhead on the run)
        self.passive_checks = 0
        self._last_good_call = 0
        self._unverified: dict[int, tuple[int, int]] = {}  # row -> (done seq of its last call, its first call)
        self._suspects: dict[int, str] = {}
        self._first_suspect_call: int | None = None
        self.drift: dict[str, Any] | None = None
        self._stopped: EndpointDrift | None = None
        self._in_drift = False
        #: told ``verified(seq)`` when a canary vouches for the calls completed up to ``seq`` and ``drifted()`` when
        #: drift is found (the response cache drops what it stored since the last good canary)
        self.listeners: list[Any] = []
        self._started = False
        self._canary_tasks: set[asyncio.Task[None]] = set()
        #: on a worker: the counters already reported to the driver, and whether its drift was (take_report)
        self._reported: dict[str, float] = {"canary_checks": 0, "canary_calls": 0, "passive_checks": 0,
                                            "canary_seconds": 0.0}
        self._drift_reported = False
        self._suspects_reported: set[int] = set()

    def __getattr__(self, name: str) -> Any:  # retries, probed, model, base_url, ...
        return getattr(self.inner, name)

    @property
    def calls(self) -> int:
        """The run's own calls: verification calls are counted apart (``canary_calls``), so that a fully cached
        re-run still reports 0 oracle calls."""
        return max(0, int(getattr(self.inner, "calls", 0)) - self.canary_calls)

    # ------------------------------------------------------------------ what the engine and the cache read
    @property
    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity, "verification": self.record()}

    def record(self) -> dict[str, Any]:
        """The manifest's verification section of this model."""
        tiers = ["canaries" if self.canary_every or self._started else None, "model-field"]
        if self._counter is not None:
            tiers.append("prompt-tokens (claims)")
        return {
            "verified": self._started,
            "identity_hash": self.id_hash,
            "host": host_of(getattr(self.inner, "base_url", None)),
            "claims": self.claims,
            "tiers": [t for t in tiers if t],
            "canary_every": self.canary_every,
            "on_drift": self.on_drift,
            "canaries": [{"prompt": c.prompt, "answers": sorted(set(c.texts)), "prompt_tokens": sorted(c.prompt_tokens),
                          "noise_nats": round(c.noise(), 5), "stable": c.stable} for c in self._canaries],
            "canary_checks": self.canary_checks,
            "canary_calls": self.canary_calls,
            "canary_seconds": round(self.canary_seconds, 3),
            "passive_checks": self.passive_checks,
            "prompt_token_offset": self._offset,
            "response_models": sorted(self._models_seen),
            "drift": self.drift,
            "first_suspect_call": self._first_suspect_call,
            "suspect_rows": len(self._suspects),
        }

    @property
    def completed_calls(self) -> int:
        """Calls completed so far, in completion order (read right after ``chat`` returns: that call's number)."""
        return self._done

    @property
    def in_drift(self) -> bool:
        """True from drift until the next good canary: answers now must not be cached nor trusted."""
        return self._in_drift

    def suspects(self) -> dict[int, str]:
        """Row index -> reason, for the rows answered since the last good canary once drift was seen."""
        return dict(self._suspects)

    # ------------------------------------------------------------------ start
    async def probe(self) -> dict[str, Any]:
        ident = await self.inner.probe()
        t0 = time.monotonic()
        try:
            await self._start()
        except RequestFailed as exc:
            raise FatalModelError(f"the endpoint ({self.setting_name}base-url {host_of(self.inner.base_url)}) "
                                  f"failed the start verification checks: {exc}") from None
        self.canary_seconds += time.monotonic() - t0  # wall time: the start canaries run concurrently
        return ident

    async def _ask(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        self.canary_calls += 1
        return await self.inner.chat(messages, params)

    async def _ask_start(self, messages: list[Message], params: SamplingParams, tries: int = 4) -> ChatResult:
        """A start check, asked again when the request fails: a flaky but honest endpoint (5xx, 429 beyond the
        client's own retries) must not fail the run before its first row."""
        for attempt in range(1, tries + 1):
            try:
                return await self._ask(messages, params)
            except RequestFailed:
                if attempt == tries:
                    raise
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def _start(self) -> None:
        o = self.options
        params = SamplingParams(temperature=0.0, max_tokens=o.max_tokens, logprobs=o.top_logprobs)
        self._canaries = [Canary(i, q, params) for i, q in enumerate(CANARY_PROMPTS[: o.canaries])]
        try:
            first = await self._ask_start(self._canaries[0].messages, params)
        except RequestFailed:  # an endpoint that rejects log-prob requests: canaries compare texts only
            params = SamplingParams(temperature=0.0, max_tokens=o.max_tokens)
            for c in self._canaries:
                c.params = params
            first = await self._ask_start(self._canaries[0].messages, params)
        self._canaries[0].learn(first)
        reqs = [(c, r) for r in range(o.start_repeats) for c in self._canaries][1:]
        for c, res in zip([c for c, _ in reqs], await asyncio.gather(*(self._ask_start(c.messages, c.params)
                                                                      for c, _ in reqs))):
            c.learn(res)
        # a compact tokenizer signature: prompt tokens of a few units twice repeated, minus the empty message
        tok_params = SamplingParams(temperature=0.0, max_tokens=1)
        probes = {"": user("")} | {u: user(u * 2) for u in TOKENIZER_UNITS[: o.tokenizer_units]}
        results = await asyncio.gather(*(self._ask_start(m, tok_params) for m in probes.values()))
        counts = {u: r.prompt_tokens for u, r in zip(probes, results)}
        self._tokenizer = {u: counts[u] - counts[""] for u in probes if u}
        for r in [first, *results]:
            if r.model:
                self._models_seen.add(r.model)
        if self.claims:
            self._check_claims({**{u: m for u, m in probes.items()}, **{c.prompt: c.messages for c in self._canaries}},
                               {**counts, **{c.prompt: min(c.prompt_tokens) for c in self._canaries}})
        payload = {"model": getattr(self.inner, "model", None), "tokenizer": self._tokenizer,
                   "canaries": [c.identity() for c in self._canaries]}
        self.id_hash = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        self.cache_identity = f"{self.inner.cache_identity}#{self.id_hash[:16]}"
        self._started = True

    def _check_claims(self, messages: dict[str, list[Message]], counted: dict[str, int]) -> None:
        """Learn the constant offset between the endpoint's and the claimed tokenizer's counts; a non-constant
        offset means another tokenizer than the claimed one."""
        from reflectkit.verify.reference import resolve_reference

        ref = resolve_reference(self.claims, f"{self.setting_name}claims", load_model=False)
        counter = ref.counter
        if counter is None:  # a fingerprint: no tokenizer for arbitrary messages
            return
        offsets = {k: counted[k] - counter(m) for k, m in messages.items() if counted.get(k)}
        if len(set(offsets.values())) > 1:
            unit = next(k for k, v in offsets.items() if v != next(iter(offsets.values())))
            raise EndpointDrift(f"the endpoint ({self.setting_name}base-url) does not tokenize like "
                                f"{self.setting_name}claims {self.claims}: prompt-token counts differ by "
                                f"{sorted(set(offsets.values()))} (e.g. for {unit!r}) at the start checks",
                                call_index=0)
        self._counter = counter
        self._offset = next(iter(offsets.values()), 0)

    # ------------------------------------------------------------------ every call
    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        if self._stopped is not None:
            raise self._stopped
        self._n += 1
        n = self._n
        row = current_row.get()
        if self._started and self.canary_every and n % self.canary_every == 0 and not self._canary_lock.locked():
            # in the background: a row never waits for a canary (at high concurrency a canary in the row's path
            # throttled the whole run); a canary still due while one is in flight is skipped, not queued
            task = asyncio.create_task(self._canary(n))
            self._canary_tasks.add(task)
            task.add_done_callback(self._canary_tasks.discard)
        res = await self.inner.chat(messages, params)
        self._done += 1
        if self._stopped is not None:  # drift was found while this call ran: its row fails, is not committed
            if row is not None:
                self._suspects.pop(row, None)
            raise self._stopped
        if row is not None:
            if self._in_drift:  # no good canary since the drift: the row cannot be trusted
                self._mark(row, n)
            elif self.canary_every:  # rows wait here for the next good canary (no canaries: nothing to wait for)
                seq, first = self._unverified.get(row, (0, n))
                self._unverified[row] = (self._done, min(first, n))
        if self._started:
            problem = self._passive(messages, res)
            if problem:
                if row is not None and not self.canary_every:
                    self._unverified[row] = (self._done, n)  # passive checks alone: this row is the suspect
                self._on_drift(n, problem)
                if self._stopped is not None:
                    if row is not None:  # this row fails with the drift (never committed): not a suspect row
                        self._suspects.pop(row, None)
                    raise self._stopped
        return res

    def _passive(self, messages: list[Message], res: ChatResult) -> str | None:
        self.passive_checks += 1
        if res.model and self._models_seen and res.model not in self._models_seen:
            return f"the response's model field is {res.model!r}, it was {sorted(self._models_seen)} at start"
        if self._counter is not None and res.prompt_tokens:
            expected = self._counter(messages) + (self._offset or 0)
            if res.prompt_tokens != expected:
                return (f"usage.prompt_tokens {res.prompt_tokens} but the claimed tokenizer "
                        f"({self.setting_name}claims) counts {expected}")
        return None

    async def _canary(self, n: int) -> None:
        async with self._canary_lock:  # one canary at a time (concurrent rows wait for it)
            if self._stopped is not None:
                return
            since = self._done
            c = self._canaries[self._next_canary % len(self._canaries)]
            self._next_canary += 1
            self.canary_checks += 1
            t0 = time.monotonic()
            try:
                res = await self._ask(c.messages, c.params)
            except (RequestFailed, FatalModelError):  # a failed request is not evidence of another model
                self.canary_checks -= 1
                return
            finally:
                self.canary_seconds += time.monotonic() - t0  # canaries are serialised: wall time adds up
            problem = c.check(res, self.options)
            if problem:
                self._on_drift(n, f"canary {c.index + 1} ({c.prompt!r}) {problem}")
                return
            self._last_good_call = n
            self._in_drift = False
            self._unverified = {r: v for r, v in self._unverified.items() if v[0] > since}
            for listener in self.listeners:
                listener.verified(since)

    async def settle(self) -> None:
        """Wait for the canaries in flight (a worker reports its batch only once they have spoken)."""
        if self._canary_tasks:
            await asyncio.gather(*list(self._canary_tasks), return_exceptions=True)

    async def final_check(self) -> None:
        """One more canary after the last row, so the rows answered since the last periodic canary are verified
        too (the engine may call it before it collects ``suspects()``). Never raises: drift found here marks the
        rows, and the engine's exit code says so."""
        await self.settle()
        if not self._started or not self.canary_every or self._stopped is not None or not self._unverified:
            return
        stop, self.on_drift = self.on_drift, "mark"
        try:
            await self._canary(self._n)
        except (RequestFailed, FatalModelError):
            pass
        finally:
            self.on_drift = stop

    def _mark(self, row: int, call: int) -> None:
        reason = self.drift["reason"] if self.drift else "endpoint drift"
        self._suspects.setdefault(row, f"suspect: answered after the last good endpoint check (call "
                                       f"{self._last_good_call}); {reason}")
        if call > 0 and (self._first_suspect_call is None or call < self._first_suspect_call):
            self._first_suspect_call = call  # 0: a row a worker answered (its call numbers are the worker's)

    def _on_drift(self, n: int, problem: str) -> None:
        first = self.drift is None
        if first:
            self.drift = {"call": n, "reason": problem, "last_good_call": self._last_good_call,
                          "detected": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._in_drift = True
        for row, (_seq, call) in list(self._unverified.items()):
            self._mark(row, call)
        self._unverified.clear()
        for listener in self.listeners:
            listener.drifted()
        if self.on_drift == "stop" and self._stopped is None:
            self._stopped = EndpointDrift(
                f"endpoint drift detected at call {n} ({self.setting_name}base-url {host_of(self.inner.base_url)}, "
                f"model {getattr(self.inner, 'model', '?')!r}): {problem}; rows answered since the last good check "
                f"(call {self._last_good_call}) are marked suspect", call_index=n)

    # ------------------------------------------------------------------ workers of another executor (Ray)
    def worker_state(self) -> dict[str, Any] | None:
        """What a worker needs to check the same endpoint as this verified guard, without start canaries of its
        own: the learned canaries, the tokenizer signature, the identity, the settings (None before ``probe``)."""
        if not self._started:
            return None
        return {"canaries": self._canaries, "tokenizer": self._tokenizer, "id_hash": self.id_hash,
                "cache_identity": self.cache_identity, "models_seen": sorted(self._models_seen),
                "offset": self._offset, "canary_every": self.canary_every, "on_drift": self.on_drift,
                "claims": self.claims if self._counter is not None else None, "options": self.options}

    @classmethod
    def from_state(cls, inner: Any, spec: Any, state: dict[str, Any], *,
                   setting_name: str = "--oracle-") -> "VerifiedEndpoint":
        """A worker's guard: verified by the driver (``worker_state``), it sends the periodic canaries of this
        worker's calls and runs the passive checks."""
        g = cls(inner, spec, setting_name=setting_name, options=state["options"])
        g._canaries, g._tokenizer, g.id_hash = state["canaries"], dict(state["tokenizer"]), state["id_hash"]
        g.cache_identity, g._models_seen = state["cache_identity"], set(state["models_seen"])
        g.canary_every, g.on_drift, g._offset = int(state["canary_every"]), state["on_drift"], state["offset"]
        if state.get("claims"):
            from reflectkit.verify.reference import resolve_reference

            g._counter = resolve_reference(state["claims"], f"{setting_name}claims", load_model=False).counter
        g._started = True
        return g

    def take_report(self, rows: list[int]) -> dict[str, Any]:
        """For the driver, after a worker's batch: counters since the last report, ``rows`` of the batch no good
        canary has vouched for yet, the suspect rows (and reasons) not reported before, and the drift if it is new."""
        counters: dict[str, Any] = {}
        for k, before in self._reported.items():
            now = getattr(self, k)
            counters[k] = now - before
            self._reported[k] = now
        new_drift = self.drift if self.drift is not None and not self._drift_reported else None
        if new_drift is not None:
            self._drift_reported = True
        suspects = {r: why for r, why in self._suspects.items() if r not in self._suspects_reported}
        self._suspects_reported.update(suspects)
        return {"counters": counters, "unverified": [r for r in rows if r in self._unverified],
                "suspects": suspects, "drift": new_drift, "first_suspect_call": self._first_suspect_call}

    def merge_report(self, report: dict[str, Any]) -> None:
        """The driver's side of :meth:`take_report`: count the worker's checks, keep its unverified rows waiting
        for a good check (the final one at the latest), take its suspects, and act on its drift as on our own
        (``--on-drift stop``: :attr:`stopped` is set; the engine marks the rows and exits 3)."""
        for k, v in report["counters"].items():
            setattr(self, k, getattr(self, k) + v)
        for row in report["unverified"]:
            if row not in self._suspects:
                self._unverified[row] = (self._done, 0)
        self._suspects.update(report["suspects"])
        d = report.get("drift")
        if d is not None:
            if self.drift is None:
                self._last_good_call = int(d.get("last_good_call", self._last_good_call))
                if report.get("first_suspect_call"):
                    self._first_suspect_call = int(report["first_suspect_call"])
            self._on_drift(int(d["call"]), f"(on a worker) {d['reason']}")

    @property
    def stopped(self) -> EndpointDrift | None:
        """The drift that stops the run (``--on-drift stop``), once found; None until then."""
        return self._stopped

    async def aclose(self) -> None:
        for task in list(self._canary_tasks):
            task.cancel()
        await self.inner.aclose()


def guard_endpoint(inner: Any, spec: Any, *, setting_name: str = "--oracle-") -> Any:
    """Wrap an endpoint client with run-time verification (canaries, passive checks); see the module docstring.
    ``--canary-every 0`` without ``--oracle-claims`` still verifies the identity at start (the cache key needs
    it) but sends no periodic canary."""
    return VerifiedEndpoint(inner, spec, setting_name=setting_name)
