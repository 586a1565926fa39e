"""Rate limits: --rpm keeps a run within a server's requests-per-window limit; a 429 pauses the whole endpoint and
honours Retry-After; adaptive concurrency halves on 429s and grows back.

The server is the project's loopback server (``benchmarks/loopback_server.py``): no real server (llama.cpp, vLLM)
enforces a requests-per-minute limit, and a limit a test can check exactly needs a server that counts every request.
The window is shortened (R requests per W seconds instead of per minute) so that the test takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from conftest import ROOT

from reflectkit.llm.base import SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.llm.openai_compat import OpenAICompatModel
from reflectkit.llm.ratelimit import AdaptiveLimit, RateLimiter, TokenBucket
from reflectkit.llm.retry import RetryPolicy
from reflectkit.llm.spec import ModelSpec
from reflectkit.recycle.api import recycle

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_server import ServerThread

R, W = 6, 2.0  # the server allows 6 requests per 2 s (180 per minute)


def _rows(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": f"{i}."}) + "\n" for i in range(n)))
    return p


def _max_in_window(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_rpm_keeps_the_run_within_the_servers_limit(tmp_path: Path) -> None:
    n = 14
    with ServerThread(0.01, 0.02, rpm=R, window=W) as srv:
        spec = ModelSpec(model="loopback", base_url=srv.base_url, rpm=R * 60 / W)
        client = OpenAICompatModel("loopback", srv.base_url, concurrency=8, spec=spec, rate_window_s=W)
        t0 = time.monotonic()
        s = recycle(_rows(tmp_path, n), tmp_path / "o.jsonl", phase="response", run_dir=tmp_path / "run",
                    concurrency=8, clients={"oracle": CachedChatModel(client, None)})
        wall = time.monotonic() - t0
        stats = srv.stats
    assert s.failed == 0 and s.rows_out == n and sum(s.counts.values()) == n
    assert stats.rejected == 0  # the client never asked more than the server allows
    assert _max_in_window(stats.accepted_at, W) <= R
    assert wall >= (n - R) / R * W * 0.9  # and it did wait: n requests cannot go faster than R per W


def test_429_pauses_the_endpoint_and_adaptive_concurrency_backs_off(tmp_path: Path) -> None:
    n = 16
    with ServerThread(0.01, 0.02, rpm=R, window=W) as srv:
        spec = ModelSpec(model="loopback", base_url=srv.base_url, adaptive=True, max_attempts=20)
        client = OpenAICompatModel("loopback", srv.base_url, concurrency=8, spec=spec,
                                   retry=RetryPolicy(max_attempts=20, base_delay=0.05))
        s = recycle(_rows(tmp_path, n), tmp_path / "o.jsonl", phase="response", run_dir=tmp_path / "run",
                    concurrency=8, clients={"oracle": CachedChatModel(client, None)})
        stats = srv.stats
    ep = client.fleet.endpoints[0]
    assert stats.rejected > 0 and s.failed == 0 and s.rows_out == n  # 429s, answered by waiting, no row lost
    assert ep.limiter.pauses > 0 and ep.limit is not None and ep.limit.cuts > 0
    assert _max_in_window(stats.accepted_at, W) <= R
    # the whole endpoint waited for Retry-After: far fewer 429s than if every request had retried on its own
    assert stats.rejected < 4 * n


def test_token_bucket_and_aimd_units() -> None:
    async def go() -> tuple[float, int, float]:
        lim = RateLimiter(rpm=600, window_s=1.0)  # 10 per second
        t0 = time.monotonic()
        for _ in range(6):
            await lim.admit(10)
        took = time.monotonic() - t0
        aimd = AdaptiveLimit(8, adaptive=True, cooldown_s=0.0)
        aimd.on_rate_limited()
        after_cut = int(aimd.limit)
        for _ in range(100):
            aimd.on_success()
        return took, after_cut, aimd.limit

    took, after_cut, grown = asyncio.run(go())
    assert 0.45 <= took < 2.0  # 1 burst, then ~9.8/s
    assert after_cut == 4 and grown == 8.0  # halved, then back to the maximum, never above it
    b = TokenBucket(rate=100.0, burst=5)
    assert b.tokens == 5


def test_tpm_counts_prompt_estimate_plus_max_tokens(tmp_path: Path) -> None:
    with ServerThread(0.001, 0.002) as srv:
        spec = ModelSpec(model="loopback", base_url=srv.base_url, tpm=6000.0)
        client = OpenAICompatModel("loopback", srv.base_url, concurrency=4, spec=spec, rate_window_s=1.0)

        async def go() -> float:
            t0 = time.monotonic()
            for _ in range(4):  # each request ~ 50 prompt + 40 max tokens = ~90; 100 tokens per 1 s window
                await client.chat([{"role": "user", "content": "x" * 180}], SamplingParams(max_tokens=40))
            await client.aclose()
            return time.monotonic() - t0

        took = asyncio.run(go())
    assert took >= 1.5  # 4 x ~90 tokens at under 100 tokens per second
