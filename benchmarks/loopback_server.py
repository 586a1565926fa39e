"""A loopback OpenAI-compatible server that runs no model: it answers ``/v1/chat/completions`` after a fixed
latency with jitter (uniform in ``[lat_min, lat_max]``), so a client's throughput can be compared with the physical
limit ``C / mean latency`` and nothing but the client is measured.

Why project-written: the point is a server whose cost is negligible and whose latency is known exactly; every real
server (llama.cpp, vLLM) spends its own time generating. It is a bare ``asyncio.Protocol`` speaking just enough
HTTP/1.1 (keep-alive, Content-Length bodies) for the OpenAI SDK, aiohttp and httpx clients, so that at 4,000
requests/s it needs little CPU next to the client it measures. It also serves ``GET /v1/models``.

Optionally (``--rpm R --window W``) it allows at most R chat requests per sliding window of W seconds and answers
the rest with HTTP 429 and ``Retry-After``, like a provider's rate limit.

    python benchmarks/loopback_server.py --port 0 --lat-min 0.2 --lat-max 0.3      # prints "PORT <n>" when ready
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import time

MODEL = "loopback"
ANSWER = ("[Feedback] The answer is correct but terse.\n[Better Answer] A fuller answer that explains each step "
          "and ends with the result. [End]")


def _completion(n: int) -> bytes:
    return json.dumps({
        "id": f"cmpl-{n}", "object": "chat.completion", "created": 0, "model": MODEL, "system_fingerprint": "fp_loop",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
    }).encode()


_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "loopback"}]}).encode()


class Stats:
    def __init__(self) -> None:
        self.served = 0
        self.rejected = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.accepted_at: list[float] = []


class _Proto(asyncio.Protocol):
    def __init__(self, srv: LoopbackServer) -> None:
        self.srv = srv
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            if len(self.buf) < head_end + 4 + length:
                return
            self.buf = self.buf[head_end + 4 + length:]
            method, path = head.split(" ", 2)[:2]
            self.srv.handle(self, method, path)

    def reply(self, status: str, body: bytes, extra: str = "") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write((f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                              f"{extra}connection: keep-alive\r\n\r\n").encode() + body)


class LoopbackServer:
    def __init__(self, lat_min: float = 0.2, lat_max: float = 0.3, *, rpm: int | None = None, window: float = 60.0,
                 seed: int = 0) -> None:
        self.lat_min, self.lat_max = lat_min, lat_max
        self.rpm, self.window = rpm, window
        self.rng = random.Random(seed)
        self.stats = Stats()
        self._recent: collections.deque[float] = collections.deque()
        self.port = 0

    def handle(self, proto: _Proto, method: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        if path.rstrip("/").endswith("/models"):
            proto.reply("200 OK", _MODELS)
            return
        if not path.rstrip("/").endswith("/chat/completions"):
            proto.reply("404 Not Found", b'{"error": {"message": "not found"}}')
            return
        st = self.stats
        if self.rpm is not None:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.rpm:
                st.rejected += 1
                wait = self._recent[0] + self.window - now
                proto.reply("429 Too Many Requests", b'{"error": {"message": "rate limit", "type": "rate_limit"}}',
                            f"retry-after-ms: {int(wait * 1000) + 1}\r\n")
                return
            self._recent.append(now)
            st.accepted_at.append(now)
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)

        def done() -> None:
            st.in_flight -= 1
            st.served += 1
            proto.reply("200 OK", _completion(st.served))

        loop.call_later(self.rng.uniform(self.lat_min, self.lat_max), done)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Proto(self), host, port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        return server


class ServerThread:
    """A :class:`LoopbackServer` on its own event loop in a daemon thread (for tests and in-process benchmarks).

    ``with ServerThread(lat_min=0.01, lat_max=0.02) as srv: srv.base_url ...``"""

    def __init__(self, lat_min: float = 0.2, lat_max: float = 0.3, **kw: object) -> None:
        import threading

        self.server = LoopbackServer(lat_min, lat_max, **kw)  # type: ignore[arg-type]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._aserver: asyncio.AbstractServer | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._aserver = self._loop.run_until_complete(self.server.start())
        self._ready.set()
        self._loop.run_forever()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    @property
    def stats(self) -> Stats:
        return self.server.stats

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            if self._aserver is not None:
                self._aserver.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)


async def _main(a: argparse.Namespace) -> None:
    srv = LoopbackServer(a.lat_min, a.lat_max, rpm=a.rpm, window=a.window)
    server = await srv.start(port=a.port)
    print(f"PORT {srv.port}", flush=True)
    async with server:
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lat-min", type=float, default=0.2)
    ap.add_argument("--lat-max", type=float, default=0.3)
    ap.add_argument("--rpm", type=int, default=None)
    ap.add_argument("--window", type=float, default=60.0)
    try:
        asyncio.run(_main(ap.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
