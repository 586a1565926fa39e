"""The per-row SQLite ledger: writes, statuses, counts, ordering, fingerprints and durability across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectkit.engine.ledger import Ledger
from reflectkit.errors import UserError


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger(tmp_path / "run" / "ledger.sqlite")
    yield led
    led.close()


def test_creates_parent_dir_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    led = Ledger(path)
    try:
        assert path.exists()
        assert led.statuses() == {} and led.counts() == {} and list(led.iter_results()) == []
        assert led.get(0) is None
    finally:
        led.close()


def test_put_and_get_round_trip_json(ledger: Ledger) -> None:
    result = {"text": "café ✓", "n": [1, 2], "nested": {"ok": True}}
    ledger.put(3, "row-3", "ok", result)
    assert ledger.get(3) == result
    assert ledger.statuses() == {3: "ok"}


def test_put_replaces_an_earlier_result_for_the_same_row(ledger: Ledger) -> None:
    ledger.put(0, "r0", "failed", {"error": "timeout"})
    ledger.put(0, "r0", "ok", {"text": "done"})
    assert ledger.statuses() == {0: "ok"}
    assert ledger.get(0) == {"text": "done"}
    assert ledger.counts() == {"ok": 1}


def test_put_many_statuses_and_counts(ledger: Ledger) -> None:
    ledger.put_many([(i, f"r{i}", "ok" if i % 3 else "failed", {"i": i}) for i in range(10)])
    ledger.put(10, "r10", "skipped", {})
    statuses = ledger.statuses()
    assert statuses == {**{i: ("ok" if i % 3 else "failed") for i in range(10)}, 10: "skipped"}
    assert ledger.counts() == {"failed": 4, "ok": 6, "skipped": 1}
    assert list(ledger.counts()) == sorted(ledger.counts())  # ordered by status name


def test_put_many_with_nothing_is_a_no_op(ledger: Ledger) -> None:
    ledger.put_many([])
    assert ledger.counts() == {}


def test_iter_results_is_in_row_order_whatever_the_write_order(ledger: Ledger) -> None:
    order = [7, 2, 9, 0, 5]
    for i in order[:3]:
        ledger.put(i, f"id{i}", "ok", {"i": i})
    ledger.put_many([(i, f"id{i}", "failed", {"i": i}) for i in order[3:]])
    rows = list(ledger.iter_results())
    assert [r[0] for r in rows] == sorted(order)
    for idx, rid, status, res in rows:
        assert rid == f"id{idx}" and res == {"i": idx}
        assert status == ("ok" if idx in order[:3] else "failed")


def test_meta_round_trip(ledger: Ledger) -> None:
    assert ledger.get_meta("missing") is None
    ledger.set_meta("config", {"a": [1, 2], "b": None})
    assert ledger.get_meta("config") == {"a": [1, 2], "b": None}
    ledger.set_meta("config", 5)
    assert ledger.get_meta("config") == 5


def test_check_fingerprint_records_then_accepts_same_and_refuses_other(tmp_path: Path, ledger: Ledger) -> None:
    run_dir = tmp_path / "run"
    ledger.check_fingerprint("fp-1", run_dir)
    assert ledger.get_meta("fingerprint") == "fp-1"
    ledger.check_fingerprint("fp-1", run_dir)  # same run: fine
    with pytest.raises(UserError) as exc:
        ledger.check_fingerprint("fp-2", run_dir)
    assert str(run_dir) in str(exc.value) and "--restart" in str(exc.value)
    assert exc.value.exit_code == 2
    assert ledger.get_meta("fingerprint") == "fp-1"  # the mismatch did not overwrite it


def test_reopen_after_close_keeps_rows_meta_and_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    led = Ledger(path)
    led.check_fingerprint("fp", tmp_path)
    led.put(1, "r1", "ok", {"x": 1})
    led.put_many([(0, "r0", "failed", {"e": "boom"}), (2, "r2", "ok", {"x": 2})])
    led.keyed("plan").put("k", {"v": 1})
    led.close()

    again = Ledger(path)
    try:
        assert again.statuses() == {0: "failed", 1: "ok", 2: "ok"}
        assert again.counts() == {"failed": 1, "ok": 2}
        assert [r[:3] for r in again.iter_results()] == [(0, "r0", "failed"), (1, "r1", "ok"), (2, "r2", "ok")]
        assert again.get(0) == {"e": "boom"}
        again.check_fingerprint("fp", tmp_path)
        with pytest.raises(UserError):
            again.check_fingerprint("other", tmp_path)
        store = again.keyed("plan")
        assert store.get("k") == {"v": 1} and len(store) == 1
    finally:
        again.close()


def test_keyed_store(ledger: Ledger) -> None:
    store = ledger.keyed("clusters")
    assert store.get("a") is None and len(store) == 0
    store.put("a", [1, 2])
    store.put("a", [3])
    store.put("b", {"z": 1})
    assert store.get("a") == [3] and len(store) == 2
    assert ledger.keyed("other").get("a") is None  # tables are separate
    with pytest.raises(ValueError):
        ledger.keyed("bad name; DROP TABLE rows")
