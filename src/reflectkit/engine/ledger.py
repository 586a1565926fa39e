"""The per-row ledger: a SQLite file in the run directory that makes resume exact.

Each finished row is committed in its own transaction, so a SIGKILL at any moment loses at most the rows
in flight, never a finished one, and never leaves a row half-written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from reflectkit.errors import UserError


class FingerprintMismatch(UserError):
    """The run directory holds another run (other input, options or model)."""


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS rows (idx INTEGER PRIMARY KEY, id TEXT NOT NULL, status TEXT NOT NULL, "
            "result TEXT NOT NULL, updated REAL NOT NULL)"
        )

    # -- meta
    def get_meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(value)))

    def check_fingerprint(self, fingerprint: str, run_dir: Path) -> None:
        have = self.get_meta("fingerprint")
        if have is None:
            self.set_meta("fingerprint", fingerprint)
        elif have != fingerprint:
            raise FingerprintMismatch(
                f"run directory {run_dir} (--run-dir) holds a different run (other input, options or model); "
                "use another --run-dir, or --restart to discard it"
            )

    # -- rows
    def put(self, idx: int, row_id: str, status: str, result: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?)",
            (idx, row_id, status, json.dumps(result, ensure_ascii=False, sort_keys=True), time.time()),
        )

    def put_many(self, items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        now = time.time()
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?)",
                [(i, rid, st, json.dumps(res, ensure_ascii=False, sort_keys=True), now) for i, rid, st, res in items],
            )

    def statuses(self) -> dict[int, str]:
        return {i: s for i, s in self._conn.execute("SELECT idx, status FROM rows")}

    def get(self, idx: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT result FROM rows WHERE idx=?", (idx,)).fetchone()
        return json.loads(row[0]) if row else None

    def iter_results(self) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
        for idx, rid, status, result in self._conn.execute("SELECT idx, id, status, result FROM rows ORDER BY idx"):
            yield idx, rid, status, json.loads(result)

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self._conn.execute("SELECT status, COUNT(*) FROM rows GROUP BY status ORDER BY status")}

    def keyed(self, table: str) -> "KeyedStore":
        """A key -> JSON table beside the rows, for resumable work that is not one dataset row."""
        return KeyedStore(self._conn, table)

    def close(self) -> None:
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
