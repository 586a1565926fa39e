"""Progress: a live rich bar on a TTY, plain periodic log lines otherwise.

The line shows rows/s, tokens/s, cache hits, failed rows and, when the endpoint has prices (``--price-in`` /
``--price-out`` or the built-in table), the estimated spend so far. The bar is redrawn at most every
``min_redraw_s`` seconds: at thousands of rows per second a redraw per row would cost more than the rows.

Rows already finished by an earlier invocation (resumed from the ledger) are announced with
:meth:`Progress.resume`: they count towards ``done/total`` but not towards the rows/s rate or the ETA, which
describe only the work of this invocation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    def __init__(self, label: str, total: int, *, stats: Callable[[], dict[str, Any]], enabled: bool = True,
                 interval: float = 10.0, min_redraw_s: float = 0.1) -> None:
        self.label = label
        self.total = total
        self.done = 0  # rows finished, resumed ones included (the bar's position)
        self.resumed = 0  # rows finished by an earlier invocation (see resume())
        self.stats = stats
        self.enabled = enabled
        self.interval = interval
        self.start = time.monotonic()
        self._last_log = self.start
        self._last_draw = 0.0
        self.min_redraw_s = min_redraw_s
        self._tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self._tty:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            # The ETA is our own text column: rich's TimeRemainingColumn would derive its speed from every
            # completed-count change, resumed rows included.
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                TextColumn("{task.fields[extra]}"),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", eta="", extra="")
        return self

    @property
    def processed(self) -> int:
        """Rows finished by this invocation (``done`` minus the resumed rows)."""
        return self.done - self.resumed

    def rate(self) -> float:
        """Rows per second processed by this invocation (resumed rows excluded)."""
        elapsed = max(1e-9, time.monotonic() - self.start)
        return self.processed / elapsed

    def eta(self) -> float:
        """Seconds until ``total`` at this invocation's rate; NaN while no row has been processed yet."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else float("nan")

    def _line(self) -> tuple[str, str, str]:
        elapsed = max(1e-9, time.monotonic() - self.start)
        s = self.stats()
        tok_s = s.get("completion_tokens", 0) / elapsed
        eta = self.eta()
        spent = s.get("spent")
        spend = f", spent ${spent:.4f}" if spent is not None else ""
        return (
            f"{self.rate():.2f} rows/s",
            f"{tok_s:.0f} tok/s, cache hits {s.get('cache_hits', 0)}, failed {s.get('failed', 0)}{spend}",
            f"ETA {eta:.0f}s" if eta == eta else "ETA ?",
        )

    def resume(self, n: int) -> None:
        """Count ``n`` rows that an earlier invocation already finished (read from the ledger on resume).

        Call it once, before any :meth:`advance`. The rows move the bar (``done``) but are excluded from the rows/s
        rate and the ETA, which only measure rows processed by this invocation.
        """
        if n < 0:
            raise ValueError(f"resume(n): n must be >= 0, got {n}")
        self.resumed += n
        self.done += n
        self._refresh(force=self.done == self.total)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` rows processed by this invocation (they count towards the rate and the ETA)."""
        self.done += n
        self._refresh(force=self.done == self.total)

    def _refresh(self, *, force: bool) -> None:
        if self._bar is not None:
            now = time.monotonic()
            if not force and now - self._last_draw < self.min_redraw_s:
                return
            self._last_draw = now
            rate, extra, eta = self._line()
            self._bar.update(self._task, completed=self.done, rate=rate, eta=eta, extra=extra)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last_log >= self.interval or force:
                self._last_log = now
                rate, extra, eta = self._line()
                extra_resumed = f" ({self.resumed} resumed)" if self.resumed else ""
                print(f"[{self.label}] {self.done}/{self.total} rows{extra_resumed}, {rate}, {eta}, {extra}",
                      file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
