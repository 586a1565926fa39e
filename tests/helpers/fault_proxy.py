"""A small asyncio HTTP proxy that injects faults between a client and a real llama.cpp server.

For each request it follows a deterministic schedule (seeded RNG): answer 429 with ``Retry-After``, answer 500,
drop the connection without answering, or forward the request to the upstream server and relay its answer.
Every connection carries one request (``Connection: close``), which keeps the proxy simple and exercises the
client's reconnect path. The proxy only listens on and connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field


@dataclass
class FaultPlan:
    p_429: float = 0.0
    p_500: float = 0.0
    p_drop: float = 0.0
    retry_after: str = "0.1"
    seed: int = 0
    only_path: str = "/v1/chat/completions"  # faults only for this path; other paths are forwarded


@dataclass
class FaultStats:
    forwarded: int = 0
    r429: int = 0
    r500: int = 0
    dropped: int = 0
    log: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream_port: int, plan: FaultPlan) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.stats = FaultStats()
        self._rng = random.Random(plan.seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        async def _close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ------------------------------------------------------------------ proxying
    def upstream_for(self, path: str) -> int:
        """The port a forwarded request goes to (a subclass may route: tests/verify/swap_proxy.py)."""
        return self.upstream_port

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, str, bytes] | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        length = 0
        kept = [lines[0]]
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            if name.strip().lower() in ("connection", "keep-alive"):
                continue
            kept.append(line)
        kept.append("Connection: close")
        body = await reader.readexactly(length) if length else b""
        return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1"), path, body

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await self._read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()
            return
        assert req is not None
        head, path, body = req
        action = "forward"
        if path.startswith(self.plan.only_path):
            x = self._rng.random()
            if x < self.plan.p_429:
                action = "429"
            elif x < self.plan.p_429 + self.plan.p_500:
                action = "500"
            elif x < self.plan.p_429 + self.plan.p_500 + self.plan.p_drop:
                action = "drop"
        self.stats.log.append(action)
        try:
            if action == "429":
                self.stats.r429 += 1
                msg = b'{"error":{"message":"rate limited (injected)","type":"rate_limit"}}'
                writer.write(
                    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: "
                    + self.plan.retry_after.encode()
                    + b"\r\nContent-Length: " + str(len(msg)).encode() + b"\r\nConnection: close\r\n\r\n" + msg
                )
            elif action == "500":
                self.stats.r500 += 1
                msg = b'{"error":{"message":"internal error (injected)"}}'
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(msg)).encode() + b"\r\nConnection: close\r\n\r\n" + msg
                )
            elif action == "drop":
                self.stats.dropped += 1
                writer.transport.abort()  # connection reset, no answer
                return
            else:
                self.stats.forwarded += 1
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_for(path))
                up_w.write(head + body)
                await up_w.drain()
                data = await up_r.read()  # until upstream closes (Connection: close)
                up_w.close()
                writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()
