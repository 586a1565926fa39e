"""Client-side rate limits for one endpoint: requests and tokens per minute, 429 pauses and adaptive concurrency.

* :class:`RateLimiter`: ``--rpm`` / ``--tpm`` as token buckets (a request costs 1 request and its estimated
  prompt tokens plus ``max_tokens``). A bucket of burst ``b`` refilled at ``(L - b) / window`` lets through at
  most ``L`` in *any* window (``b`` at once plus the refill), so the limit holds for a provider's sliding window
  too; the burst is one request (rpm) or one second's tokens (tpm), and the refill keeps 2% in hand for the
  network's jitter. Requests are spread evenly instead of bursting at the start of each minute.
* :meth:`RateLimiter.pause`: a 429 pauses the whole endpoint (every request waiting for it), for ``Retry-After``
  when the server sends one, since the limit belongs to the endpoint, not to the one request that hit it.
* :class:`AdaptiveLimit`: with ``--adaptive-concurrency``, additive increase / multiplicative decrease (AIMD, as in
  TCP congestion control) of the requests in flight: halve on a 429 (at most once per ``cooldown_s``), add one per
  window of successes, never above the configured concurrency.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` units per second, at most ``burst`` stored. ``acquire(n)`` waits until ``n`` units are there."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, n: float = 1.0) -> None:
        n = min(n, self.burst)  # one request larger than the bucket waits for a full bucket, then goes
        async with self._lock:  # first come, first served: waiters queue behind the lock
            while True:
                self._refill()
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


def _bucket(limit: float, burst: float, window_s: float) -> TokenBucket:
    """A bucket that lets at most ``limit`` through in any ``window_s`` (burst + refill <= limit, 2% margin)."""
    burst = min(burst, max(1.0, limit / 2.0))
    return TokenBucket(max(limit - burst, 1e-9) / window_s * 0.98, burst)


class RateLimiter:
    """Per-endpoint limits: requests/minute, tokens/minute and a pause after a 429."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, window_s: float = 60.0) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.requests = _bucket(rpm * window_s / 60.0, 1.0, window_s) if rpm else None
        self.tokens = _bucket(tpm * window_s / 60.0, max(1.0, tpm / 60.0), window_s) if tpm else None
        self.paused_until = 0.0
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        """Hold every request to this endpoint for ``seconds`` (a 429 with or without ``Retry-After``)."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    async def wait_pause(self) -> None:
        while (left := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    async def admit(self, est_tokens: int) -> None:
        """Wait until one request of about ``est_tokens`` tokens may go."""
        await self.wait_pause()
        if self.tokens is not None:
            await self.tokens.acquire(est_tokens)
        if self.requests is not None:
            await self.requests.acquire(1)
        await self.wait_pause()  # a 429 may have paused the endpoint while this request waited for the buckets


class AdaptiveLimit:
    """A concurrency limit that can move between 1 and ``maximum`` while requests hold it (AIMD)."""

    def __init__(self, maximum: int, *, adaptive: bool, cooldown_s: float = 1.0) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.adaptive = adaptive
        self.cooldown_s = cooldown_s
        self.in_flight = 0
        self._last_cut = 0.0
        self._cond: asyncio.Condition | None = None
        self.cuts = 0

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # created inside the running loop
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        cond = self._condition()
        async with cond:
            while self.in_flight >= int(self.limit):
                await cond.wait()
            self.in_flight += 1

    async def release(self) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            cond.notify(max(1, int(self.limit) - self.in_flight))

    def on_success(self) -> None:
        if self.adaptive and self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)  # +1 per window of successes

    def on_rate_limited(self) -> None:
        if not self.adaptive:
            return
        now = time.monotonic()
        if now - self._last_cut >= self.cooldown_s:  # one cut per burst of 429s, not one per request
            self._last_cut = now
            self.limit = max(1.0, self.limit / 2.0)
            self.cuts += 1
