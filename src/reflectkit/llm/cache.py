"""A content-addressed SQLite cache of LLM responses.

The key is a sha256 of (model identity, messages, sampling parameters, prompt-set version). For an endpoint the
model identity includes its *verified* identity (``openai-compatible:NAME#IDHASH``, a hash of its canary answers and
tokenizer signature, see :mod:`reflectkit.verify.guard`), so two endpoints that claim one name but answer
differently never share entries. Every entry records its producer (identity hash, endpoint host, date); a run
that replays entries says whose they are. Identical requests are never paid for twice; the cache can be exported
to a JSONL file and imported elsewhere (producers travel with the entries; exports without them still import),
so that a published dataset can be replayed by anyone without access to the oracle. API keys are never part of a
request, a key or a producer record.
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
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(responses)").fetchall()}
            if "producer" not in cols:  # caches written before producers were recorded
                try:
                    self._conn.execute("ALTER TABLE responses ADD COLUMN producer TEXT")
                except sqlite3.OperationalError:  # another process added it meanwhile
                    pass
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cache directory {self.dir} (--cache-dir / {ENV_CACHE_DIR}) is not usable: {exc}") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self.get_entry(key)
        return hit[0] if hit else None

    def get_entry(self, key: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """(response, producer) of ``key``; producer is None for entries recorded before producers were."""
        with self._lock:
            row = self._conn.execute("SELECT response, producer FROM responses WHERE key=?", (key,)).fetchone()
        if not row:
            return None
        return json.loads(row[0]), (json.loads(row[1]) if row[1] else None)

    def put(self, key: str, model: str, request: dict[str, Any], response: dict[str, Any],
            producer: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, model, request, response, created, producer) "
                "VALUES (?,?,?,?,?,?)",
                (key, model, json.dumps(request, ensure_ascii=False), json.dumps(response, ensure_ascii=False),
                 time.time(), json.dumps(producer, ensure_ascii=False) if producer else None),
            )

    def delete(self, keys: list[str]) -> int:
        """Remove entries (answers of an endpoint that drifted); returns how many were there."""
        if not keys:
            return 0
        with self._lock:
            cur = self._conn.executemany("DELETE FROM responses WHERE key=?", [(k,) for k in keys])
        return int(cur.rowcount or 0)

    def identities(self, prefix: str) -> list[str]:
        """The model identities in the cache that start with ``prefix``, the most used first."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            rows = self._conn.execute(
                "SELECT model, COUNT(*) AS n FROM responses WHERE model LIKE ? ESCAPE '\\' GROUP BY model "
                "ORDER BY n DESC, model", (like,)).fetchall()
        return [r[0] for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def iter_entries(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, model, request, response, producer FROM responses ORDER BY key").fetchall()
        for key, model, request, response, producer in rows:
            entry = {"key": key, "model": model, "request": json.loads(request), "response": json.loads(response)}
            if producer:  # the export format grows by one optional field; older readers ignore it
                entry["producer"] = json.loads(producer)
            yield entry

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
                producer = e.get("producer") if isinstance(e.get("producer"), dict) else None
                with self._lock:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO responses (key, model, request, response, created, producer) "
                        "VALUES (?,?,?,?,?,?)",
                        (key, e["model"], json.dumps(req, ensure_ascii=False),
                         json.dumps(e["response"], ensure_ascii=False), time.time(),
                         json.dumps(producer, ensure_ascii=False) if producer else None),
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


def producer_of(inner: Any) -> dict[str, Any]:
    """Who produces the responses of ``inner``: its verified identity hash (endpoints) or its cache identity
    (local models), the endpoint's host, and the date. Never a key, never a URL path."""
    ident = getattr(inner, "identity", None) or {}
    ver = ident.get("verification") or {}
    host = ver.get("host")
    if host is None:
        host = "local" if not ident.get("base_url") else _host(str(ident.get("base_url")))
    return {"identity": ver.get("identity_hash") or getattr(inner, "cache_identity", "?"), "host": host,
            "date": time.strftime("%Y-%m-%d")}


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")


def _short(identity: str) -> str:
    return identity[:12] + "…" if len(identity) > 13 else identity


class CachedChatModel:
    """Wraps a ChatModel with the response cache. Counts cache hits and real calls, and whose entries it replayed.

    ``cache_only=True`` replays a cache without any endpoint: a miss fails the row instead of calling out. Since an
    endpoint's verified identity is unknown without calling it, a replay looks the request up under every identity
    the cache holds for the same model name (the most used first) and reports the producer of what it replayed.
    """

    def __init__(self, inner: ChatModel, cache: ResponseCache | None, *, cache_only: bool = False) -> None:
        self.inner = inner
        self.cache = cache
        self.cache_only = cache_only
        self.hits = 0
        self.misses = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        #: (identity, host, date) of replayed entries -> count; None identity = recorded before producers were
        self.replayed: dict[tuple[str | None, str | None, str | None], int] = {}
        self._alternates: list[str] | None = None
        #: (completed-call number, key) of entries stored since the endpoint's last good canary: if it drifts,
        #: they were possibly answered by another model under the verified identity, so they are removed
        self._unverified: list[tuple[int, str]] = []
        self.dropped = 0
        listeners = getattr(inner, "listeners", None)
        if isinstance(listeners, list):
            listeners.append(self)

    def verified(self, seq: int) -> None:
        self._unverified = [(s, k) for s, k in self._unverified if s > seq]

    def drifted(self) -> None:
        if self.cache is not None:
            self.dropped += self.cache.delete([k for _s, k in self._unverified])
        self._unverified = []

    @property
    def identity(self) -> dict[str, Any]:
        ident = dict(self.inner.identity)
        if self.hits or self.misses:
            ident["cache"] = self.cache_record()
        return ident

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    def cache_record(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "line": self.cache_line(), "dropped_after_drift": self.dropped,
                "replayed": [{"identity": i, "host": h, "date": d, "responses": n}
                             for (i, h, d), n in sorted(self.replayed.items(), key=lambda kv: -kv[1])]}

    def cache_line(self) -> str | None:
        """"412 of 500 responses from cache, produced by identity ab12… at host X on DATE" (None without hits)."""
        if not self.hits:
            return None
        total = self.hits + self.misses
        parts = []
        for (ident, host, date), n in sorted(self.replayed.items(), key=lambda kv: -kv[1]):
            who = f"identity {_short(ident)} at host {host} on {date}" if ident else "an unrecorded producer (older cache)"
            parts.append(f"{n} by {who}" if len(self.replayed) > 1 else who)
        return f"{self.hits} of {total} responses from cache, produced by {'; '.join(parts)}"

    def _lookup(self, messages: list[Message], params: SamplingParams, prompt_version: str
                ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        assert self.cache is not None
        hit = self.cache.get_entry(cache_key(self.inner.cache_identity, messages, params, prompt_version))
        if hit is not None or not self.cache_only:
            return hit
        if self._alternates is None:  # replay without the endpoint: its verified identities for this name
            base = self.inner.cache_identity.split("#", 1)[0]
            self._alternates = [i for i in self.cache.identities(base + "#") if i != self.inner.cache_identity]
        for ident in self._alternates:
            hit = self.cache.get_entry(cache_key(ident, messages, params, prompt_version))
            if hit is not None:
                return hit
        return None

    async def chat(self, messages: list[Message], params: SamplingParams, *, prompt_version: str = "") -> ChatResult:
        key = cache_key(self.inner.cache_identity, messages, params, prompt_version)
        if self.cache is not None:
            hit = self._lookup(messages, params, prompt_version)
            if hit is not None:
                self.hits += 1
                p = hit[1] or {}
                who = (p.get("identity"), p.get("host"), p.get("date"))
                self.replayed[who] = self.replayed.get(who, 0) + 1
                return ChatResult.from_dict(hit[0], cached=True)
        if self.cache_only:
            raise RequestFailed("response not in the cache (--cache-only replay)")
        self.misses += 1
        result = await self.inner.chat(messages, params)
        seq = getattr(self.inner, "completed_calls", None)  # read before any await: this call's number
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if self.cache is not None and not getattr(self.inner, "in_drift", False):
            request = {"messages": messages, "params": params.to_dict(), "prompt_version": prompt_version}
            self.cache.put(key, self.inner.cache_identity, request, result.to_dict(), producer_of(self.inner))
            if isinstance(seq, int):
                self._unverified.append((seq, key))
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()
