"""Progress: a live rich bar on a TTY, plain periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable


class Progress:
    def __init__(self, label: str, total: int, *, stats: Callable[[], dict[str, Any]], enabled: bool = True,
                 interval: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stats = stats
        self.enabled = enabled
        self.interval = interval
        self.start = time.monotonic()
        self._last_log = self.start
        self._tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self._tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", extra="")
        return self

    def _line(self) -> tuple[str, str, str]:
        elapsed = max(1e-9, time.monotonic() - self.start)
        rate = self.done / elapsed
        s = self.stats()
        tok_s = s.get("completion_tokens", 0) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (
            f"{rate:.2f} rows/s",
            f"{tok_s:.0f} tok/s, cache hits {s.get('cache_hits', 0)}, failed {s.get('failed', 0)}",
            f"ETA {eta:.0f}s" if eta == eta else "ETA ?",
        )

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            rate, extra, _ = self._line()
            self._bar.update(self._task, completed=self.done, rate=rate, extra=extra)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last_log >= self.interval or self.done == self.total:
                self._last_log = now
                rate, extra, eta = self._line()
                print(f"[{self.label}] {self.done}/{self.total} rows, {rate}, {eta}, {extra}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
