"""A content-addressed SQLite cache of LLM responses.

The key is a sha256 of (model identity, messages, sampling parameters, prompt-set version). Identical requests
are never paid for twice; the cache can be exported to a JSONL file and imported elsewhere, so that a published
dataset can be replayed by anyone without access to the oracle. API keys are never part of a request or a key.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from reflectkit.errors import UserError
from reflectkit.llm.base import ChatModel, ChatResult, Message, RequestFailed, SamplingParams

ENV_CACHE_DIR = "REFLECTKIT_CACHE_DIR"


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "reflectkit"


def cache_key(model_identity: str, messages: list[Message], params: SamplingParams, prompt_version: str) -> str:
    payload = json.dumps(
        {"model": model_identity, "messages": messages, "params": params.to_dict(), "prompt_version": prompt_version},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """SQLite file ``responses.sqlite`` in ``cache_dir`` (WAL mode; safe for several processes)."""

    def __init__(self, cache_dir: Path | str | None = None) -> None:
        self.dir = Path(cache_dir) if cache_dir else default_cache_dir()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.path = self.dir / "responses.sqlite"
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                "request TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cache directory {self.dir} (--cache-dir / {ENV_CACHE_DIR}) is not usable: {exc}") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?)",
                (key, model, json.dumps(request, ensure_ascii=False), json.dumps(response, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def iter_entries(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT key, model, request, response FROM responses ORDER BY key").fetchall()
        for key, model, request, response in rows:
            yield {"key": key, "model": model, "request": json.loads(request), "response": json.loads(response)}

    def export(self, path: Path | str) -> int:
        """Write every entry as JSONL (gzip-compressed when the name ends in ``.gz``). Returns the count."""
        p = Path(path)
        opener = gzip.open if p.suffix == ".gz" else open
        n = 0
        with opener(p, "wt", encoding="utf-8") as fh:  # type: ignore[operator]
            for entry in self.iter_entries():
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
                n += 1
        return n

    def import_(self, path: Path | str) -> tuple[int, int]:
        """Import entries from an export; returns (added, already present). Keys are re-verified."""
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: cache export file not found")
        opener = gzip.open if p.suffix == ".gz" else open
        added = present = 0
        with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    e = json.loads(line)
                    req = e["request"]
                    key = cache_key(e["model"], req["messages"], SamplingParams(**_params(req["params"])), req["prompt_version"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise UserError(f"{p}:{lineno}: not a reflectkit cache export line ({exc})") from None
                if key != e.get("key"):
                    raise UserError(f"{p}:{lineno}: cache key does not match its request (file altered?)")
                with self._lock:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?)",
                        (key, e["model"], json.dumps(req, ensure_ascii=False), json.dumps(e["response"], ensure_ascii=False), time.time()),
                    )
                if cur.rowcount:
                    added += 1
                else:
                    present += 1
        return added, present

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _params(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if d.get("stop") is not None:
        d["stop"] = tuple(d["stop"])
    return d


class CachedChatModel:
    """Wraps a ChatModel with the response cache. Counts cache hits and real calls.

    ``cache_only=True`` replays a cache without any endpoint: a miss fails the row instead of calling out.
    """

    def __init__(self, inner: ChatModel, cache: ResponseCache | None, *, cache_only: bool = False) -> None:
        self.inner = inner
        self.cache = cache
        self.cache_only = cache_only
        self.hits = 0
        self.misses = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @property
    def identity(self) -> dict[str, Any]:
        return self.inner.identity

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    async def chat(self, messages: list[Message], params: SamplingParams, *, prompt_version: str = "") -> ChatResult:
        key = cache_key(self.inner.cache_identity, messages, params, prompt_version)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.hits += 1
                return ChatResult.from_dict(hit, cached=True)
        if self.cache_only:
            raise RequestFailed("response not in the cache (--cache-only replay)")
        self.misses += 1
        result = await self.inner.chat(messages, params)
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if self.cache is not None:
            request = {"messages": messages, "params": params.to_dict(), "prompt_version": prompt_version}
            self.cache.put(key, self.inner.cache_identity, request, result.to_dict())
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()
