"""Progress: resumed rows move the bar but not the rows/s rate or the ETA."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

import reflectkit.engine.progress as progress_mod
from reflectkit.engine.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(progress_mod, "time", SimpleNamespace(monotonic=c))  # only progress.py sees the fake clock
    return c


def _stats() -> dict:
    return {"completion_tokens": 0, "cache_hits": 0, "failed": 0}


def test_resumed_rows_do_not_count_towards_rate_or_eta(clock: FakeClock) -> None:
    with Progress("step", 100, stats=_stats, enabled=False) as prog:
        prog.resume(90)
        assert prog.done == 90 and prog.resumed == 90 and prog.processed == 0
        assert prog.rate() == 0 and math.isnan(prog.eta())
        clock.t += 10
        prog.advance(5)  # 5 rows in 10 s of this invocation
        assert prog.done == 95 and prog.processed == 5
        assert prog.rate() == pytest.approx(0.5)
        assert prog.eta() == pytest.approx(10.0)  # 5 rows left at 0.5 rows/s


def test_advance_only_counts_every_row(clock: FakeClock) -> None:
    prog = Progress("step", 100, stats=_stats, enabled=False)
    clock.t += 20
    prog.advance(10)
    prog.advance()
    assert prog.done == 11 and prog.resumed == 0 and prog.processed == 11
    assert prog.rate() == pytest.approx(11 / 20)
    assert prog.eta() == pytest.approx(89 / (11 / 20))


def test_same_work_gives_the_same_rate_with_or_without_resumed_rows(clock: FakeClock) -> None:
    fresh = Progress("a", 1000, stats=_stats, enabled=False)
    resumed = Progress("b", 1000, stats=_stats, enabled=False)
    resumed.resume(900)
    clock.t += 4
    fresh.advance(8)
    resumed.advance(8)
    assert fresh.rate() == resumed.rate() == pytest.approx(2.0)
    assert resumed.eta() == pytest.approx(92 / 2.0)
    assert fresh.eta() == pytest.approx(992 / 2.0)


def test_log_line_reports_this_invocations_rate(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    prog = Progress("recycle", 10, stats=_stats, enabled=True, interval=1.0)
    prog._tty = False  # plain log lines even when the test runs on a terminal
    prog.resume(8)
    clock.t += 2
    prog.advance(2)  # reaches total: always logged
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("[recycle] 10/10 rows (8 resumed), 1.00 rows/s, ETA 0s")


def test_resume_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        Progress("x", 3, stats=_stats, enabled=False).resume(-1)


def test_rich_bar_shows_this_invocations_rate(clock: FakeClock) -> None:
    pytest.importorskip("rich")
    prog = Progress("step", 100, stats=_stats, enabled=True)
    prog._tty = True  # force the rich bar path
    with prog:
        prog.resume(50)
        clock.t += 5
        prog.advance(10)
        task = prog._bar.tasks[0]
        assert task.completed == 60
        assert task.fields["rate"] == "2.00 rows/s"
        assert task.fields["eta"] == "ETA 20s"
