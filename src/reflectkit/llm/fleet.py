"""Several endpoints serving the same model (``--oracle-base-url`` repeated, ``base_urls:`` in YAML).

Each request goes to the healthy, unpaused endpoint with the fewest requests outstanding (least outstanding
requests: it adapts to endpoints of different speed without any tuning). An endpoint whose request fails with a
connection error, a timeout or repeated 5xx is taken out and checked again (``GET /v1/models``) after
``recheck_s``; while it is out the others take its load. Each endpoint has its own rate limits, 429 pause and
adaptive concurrency (:mod:`reflectkit.llm.ratelimit`), since providers and servers limit per endpoint.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from reflectkit.llm.ratelimit import AdaptiveLimit, RateLimiter

#: consecutive 5xx answers that take an endpoint out (a connection error or timeout takes it out at once)
MAX_5XX = 3


@dataclass
class Endpoint:
    url: str
    transport: Any  # llm.transport: AiohttpTransport | SDKTransport
    limiter: RateLimiter
    limit: AdaptiveLimit | None  # None: no per-endpoint cap besides the run's concurrency
    outstanding: int = 0
    healthy: bool = True
    recheck_at: float = 0.0
    failures_5xx: int = 0
    answered: int = 0
    errors: int = 0
    checking: bool = field(default=False, repr=False)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "answered": self.answered, "errors": self.errors, "healthy": self.healthy,
                "pauses_429": self.limiter.pauses, "concurrency_cuts": self.limit.cuts if self.limit else 0}


class Fleet:
    """Chooses an endpoint per attempt and keeps their health."""

    def __init__(self, endpoints: list[Endpoint], *, recheck_s: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("a fleet needs at least one endpoint")
        self.endpoints = endpoints
        self.recheck_s = recheck_s
        self._turn = 0

    def __len__(self) -> int:
        return len(self.endpoints)

    def choose(self) -> Endpoint:
        """Least outstanding requests among healthy endpoints (ties: round robin); if none is healthy, the one due
        for a recheck soonest (a real request is then its health check)."""
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        now = time.monotonic()
        for ep in eps:
            if not ep.healthy and not ep.checking and now >= ep.recheck_at:
                ep.checking = True
                asyncio.get_running_loop().create_task(self._recheck(ep))
        healthy = [e for e in eps if e.healthy]
        if not healthy:
            return min(eps, key=lambda e: e.recheck_at)
        self._turn = (self._turn + 1) % len(eps)
        n = len(eps)
        return min(healthy, key=lambda e: (e.limiter.paused_until > now, e.outstanding,
                                           (eps.index(e) - self._turn) % n))

    def mark_ok(self, ep: Endpoint) -> None:
        ep.failures_5xx = 0
        ep.answered += 1
        if not ep.healthy:
            ep.healthy = True

    def mark_down(self, ep: Endpoint, *, server_error: bool = False) -> None:
        """A failed attempt: a connection error/timeout takes the endpoint out; 5xx only after MAX_5XX in a row."""
        ep.errors += 1
        if server_error:
            ep.failures_5xx += 1
            if ep.failures_5xx < MAX_5XX:
                return
        if len(self.endpoints) > 1:
            ep.healthy = False
            ep.recheck_at = time.monotonic() + self.recheck_s

    async def _recheck(self, ep: Endpoint) -> None:
        try:
            await ep.transport.get_json("/models", timeout=5.0)
            ep.healthy, ep.failures_5xx = True, 0
        except Exception:  # still down: check again later
            ep.recheck_at = time.monotonic() + self.recheck_s
        finally:
            ep.checking = False

    def stats(self) -> list[dict[str, Any]]:
        return [e.stats() for e in self.endpoints]
