"""The engine with fake clients (no model): crash-and-resume for every row step that calls chat models, the
manifest's times, recycle's structured-output mode decided once per run, and the gate for rows that failed in an
earlier stage."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from conftest import ALPACA, GSM8K_TRAIN
from reflectkit.data.io import read_dataset
from reflectkit.engine import registry
from reflectkit.engine.run import UPSTREAM_FAILED, Run, run_step
from reflectkit.llm.base import ChatResult, RequestFailed
from reflectkit.llm.cache import CachedChatModel


class Crash(BaseException):
    """Stands for a kill: not an Exception, so no layer records it as a row failure."""


class FakeModel:
    """Answers deterministically from a hash of the request; optionally crashes after ``crash_after`` calls and
    rejects some response formats like an endpoint that answers HTTP 400."""

    def __init__(self, crash_after: int | None = None, reject: tuple[str, ...] = ()) -> None:
        self.identity = {"kind": "fake"}
        self.cache_identity = "fake:1"
        self.calls = 0
        self.crash_after = crash_after
        self.reject = reject
        self.formats: list[str | None] = []

    async def chat(self, messages, params) -> ChatResult:
        rf = (params.response_format or {}).get("type")
        if rf in self.reject:
            raise RequestFailed(f"HTTP 400: response_format {rf} is not supported")
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise Crash()
        self.calls += 1
        self.formats.append(rf)
        h = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
        text = '{"critique": "ok", "better_answer": "B' + h + '"}' if rf else f"answer {h}. The answer is 4."
        return ChatResult(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=5)

    async def aclose(self) -> None:
        pass


def _answers(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    rows = [{"id": f"q{i}", "question": f"What is {i} + 2?", "answer": str(i + 2), "response": f"It is {i + 2}."}
            for i in range(6)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def _chat_row_steps() -> list[str]:
    return [n for n, c in registry.all_steps().items()
            if c.kind == "row" and c.model_roles and all(r.kind == "chat" for r in c.model_roles.values())]


def _case(name: str, tmp_path: Path) -> tuple[dict, object]:
    if name == "synthesize":
        return {"answer_field": "answer"}, GSM8K_TRAIN
    if name == "generate":
        return {}, _answers(tmp_path, "evalset.jsonl")
    if name == "judge":
        return {}, [_answers(tmp_path, "answers_a.jsonl"), _answers(tmp_path, "answers_b.jsonl")]
    if name in ("judge-bench", "judge-data"):
        return {}, "llmbar"
    if name == "refine":
        return {}, _answers(tmp_path, "evalset.jsonl")
    return {}, ALPACA


@pytest.mark.parametrize("name", _chat_row_steps())
def test_crash_and_resume_is_byte_identical(name, tmp_path):
    cls = registry.get(name)
    options, input = _case(name, tmp_path)
    step = cls(cls.Options(**options))
    ds = step.read_input(input, limit=6)
    n = len(ds.records)

    def go(out: Path, run_dir: Path, model: FakeModel):
        clients = {r: CachedChatModel(model, None) for r in step.active_roles()}
        return run_step(step, ds, output=out, run_dir=run_dir, concurrency=1, progress=False, clients=clients)

    ref = FakeModel()
    go(tmp_path / "ref.jsonl", tmp_path / "ref", ref)
    crashing = FakeModel(crash_after=ref.calls // 2)  # mid-run, after some rows finished
    with pytest.raises(Crash):
        go(tmp_path / "b.jsonl", tmp_path / "b", crashing)
    assert not (tmp_path / "b.jsonl").exists()
    resumed = FakeModel()
    s = go(tmp_path / "b.jsonl", tmp_path / "b", resumed)
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    # finished rows were not redone (only the row in flight at the crash may be)
    assert s.rows_in == n and resumed.calls < ref.calls <= crashing.calls + resumed.calls


def test_manifest_records_start_and_end_of_each_invocation(tmp_path):
    from reflectkit.recycle.step import RecycleStep

    class Slow(FakeModel):
        async def chat(self, messages, params):
            time.sleep(1.1)
            return await super().chat(messages, params)

    ds = read_dataset(ALPACA).limit(1)
    run_step(RecycleStep(), ds, output=tmp_path / "o.jsonl", run_dir=tmp_path / "r", progress=False,
             clients={"oracle": CachedChatModel(Slow(), None)})
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    inv = m["invocations"]
    assert len(inv) == 1 and inv[0]["status"] == "finished"
    assert inv[0]["finished"] > inv[0]["started"]  # ISO times of one day: string order is time order


def test_structured_mode_is_decided_once_before_the_first_row(tmp_path):
    from reflectkit.recycle.step import RecycleStep

    model = FakeModel(reject=("json_schema",))
    ds = read_dataset(ALPACA).limit(6)
    s = run_step(RecycleStep(structured=True), ds, output=tmp_path / "o.jsonl", run_dir=tmp_path / "r",
                 concurrency=4, progress=False, clients={"oracle": CachedChatModel(model, None)})
    assert s.manifest["structured_mode"] == "json_object"
    assert model.formats and set(model.formats) == {"json_object"}  # the probe and every row: one mode
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert all(r["reflectkit"]["recycle"]["status"] == "rewritten" for r in rows)


def test_structured_mode_is_kept_when_a_run_resumes(tmp_path):
    """A resumed run keeps the mode its first invocation decided, even if the endpoint now accepts another."""
    from reflectkit.recycle.step import RecycleStep

    ds = read_dataset(ALPACA).limit(4)
    kw = dict(output=tmp_path / "o.jsonl", run_dir=tmp_path / "r", concurrency=1, progress=False)
    first = FakeModel(crash_after=3, reject=("json_schema",))  # the probe and two rows, then a crash
    with pytest.raises(Crash):
        run_step(RecycleStep(structured=True), ds, clients={"oracle": CachedChatModel(first, None)}, **kw)
    later = FakeModel()  # accepts json_schema now
    s = run_step(RecycleStep(structured=True), ds, clients={"oracle": CachedChatModel(later, None)}, **kw)
    assert s.manifest["structured_mode"] == "json_object" and set(later.formats) == {"json_object"}
    assert later.calls == 2  # the two rows left; no new probe


def test_rows_failed_upstream_are_gated_with_a_count_and_a_reason(tmp_path):
    from reflectkit.recycle.step import RecycleStep

    src = tmp_path / "in.jsonl"
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}",
             "reflectkit": {"recycle": {"status": "failed" if i == 1 else "rewritten", "reason": "HTTP 500"}}}
            for i in range(3)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = read_dataset(src)
    model = FakeModel()
    s = Run(RecycleStep(), ds, output=tmp_path / "o.jsonl", run_dir=tmp_path / "r", progress=False,
            clients={"oracle": CachedChatModel(model, None)}, gate_failed=True)
    import asyncio

    summary = asyncio.run(s.execute())
    assert summary.counts[UPSTREAM_FAILED] == 1 and summary.rows_out == 2 and model.calls == 2
    from reflectkit.engine.ledger import Ledger

    led = Ledger(tmp_path / "r" / "ledger.sqlite")
    reasons = [res["reason"] for _i, _id, st, res in led.iter_results() if st == UPSTREAM_FAILED]
    led.close()
    assert reasons == ["failed in the earlier stage 'recycle': HTTP 500"]


def test_a_streamed_input_gives_the_same_output_and_resumes_a_whole_read_run(tmp_path):
    """Streaming changes nothing a user sees: same bytes, and a run directory made by reading the file whole resumes
    when the same file is streamed (the fingerprint's row-id digest is the same)."""
    from reflectkit.recycle.step import RecycleStep

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(40)))
    step = RecycleStep(phase="response")

    def go(ds, out, run_dir, model):
        return run_step(step, ds, output=out, run_dir=run_dir, concurrency=4, progress=False,
                        clients={"oracle": CachedChatModel(model, None)})

    ref = FakeModel()
    go(read_dataset(src, stream=False), tmp_path / "ref.jsonl", tmp_path / "ref", ref)
    crashing = FakeModel(crash_after=15)
    with pytest.raises(Crash):
        go(read_dataset(src, stream=False), tmp_path / "b.jsonl", tmp_path / "b", crashing)
    streamed = read_dataset(src, stream=True)
    assert streamed.streamed
    resumed = FakeModel()
    s = go(streamed, tmp_path / "b.jsonl", tmp_path / "b", resumed)
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert s.rows_in == 40 and resumed.calls <= 40 - 15 + 4  # only rows not finished (or in flight) were redone
    assert s.manifest["tokens"] == {"prompt": 400, "completion": 200}  # SQL aggregates over the ledger
