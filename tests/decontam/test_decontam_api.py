"""End to end through the Python API: n-gram + embedding detectors, outputs, report, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from decontam_inputs import make_inputs, write_jsonl

from reflectkit.decontam.api import decontaminate
from reflectkit.decontam.step import DEFAULT_THRESHOLD
from reflectkit.embed import encode
from reflectkit.errors import UserError


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_ngram_only_flags_verbatim_question_and_leaked_answer(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    s = decontaminate(d["train"], [str(d["bench"])], tmp_path / "clean.jsonl", embedding=False,
                      bench_mapping=d["bench_map"], run_dir=tmp_path / "run")
    kept = _rows(tmp_path / "clean.jsonl")
    assert s.counts == {"clean": 10, "contaminated": 2}
    assert [r["truth"] for r in kept].count("verbatim") == 0 and [r["truth"] for r in kept].count("answer_leak") == 0
    assert all(r["reflectkit"]["decontam"]["status"] == "clean" for r in kept)
    report = _rows(s.report_jsonl)
    by_row = {r["row"]: r for r in report}
    assert by_row[0]["matches"][0]["item_id"] == "t7"
    assert by_row[0]["matches"][0]["ngram"]["benchmark_field"] == "question"
    assert by_row[1]["matches"][0]["ngram"] == {**by_row[1]["matches"][0]["ngram"], "train_field": "output",
                                                "benchmark_field": "answer"}
    assert all(r["status"] and r["reason"] for r in report)
    md = s.report_md.read_text()
    assert "| bench | question+answer | 12 | 2 | 2 |" in md and "Fields compared" in md
    manifest = json.loads(s.manifest_path.read_text())
    assert manifest["counts"] == {"clean": 10, "contaminated": 2}
    assert manifest["decontam"]["per_benchmark"]["bench"]["rows_flagged"] == 2


@pytest.mark.slow
def test_embedding_finds_paraphrases_by_nearest_item_and_threshold(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    s = decontaminate(d["train"], [str(d["bench"])], tmp_path / "marked.jsonl", ngram=False, mark_only=True,
                      bench_mapping=d["bench_map"], run_dir=tmp_path / "run")
    rows = _rows(tmp_path / "marked.jsonl")
    assert len(rows) == 12  # --mark-only keeps every row
    bench = [json.loads(x) for x in d["bench"].read_text().splitlines()]
    bemb = encode([b["problem"] for b in bench])
    temb = encode([r["instruction"] for r in d["rows"]])
    sims = temb @ bemb.T
    for row, emb_row in zip(rows, sims):
        rk = row["reflectkit"]["decontam"]
        should = bool(emb_row.max() >= DEFAULT_THRESHOLD)
        assert (rk["status"] == "contaminated") == should, (row["truth"], emb_row.max())
        if should:
            m = rk["matches"][0]
            assert m["item_id"] == bench[int(np.argmax(emb_row))]["uid"]
            assert abs(m["similarity"] - float(emb_row.max())) < 1e-3
    # the verbatim copy is always caught; the hand paraphrases retrieve the right item even when below threshold
    assert rows[0]["reflectkit"]["decontam"]["status"] == "contaminated"
    for i, idx in ((2, 190), (3, 251)):
        assert bench[int(np.argmax(sims[i]))]["uid"] == f"t{idx}"
    for i, r in enumerate(d["rows"]):
        if r["truth"] == "negative":
            assert rows[i]["reflectkit"]["decontam"]["status"] == "clean"
    assert s.threshold == DEFAULT_THRESHOLD


def test_builtin_benchmark_by_name_and_messages_shaped_training_data(shared_data, tmp_path) -> None:
    test = [json.loads(x) for x in (shared_data / "benchmarks/gsm8k_test.jsonl").read_text().splitlines()]
    train = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris."}]},
        {"messages": [{"role": "user", "content": test[1000]["question"]}, {"role": "assistant", "content": "?"}]},
    ])
    s = decontaminate(train, ["gsm8k", "lima"], tmp_path / "out.jsonl", embedding=False, run_dir=tmp_path / "r")
    assert s.counts == {"clean": 1, "contaminated": 1}
    assert s.per_benchmark["gsm8k"]["items"] == len(test) and s.per_benchmark["gsm8k"]["fields"] == ["question", "answer"]
    assert s.per_benchmark["lima"]["fields"] == ["question"]
    out = _rows(tmp_path / "out.jsonl")
    assert out[0]["messages"][0]["content"] == "What is the capital of France?"


@pytest.mark.parametrize(
    "against, make, expect",
    [
        (["gsm9k"], None, "unknown benchmark 'gsm9k'; available: gsm8k"),
        (["EMPTY"], lambda p: p.write_text(""), "benchmark file is empty"),
        (["EMPTY"], lambda p: p.write_text('{"text": "x"}\n'), "missing required field 'problem'"),
    ],
)
def test_bad_benchmarks_are_clear_user_errors(shared_data, tmp_path, against, make, expect) -> None:
    d = make_inputs(shared_data, tmp_path)
    if make:
        p = tmp_path / "empty.jsonl"
        make(p)
        against = [str(p)]
    with pytest.raises(UserError, match=expect.replace("(", r"\(")):
        decontaminate(d["train"], against, tmp_path / "o.jsonl", embedding=False, bench_mapping=d["bench_map"])


def test_training_set_without_compared_text_is_an_error_not_clean(tmp_path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "?!", "output": "..."}, {"instruction": "—", "output": ""}])
    with pytest.raises(UserError, match="no text in the compared fields"):
        decontaminate(train, ["vicuna"], tmp_path / "o.jsonl", embedding=False)


def test_row_without_words_is_unchecked_with_reason(tmp_path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "???", "output": ""},
                                               {"instruction": "Name three colours.", "output": "red"}])
    s = decontaminate(train, ["vicuna"], tmp_path / "o.jsonl", embedding=False, run_dir=tmp_path / "r")
    assert s.counts == {"clean": 1, "unchecked": 1}
    first = _rows(tmp_path / "o.jsonl")[0]["reflectkit"]["decontam"]
    assert first["status"] == "unchecked" and "no words" in first["reason"]


def test_all_detectors_off_is_an_error(tmp_path) -> None:
    with pytest.raises(UserError, match="all detectors are off"):
        decontaminate(tmp_path / "x.jsonl", ["gsm8k"], tmp_path / "o.jsonl", ngram=False, embedding=False)
