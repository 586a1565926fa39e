"""The LLM-judge stage: verbatim prompts, verdict parsing, the unknown path, resume, embedded and endpoint judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from decontam_inputs import make_inputs

from reflectkit.decontam.api import decontaminate
from reflectkit.decontam.judge import messages, parse_verdict
from reflectkit.engine.ledger import Ledger
from reflectkit.llm.base import ChatResult, Message, RequestFailed, SamplingParams
from reflectkit.llm.cache import CachedChatModel, ResponseCache
from reflectkit.llm.factory import ModelSpec
from reflectkit.prompts import load_prompt_set

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "prompts.json"


def test_paper_prompts_are_verbatim() -> None:
    ref = json.loads(REFERENCE.read_text())["llm_decontaminator"]
    ps = load_prompt_set("decontam", "paper")
    assert ps["system_math"] == ref["system_math"] and ps["system_code"] == ref["system_code"]
    assert ps["user"] == ref["user_template"]
    msgs = messages(ps, "math", "Q {train} 1", "Q2")
    assert msgs[1]["content"] == "part1: \\{\nQ {train} 1\n\\}\npart2: \\{\nQ2\n\\}"  # braces in data stay literal


@pytest.mark.parametrize("text, want", [
    ("True", "True"), ("False", "False"), (" 'true'. ", "True"), ("False, they differ.", "False"),
    ("The answer is True", "True"), ("True or False", "unknown"), ("", "unknown"), ("Maybe.", "unknown"),
    ("I cannot decide whether these two questions are the same or not, sorry", "unknown"),
])
def test_parse_verdict(text: str, want: str) -> None:
    assert parse_verdict(text) == want


class ScriptedJudge:
    """A ChatModel that answers from a script (to drive the unknown and failure paths deterministically)."""

    identity = {"model": "scripted"}
    cache_identity = "scripted"

    def __init__(self, reply: str, fail_first: int = 0) -> None:
        self.reply, self.fail_first, self.calls = reply, fail_first, 0

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RequestFailed("HTTP 503 from the judge (scripted)")
        return ChatResult(self.reply, "stop", 10, 1, "scripted")

    async def aclose(self) -> None:
        pass


def _run(d: dict[str, Any], tmp: Path, model: CachedChatModel, **kw: Any):  # noqa: ANN202
    return decontaminate(d["train"], [str(d["bench"])], tmp / "out.jsonl", ngram=False, llm=True, judge_model=model,
                         bench_mapping=d["bench_map"], threshold=0.99, judge_min_similarity=0.0,
                         run_dir=tmp / "run", mark_only=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("unknown_as", ["contaminated", "clean"])
def test_unknown_verdicts_are_reported_and_never_silently_clean(shared_data, tmp_path, unknown_as) -> None:
    d = make_inputs(shared_data, tmp_path)
    s = _run(d, tmp_path, CachedChatModel(ScriptedJudge("I am not sure."), None), unknown_as=unknown_as)
    rows = [json.loads(x)["reflectkit"]["decontam"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    judged = [r for r in rows if any(m.get("verdict") for m in r.get("matches", []))]
    assert judged and all(m["verdict"] == "unknown" for r in judged for m in r["matches"] if m.get("verdict"))
    assert s.per_benchmark["bench"]["unknown_verdicts"] == s.per_benchmark["bench"]["judged_pairs"] == 12
    for r in judged:
        if "embedding" in r["detectors"]:
            continue  # a near-verbatim copy is flagged by the embedding detector whatever the judge says
        if unknown_as == "contaminated":
            assert r["status"] == "contaminated" and "unknown" in r["reason"]
        else:
            assert r["status"] == "clean" and "unknown" in r["reason"] and "--unknown-as clean" in r["reason"]
    assert "unknown" in s.report_md.read_text()


@pytest.mark.slow
def test_judge_stage_resumes_after_failures_and_matches_an_uninterrupted_run(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    flaky = ScriptedJudge("True", fail_first=5)
    s1 = _run(d, tmp_path, CachedChatModel(flaky, None))  # no response cache: only the pair ledger can resume
    assert s1.failed > 0 and s1.exit_code == 1
    ledger_pairs = flaky.calls - 5
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")  # the judged pairs live in the run's own ledger
    assert len(ledger.keyed("judge_pairs")) == ledger_pairs
    ledger.close()
    s2 = _run(d, tmp_path, CachedChatModel(flaky, None))
    assert s2.failed == 0 and flaky.calls - 5 - ledger_pairs == 5  # only the failed pairs are asked again
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    s3 = decontaminate(d["train"], [str(d["bench"])], fresh_dir / "out.jsonl", ngram=False, llm=True,
                       judge_model=CachedChatModel(ScriptedJudge("True"), None), bench_mapping=d["bench_map"],
                       threshold=0.99, judge_min_similarity=0.0, run_dir=fresh_dir / "run", mark_only=True)
    assert (tmp_path / "out.jsonl").read_bytes() == (fresh_dir / "out.jsonl").read_bytes()
    assert s3.counts == s2.counts


class Killed(Exception):
    """Stands for the process dying mid-judging (not a request failure: nothing catches it)."""


class CrashingJudge(ScriptedJudge):
    def __init__(self, reply: str, crash_at: int) -> None:
        super().__init__(reply)
        self.crash_at = crash_at

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        if self.calls + 1 >= self.crash_at:
            self.calls += 1
            raise Killed("the process died")
        return await super().chat(messages, params)


@pytest.mark.slow
def test_judge_stage_killed_mid_judging_resumes_without_asking_again(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    with pytest.raises(Killed):
        _run(d, tmp_path, CachedChatModel(CrashingJudge("True", crash_at=6), None), concurrency=1)
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    assert len(ledger.keyed("judge_pairs")) == 5 and ledger.counts() == {}  # judged pairs kept, no row yet
    ledger.close()
    again = ScriptedJudge("True")
    s = _run(d, tmp_path, CachedChatModel(again, None), concurrency=1)
    assert s.failed == 0 and again.calls == s.per_benchmark["bench"]["judged_pairs"] - 5
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    decontaminate(d["train"], [str(d["bench"])], fresh / "out.jsonl", ngram=False, llm=True,
                  judge_model=CachedChatModel(ScriptedJudge("True"), None), bench_mapping=d["bench_map"],
                  threshold=0.99, judge_min_similarity=0.0, run_dir=fresh / "run", mark_only=True)
    assert (tmp_path / "out.jsonl").read_bytes() == (fresh / "out.jsonl").read_bytes()


@pytest.mark.slow
def test_embedded_smollm2_judge_end_to_end_and_cached(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    cache = ResponseCache(tmp_path / "cache")
    kw = dict(ngram=False, llm=True, bench_mapping=d["bench_map"], judge_min_similarity=0.8, mark_only=True,
              cache_dir=tmp_path / "cache")
    s = decontaminate(d["train"], [str(d["bench"])], tmp_path / "a.jsonl", run_dir=tmp_path / "ra", **kw)
    assert s.judge_calls >= 1 and len(cache) == s.judge_calls
    report = [json.loads(x) for x in s.report_jsonl.read_text().splitlines()]
    judged = [m for r in report for m in r["matches"] if m.get("verdict")]
    assert judged and all(m["verdict"] == parse_verdict(m["judge_raw"]) for m in judged)
    assert all(m["judge_prompt"] == "knowledge" for m in judged)  # a user file is not gsm8k by name
    s2 = decontaminate(d["train"], [str(d["bench"])], tmp_path / "b.jsonl", run_dir=tmp_path / "rb", **kw)
    assert s2.judge_calls == 0 and s2.cache_hits == s.judge_calls
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.slow
@pytest.mark.server
def test_openai_compatible_judge_via_llama_server(shared_data, tmp_path, llama_server) -> None:
    d = make_inputs(shared_data, tmp_path)
    spec = ModelSpec(model=llama_server.alias, base_url=llama_server.base_url)
    s = decontaminate(d["train"], [str(d["bench"])], tmp_path / "o.jsonl", ngram=False, llm=True, judge=spec,
                      bench_mapping=d["bench_map"], judge_min_similarity=0.8, judge_prompt="math",
                      run_dir=tmp_path / "r", mark_only=True, cache_dir=tmp_path / "c")
    assert s.judge_calls >= 1
    report = [json.loads(x) for x in s.report_jsonl.read_text().splitlines()]
    judged = [m for r in report for m in r["matches"] if m.get("verdict")]
    assert judged and all(m["verdict"] in ("True", "False", "unknown") for m in judged)
    assert all(m["judge_prompt"] == "math" for m in judged)
    manifest = json.loads(s.manifest_path.read_text())
    assert manifest["models"]["judge"] and manifest["prompt_set"]["name"] == "paper"
