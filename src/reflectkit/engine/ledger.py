"""The per-row ledger: a SQLite file in the run directory that makes resume exact.

Finished rows are committed in small groups (:meth:`Ledger.add`: every ``group_rows`` rows or ``group_ms``
milliseconds, whichever comes first), each group in one ``synchronous=FULL`` transaction. A SIGKILL therefore
loses at most the rows finished since the last commit (they are redone on re-run, from the response cache), never
a committed row, and never leaves a row half-written or twice: a row is one ``INSERT OR REPLACE`` keyed by its
position, and a transaction is all or nothing. :meth:`Ledger.put` and :meth:`Ledger.put_many` still commit at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reflectkit.errors import UserError

#: group commit defaults: one fsync per this many rows or this many milliseconds, whichever comes first
GROUP_ROWS = 256
GROUP_MS = 200.0


class FingerprintMismatch(UserError):
    """The run directory holds another run (other input, options or model)."""


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, sort_keys=True)


class Ledger:
    def __init__(self, path: Path, *, group_rows: int = GROUP_ROWS, group_ms: float = GROUP_MS) -> None:
        self.path = path
        self.group_rows = max(1, group_rows)
        self.group_s = max(0.0, group_ms) / 1000.0
        path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used by the event loop's thread and, for group commits off the loop, by a worker thread:
        # every use holds ``_lock``
        self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=60, check_same_thread=False)
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS rows (idx INTEGER PRIMARY KEY, id TEXT NOT NULL, status TEXT NOT NULL, "
            "result TEXT NOT NULL, updated REAL NOT NULL)"
        )
        # which endpoint(s) answered each row (a fleet): kept beside the result, not in it, because the output
        # must stay byte-identical whichever endpoint answered
        self._conn.execute("CREATE TABLE IF NOT EXISTS row_endpoints (idx INTEGER PRIMARY KEY, endpoints TEXT NOT NULL)")
        self._pending: list[tuple[int, str, str, str, float]] = []
        self._pending_endpoints: list[tuple[int, str]] = []
        self._pending_meta: dict[str, str] = {}
        self._first_pending = 0.0
        #: True while the engine commits groups from its own timer task (:meth:`aflush`); add() then never blocks
        self.deferred = False
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        self._inflight: concurrent.futures.Future[None] | None = None
        self.commits = 0  # group commits done (for tests and benchmarks)

    # -- meta
    def get_meta(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(value)))

    def set_meta_with_next_group(self, key: str, value: Any) -> None:
        """Store ``key`` in the same transaction as the next group of rows (no commit of its own)."""
        self._pending_meta[key] = json.dumps(value)

    def check_fingerprint(self, fingerprint: str, run_dir: Path) -> None:
        have = self.get_meta("fingerprint")
        if have is None:
            self.set_meta("fingerprint", fingerprint)
        elif have != fingerprint:
            raise FingerprintMismatch(
                f"run directory {run_dir} (--run-dir) holds a different run (other input, options or model); "
                "use another --run-dir, or --restart to discard it"
            )

    # -- rows: group commit
    def add(self, idx: int, row_id: str, status: str, result: dict[str, Any],
            endpoints: list[str] | None = None) -> bool:
        """Buffer one finished row; commit the group when it is full or old enough (unless ``deferred``: then
        the engine's timer commits it). Returns True when the group is due."""
        if not self._pending:
            self._first_pending = time.monotonic()
        self._pending.append((idx, row_id, status, _dumps(result), time.time()))
        if endpoints:
            self._pending_endpoints.append((idx, json.dumps(endpoints)))
        due = len(self._pending) >= self.group_rows or time.monotonic() - self._first_pending >= self.group_s
        if due and not self.deferred:
            self.flush()
        return due

    def due(self) -> bool:
        """True when the buffered rows fill a group or are older than the group window."""
        return bool(self._pending) and (len(self._pending) >= self.group_rows
                                        or time.monotonic() - self._first_pending >= self.group_s)

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def _take(self) -> tuple[list[Any], list[Any], dict[str, str]] | None:
        if not self._pending and not self._pending_meta:
            return None
        batch = (self._pending, self._pending_endpoints, self._pending_meta)
        self._pending, self._pending_endpoints, self._pending_meta = [], [], {}
        return batch

    def _commit(self, rows: list[Any], eps: list[Any], meta: dict[str, str]) -> None:
        with self._lock, self._conn:
            self._conn.execute("BEGIN")
            if rows:
                self._conn.executemany("INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?)", rows)
            if eps:
                self._conn.executemany("INSERT OR REPLACE INTO row_endpoints VALUES (?,?)", eps)
            if meta:
                self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", list(meta.items()))
        self.commits += 1

    def _wait_inflight(self) -> None:
        fut, self._inflight = self._inflight, None
        if fut is not None:
            fut.result()  # a group committing in the background is durable before anything reads or commits

    def flush(self) -> None:
        """Commit the buffered rows in one transaction (nothing to do when none are buffered)."""
        self._wait_inflight()
        batch = self._take()
        if batch is not None:
            self._commit(*batch)

    async def aflush(self) -> None:
        """:meth:`flush` in a worker thread, so that the fsync does not stall the event loop (rows keep arriving
        in a new group meanwhile). Every later read or flush waits for it, even if this coroutine is cancelled."""
        if self._inflight is not None:
            await asyncio.wrap_future(self._inflight)
            self._inflight = None
        batch = self._take()
        if batch is None:
            return
        if self._committer is None:
            self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ledger-commit")
        self._inflight = self._committer.submit(self._commit, *batch)
        await asyncio.wrap_future(self._inflight)
        self._inflight = None

    # -- rows: immediate
    def put(self, idx: int, row_id: str, status: str, result: dict[str, Any]) -> None:
        self.flush()
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?)",
                               (idx, row_id, status, _dumps(result), time.time()))

    def put_many(self, items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        self.flush()
        now = time.time()
        with self._lock, self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?)",
                [(i, rid, st, _dumps(res), now) for i, rid, st, res in items],
            )

    def _all(self, sql: str, params: Any = ()) -> list[Any]:
        self._wait_inflight()
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- reads (each commits the buffered rows first, so a read never misses a finished row)
    def statuses(self) -> dict[int, str]:
        self.flush()
        return {i: s for i, s in self._all("SELECT idx, status FROM rows")}

    def statuses_of(self, indices: list[int]) -> dict[int, str]:
        """The statuses of the given rows only (for a few rows out of millions)."""
        self.flush()
        out: dict[int, str] = {}
        for start in range(0, len(indices), 500):
            chunk = indices[start:start + 500]
            q = f"SELECT idx, status FROM rows WHERE idx IN ({','.join('?' * len(chunk))})"
            out.update({i: s for i, s in self._all(q, chunk)})
        return out

    def statuses_between(self, lo: int, hi: int) -> dict[int, str]:
        """The statuses of rows ``lo..hi`` (one window of a streamed run)."""
        self.flush()
        return dict(self._all("SELECT idx, status FROM rows WHERE idx BETWEEN ? AND ?", (lo, hi)))

    def iter_statuses(self) -> Iterator[tuple[int, str]]:
        """(idx, status) in row order, streamed (flat memory)."""
        self.flush()
        cur = self._conn.cursor()
        cur.execute("SELECT idx, status FROM rows ORDER BY idx")
        while batch := cur.fetchmany(4096):
            yield from batch

    def count_where(self, statuses_not_in: tuple[str, ...]) -> int:
        self.flush()
        q = f"SELECT COUNT(*) FROM rows WHERE status NOT IN ({','.join('?' * len(statuses_not_in))})"
        return int(self._all(q, statuses_not_in)[0][0])

    def get(self, idx: int) -> dict[str, Any] | None:
        self.flush()
        rows = self._all("SELECT result FROM rows WHERE idx=?", (idx,))
        return json.loads(rows[0][0]) if rows else None

    def iter_results(self) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        """Every row's result in row order, streamed from SQLite in batches (flat memory)."""
        self.flush()
        cur = self._conn.cursor()
        cur.execute("SELECT idx, id, status, result FROM rows ORDER BY idx")
        while batch := cur.fetchmany(1024):
            for idx, rid, status, result in batch:
                yield idx, rid, status, json.loads(result)

    def counts(self) -> dict[str, int]:
        self.flush()
        return {s: n for s, n in self._all("SELECT status, COUNT(*) FROM rows GROUP BY status ORDER BY status")}

    def token_sums(self) -> dict[str, int]:
        """Prompt and completion tokens summed over every row's result, by SQL (no row is loaded)."""
        self.flush()
        p, c = self._all(
            "SELECT COALESCE(SUM(json_extract(result, '$.prompt_tokens')), 0), "
            "COALESCE(SUM(json_extract(result, '$.completion_tokens')), 0) FROM rows")[0]
        return {"prompt": int(p or 0), "completion": int(c or 0)}

    def endpoints(self) -> dict[int, list[str]]:
        """Which endpoint(s) answered each row that called one (rows answered from the cache have none)."""
        self.flush()
        return {i: json.loads(e) for i, e in self._all("SELECT idx, endpoints FROM row_endpoints ORDER BY idx")}

    def endpoint_counts(self) -> dict[str, int]:
        """Rows answered per endpoint (a row answered by two endpoints, after a retry, counts for both)."""
        self.flush()
        out: dict[str, int] = {}
        for eps, n in self._all("SELECT endpoints, COUNT(*) FROM row_endpoints GROUP BY endpoints"):
            for e in dict.fromkeys(json.loads(eps)):
                out[e] = out.get(e, 0) + int(n)
        return dict(sorted(out.items()))

    def keyed(self, table: str) -> KeyedStore:
        """A key -> JSON table beside the rows, for resumable work that is not one dataset row."""
        self.flush()
        return KeyedStore(self._conn, table)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._committer is not None:
                self._committer.shutdown(wait=True)
            self._conn.close()


class KeyedStore:
    """A keyed table in the ledger's database (same durability: each ``put`` is its own transaction)."""

    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"ledger table name must be an identifier, got {table!r}")
        self._conn = conn
        self.table = f"kv_{table}"
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> Any:
        row = self._conn.execute(f"SELECT value FROM {self.table} WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._conn.execute(f"INSERT OR REPLACE INTO {self.table} VALUES (?,?)",
                           (key, json.dumps(value, ensure_ascii=False, sort_keys=True)))

    def __len__(self) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])
