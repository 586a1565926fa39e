"""The engine's side of endpoint verification: a client that names suspect rows and raises ``EndpointDrift``.

The verifying guard itself (canaries against real servers) is tested in tests/verify; here a fake client stands in
for it so that the engine's contract is pinned down on its own: rows answered after the last good check are
recorded as ``suspect`` (never output), the run stops with exit 3, and a re-run redoes exactly those rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import ALPACA
from reflectkit.data.io import read_dataset
from reflectkit.engine.run import run_step
from reflectkit.engine.step import SUSPECT
from reflectkit.errors import UserError
from reflectkit.llm.base import ChatResult, EndpointDrift, current_row
from reflectkit.llm.cache import CachedChatModel


class Verifying:
    """Answers from a hash of the request; after ``drift_at`` calls it "detects drift": every row that called since
    call ``last_good`` is suspect. ``stop=False`` models ``--on-drift mark``."""

    def __init__(self, drift_at: int | None = None, last_good: int = 0, stop: bool = True) -> None:
        self.identity: dict = {"kind": "fake-verifying"}
        self.cache_identity = "fake:verifying"
        self.calls = 0
        self.drift_at, self.last_good, self.stop = drift_at, last_good, stop
        self.rows_by_call: list[int | None] = []

    async def chat(self, messages, params) -> ChatResult:
        self.calls += 1
        self.rows_by_call.append(current_row.get())
        if self.drift_at is not None and self.calls == self.drift_at and self.stop:
            raise EndpointDrift(f"endpoint drift detected at call {self.calls}", call_index=self.calls)
        h = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
        return ChatResult(text=f"answer {h}", finish_reason="stop", prompt_tokens=3, completion_tokens=2)

    def suspects(self) -> dict[int, str]:
        if self.drift_at is None or self.calls < self.drift_at:
            return {}
        return {r: f"answered after the last good canary (call {self.last_good})"
                for r in self.rows_by_call[self.last_good:] if r is not None}

    async def aclose(self) -> None:
        pass


def _run(tmp_path: Path, model: Verifying, out: str = "o.jsonl"):
    from reflectkit.recycle.step import RecycleStep

    ds = read_dataset(ALPACA).limit(6)
    return run_step(RecycleStep(phase="response"), ds, output=tmp_path / out, run_dir=tmp_path / "r",
                     concurrency=1, progress=False, clients={"oracle": CachedChatModel(model, None)})


def test_engine_sets_the_current_row_for_each_call(tmp_path):
    model = Verifying()
    _run(tmp_path, model)
    assert model.rows_by_call == list(range(6))  # one call per row, concurrency 1: in input order
    assert current_row.get() is None  # reset after each row


def test_drift_stops_with_exit_3_marks_suspect_rows_and_a_rerun_redoes_them(tmp_path):
    with pytest.raises(UserError) as err:
        _run(tmp_path, Verifying(drift_at=5, last_good=2))
    assert err.value.exit_code == 3 and "call 5" in str(err.value)
    assert not (tmp_path / "o.jsonl").exists()  # nothing written out as good
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == "stopped: endpoint drift"
    # calls 3 and 4 answered rows 2 and 3 (suspect); call 5 raised; rows 0 and 1 stay done
    assert m["counts"][SUSPECT] == 2 and sum(m["counts"].values()) == 4
    fixed = Verifying()
    s = _run(tmp_path, fixed)
    assert fixed.rows_by_call == [2, 3, 4, 5]  # the suspect rows and the ones never done; rows 0-1 kept
    assert SUSPECT not in s.counts and sum(s.counts.values()) == 6 and s.exit_code == 0


def test_on_drift_mark_leaves_suspect_rows_out_and_exits_3(tmp_path):
    model = Verifying(drift_at=4, last_good=3, stop=False)
    s = _run(tmp_path, model)
    assert s.counts[SUSPECT] == 3 and sum(s.counts.values()) == 6 and s.exit_code == 3
    assert s.rows_out == 3
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 3
