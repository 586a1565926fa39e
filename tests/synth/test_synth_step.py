"""The synth step: retries with distinct seeds, verification, keep/drop of unverified rows, statistics.

The control-flow tests drive the real engine, cache and step with a scripted chat model (the 135M oracle never
produces the Reflection format, so it cannot exercise the verified path); ``test_cli_real_oracle`` runs the real
embedded oracle end to end through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import GSM8K_TRAIN, run_cli

from reflectkit.data.io import read_dataset
from reflectkit.engine.run import run_step
from reflectkit.llm.base import ChatResult, Message, SamplingParams
from reflectkit.llm.cache import CachedChatModel, ResponseCache
from reflectkit.synth.step import SynthOptions, SynthStep


class ScriptedModel:
    """Answers by (question keyword, seed): a deterministic stand-in for an oracle."""

    identity = {"kind": "scripted"}
    cache_identity = "scripted:v1"

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.calls = 0
        self.seen: list[tuple[int | None, float]] = []

    async def chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        self.calls += 1
        self.seen.append((params.seed, params.temperature))
        user = messages[-1]["content"]
        key = next(k for k in self.script if k in user)
        answers = self.script[key]
        return ChatResult(text=answers[min(params.seed or 0, len(answers) - 1)], finish_reason="stop")

    async def aclose(self) -> None:
        return None


def _data(tmp_path: Path) -> Path:
    rows = [
        {"question": "apples: 2 + 3?", "answer": "2 + 3 = 5\n#### 5"},
        {"question": "pears: 10 - 4?", "answer": "10 - 4 = 6\n#### 6"},
        {"question": "plums: 7 * 2?", "answer": "7 * 2 = 14\n#### 14"},
        {"question": "figs: 9 / 3?", "answer": "#### 3"},
    ]
    p = tmp_path / "mini.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


SCRIPT = {
    # verified at once
    "apples": ["<thinking>2+3=5</thinking><output>5</output>"],
    # malformed, then wrong, then right with a reflection
    "pears": ["6", "<thinking>10-4=5</thinking><output>5</output>",
              "<thinking>10-4=5 <reflection>no, 6</reflection></thinking><output>The answer is 6.</output>"],
    # always wrong: unverified
    "plums": ["<thinking>7*2=15</thinking><output>15</output>"],
    # never well formed
    "figs": ["<output>3</output>", "<thinking>3</thinking>"],
}


def _run(tmp_path: Path, cache: ResponseCache, model: ScriptedModel, keep: bool, run_dir: str) -> Any:
    ds = read_dataset(_data(tmp_path), mapping={"instruction": "question"}, require_output=False)
    step = SynthStep(SynthOptions(answer_field="answer", max_attempts=3, keep_unverified=keep))
    return run_step(step, ds, output=tmp_path / f"{run_dir}.jsonl", run_dir=tmp_path / run_dir, progress=False,
                    clients={"oracle": CachedChatModel(model, cache)})


def test_retries_verification_and_stats(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    model = ScriptedModel(SCRIPT)
    s = _run(tmp_path, cache, model, keep=False, run_dir="r1")
    assert s.counts == {"verified": 2, "unverified": 1, "malformed": 1}
    rows = [json.loads(line) for line in (tmp_path / "r1.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == ["apples: 2 + 3?", "pears: 10 - 4?"]  # unverified + malformed dropped
    pears = rows[1]["reflectkit"]["synth"]
    assert pears["status"] == "verified" and pears["attempts"] == 3 and pears["reflections"] == 1
    assert [a["result"] for a in pears["attempt_log"]] == ["malformed", "mismatch", "verified"]
    assert rows[1]["output"].startswith("<thinking>10-4=5 <reflection>")
    assert rows[1]["answer"] == "10 - 4 = 6\n#### 6"  # reference column untouched
    # attempt 0 greedy, retries at temperature > 0 with distinct seeds
    assert sorted(set(model.seen)) == [(0, 0.0), (1, 0.7), (2, 0.7)]
    st = s.manifest["synthesis"]
    assert st["verified"] == 2 and st["rows_checked"] == 4 and st["verification_rate"] == 0.5
    assert st["attempts_per_verified"] == 2.0  # (1 + 3) / 2
    assert st["oracle_attempts_total"] == 1 + 3 + 3 + 3
    assert st["oracle_calls_per_verified"] == 5.0
    rejected = [json.loads(x) for x in (tmp_path / "r1" / "synth_rejected.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rejected} == {"unverified", "malformed"}
    assert all(r["reason"] for r in rejected)
    # a second run with the same cache: every attempt is its own cache entry, so nothing is called again
    model2 = ScriptedModel(SCRIPT)
    s2 = _run(tmp_path, cache, model2, keep=True, run_dir="r2")
    assert model2.calls == 0 and s2.cache_hits == 10
    rows2 = [json.loads(line) for line in (tmp_path / "r2.jsonl").read_text().splitlines()]
    plums = next(r for r in rows2 if r["question"].startswith("plums"))["reflectkit"]["synth"]
    assert plums["status"] == "unverified" and "did not match the reference '14'" in plums["reason"]


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    from reflectkit.errors import UserError

    with pytest.raises(UserError, match="--format"):
        SynthOptions(format="xml")
    with pytest.raises(UserError, match="--temperature"):
        SynthOptions(temperature=0.0, max_attempts=2)


@pytest.mark.slow
def test_cli_real_oracle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real embedded oracle, through the CLI: rows get a status and reason; a re-run is served from the cache."""
    data = tmp_path / "g2.jsonl"
    data.write_text("".join(GSM8K_TRAIN.read_text().splitlines(keepends=True)[:2]))
    out, run_dir = tmp_path / "out.jsonl", tmp_path / "run"
    args = ["synthesize", str(data), "-o", str(out), "--answer-field", "answer", "--attempts", "2",
            "--max-tokens", "24", "--run-dir", str(run_dir), "--keep-unverified", "-q"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    m = json.loads((run_dir / "manifest.json").read_text())
    st = m["synthesis"]
    assert st["rows_checked"] == 2 and st["oracle_attempts_total"] >= 2
    assert m["models"]["oracle"]["kind"] == "embedded-llama.cpp"
    assert "verified" in r.stdout and "oracle calls" in r.stdout
    ledger_rows = [json.loads(x) for x in (run_dir / "synth_rejected.jsonl").read_text().splitlines()]
    written = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    assert len(ledger_rows) + len(written) == 2
    for row in ledger_rows:
        assert row["status"] in ("malformed", "unverified") and row["reason"]
    # Re-run after removing the ledger: every sample comes from the response cache.
    r2 = run_cli(*args, "--restart")
    assert r2.returncode == 0, r2.stderr
    m2 = json.loads((run_dir / "manifest.json").read_text())
    assert m2["oracle_calls_this_invocation"] == 0 and m2["cache_hits_this_invocation"] == st["oracle_attempts_total"]
    # User errors: one line, exit 2
    from reflectkit.cli import main

    assert main(["synthesize", str(data), "-o", str(out), "--format", "xml"]) == 2
    assert "--format must be one of reflection, plain-cot" in capsys.readouterr().err
    assert main(["synthesize", str(data), "-o", str(out), "--answer-field", "nope"]) == 2
    assert "--answer-field 'nope'" in capsys.readouterr().err
