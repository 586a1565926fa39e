"""`reflectkit score` / `stats` end to end with the real student (tiny rows, so they stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_scoring import write_jsonl
from reflectkit.cli import main
from reflectkit.scoring.api import score
from reflectkit.scoring.stats import stats_table

ROWS = [
    {"instruction": "Name a primary color.", "input": "", "output": "Red is a primary color."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "2 + 3 = 5"},
    {"instruction": "Say nothing.", "input": "", "output": ""},
    {"instruction": "Give a fruit.", "input": "", "output": "An apple."},
]


def _read(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


@pytest.mark.slow
def test_score_api_scores_every_row_and_skips_empty_output(tmp_path: Path, student_dir: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    s = score(src, tmp_path / "out.jsonl", student=str(student_dir), run_dir=tmp_path / "run", batch_size=2)
    assert s.counts == {"scored": 3, "skipped": 1} and s.rows_out == 4
    rows = _read(tmp_path / "out.jsonl")
    sc = [r["reflectkit"]["score"] for r in rows]
    assert sc[2] == {"status": "skipped", "reason": "empty response: nothing to score"}
    for d in (sc[0], sc[1], sc[3]):
        assert d["status"] == "scored"
        assert d["ifd_ppl"] == pytest.approx(d["ppl_out_condition"] / d["ppl_out_alone"], rel=1e-5)
        assert d["ifd_loss"] == pytest.approx(d["loss_out_condition"] / d["loss_out_alone"], rel=1e-5)
        assert d["rifd_ppl"] == pytest.approx(d["ppl_ins_condition"] / d["ppl_ins_alone"], rel=1e-5)
        assert -1 <= d["coherence"] <= 1 and 0 < d["gzip_ratio"]
        assert d["truncated"] is False and d["res_len"] > 0
    # coherence is higher for the on-topic pair than for a mismatched one
    mism = score(write_jsonl(tmp_path / "m.jsonl", [{"instruction": "Name a primary color.", "output": "The train leaves at noon."}]),
                 tmp_path / "m_out.jsonl", student=str(student_dir), run_dir=tmp_path / "run_m")
    assert mism.counts == {"scored": 1}
    assert _read(tmp_path / "m_out.jsonl")[0]["reflectkit"]["score"]["coherence"] < sc[0]["coherence"]
    # stats: one line per file, in all three formats
    md = stats_table([tmp_path / "out.jsonl", tmp_path / "m_out.jsonl"])
    lines = md.splitlines()
    assert len(lines) == 4 and "| IFD | r-IFD |" in lines[0] and lines[2].startswith(f"| {tmp_path / 'out.jsonl'} | 3/4 |")
    js = json.loads(stats_table([tmp_path / "out.jsonl"], fmt="json"))
    assert js[0]["rows"] == 3 and js[0]["rows_in_file"] == 4
    assert js[0]["ifd"] == pytest.approx(sum(d["ifd_ppl"] for d in (sc[0], sc[1], sc[3])) / 3)
    csv = stats_table([tmp_path / "out.jsonl"], fmt="csv").splitlines()
    assert csv[0].startswith("dataset,rows,ins_len,res_len,ins_ppl") and len(csv) == 2


@pytest.mark.slow
def test_score_resumes_after_interruption_with_identical_output(tmp_path: Path, student_dir: Path, monkeypatch) -> None:
    from reflectkit.scoring.step import ScoreStep

    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    full = score(src, tmp_path / "full.jsonl", student=str(student_dir), run_dir=tmp_path / "full", batch_size=2,
                 coherence=False)
    assert full.rows_out == 4
    real = ScoreStep.process_batch
    calls: list[int] = []

    def dies_on_second_batch(self, recs, ctx):  # what a kill after the first ledger commit leaves behind
        calls.append(len(recs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, recs, ctx)

    monkeypatch.setattr(ScoreStep, "process_batch", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        score(src, tmp_path / "resumed.jsonl", student=str(student_dir), run_dir=tmp_path / "res", batch_size=2, coherence=False)
    assert not (tmp_path / "resumed.jsonl").exists()
    monkeypatch.setattr(ScoreStep, "process_batch", lambda self, recs, ctx: (calls.append(len(recs)), real(self, recs, ctx))[1])
    resumed = score(src, tmp_path / "resumed.jsonl", student=str(student_dir), run_dir=tmp_path / "res", batch_size=2,
                    coherence=False)
    assert calls == [2, 2, 2]  # the resumed run scored only the second batch
    assert resumed.rows_out == 4
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()


@pytest.mark.slow
def test_score_scores_recycle_variants(tmp_path: Path, student_dir: Path) -> None:
    orig = {"instruction": "Give a fruit.", "input": "", "output": "An apple."}
    row = {**orig, "output": "A ripe banana.", "reflectkit": {"id": "r1", "recycle": {
        "variants": {"original": orig, "instruction": None,
                     "response": {"instruction": "Give a fruit.", "input": "", "output": "A ripe banana."}, "both": None},
        "phases": {"instruction": {"status": "kept_original", "reason": "no [New Instruction] tag"}}}}}
    src = write_jsonl(tmp_path / "v.jsonl", [row])
    score(src, tmp_path / "v_out.jsonl", student=str(student_dir), run_dir=tmp_path / "run", coherence=False)
    sc = _read(tmp_path / "v_out.jsonl")[0]["reflectkit"]["score"]
    assert set(sc["variants"]) == {"original", "instruction", "response", "both"}
    assert sc["variants"]["instruction"] is None and sc["variants"]["both"] is None
    # the row's own texts are the response variant: same numbers (scored once)
    assert sc["variants"]["response"]["ifd_ppl"] == sc["ifd_ppl"]
    assert sc["variants"]["original"]["ifd_ppl"] != sc["ifd_ppl"]
    score(src, tmp_path / "none.jsonl", student=str(student_dir), run_dir=tmp_path / "run2", coherence=False, variants=[])
    assert "variants" not in _read(tmp_path / "none.jsonl")[0]["reflectkit"]["score"]


@pytest.mark.slow
def test_cli_score_and_stats_on_shared_alpaca(tmp_path: Path, student_dir: Path, alpaca_path: Path, capsys) -> None:
    out = tmp_path / "a.jsonl"
    code = main(["score", str(alpaca_path), "-o", str(out), "--student", str(student_dir), "--limit", "2",
                 "--max-length", "128", "--run-dir", str(tmp_path / "run"), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "score: 2 rows -> 2 written" in text
    rows = _read(out)
    assert all(r["reflectkit"]["score"]["status"] in ("scored", "partial") for r in rows)
    assert any(r["reflectkit"]["score"]["truncated"] for r in rows)  # 128 tokens cut the reverse pass
    assert main(["stats", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["rows"] == 2


@pytest.mark.parametrize("args,needle", [
    (["--prompt", "llama"], "--prompt must be one of"),
    (["--variants", "bogus"], "unknown variant"),
    (["--student", "/nonexistent/model"], "--student"),
])
def test_cli_score_user_errors_exit_2(tmp_path: Path, args: list[str], needle: str, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    code = main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r"), *args])
    assert code == 2
    assert needle in capsys.readouterr().err


def _corrupt_gguf(tmp: Path) -> str:
    p = tmp / "broken.gguf"
    p.write_bytes(b"GGUF" + b"\x00" * 60)
    return str(p)


def _hf_dir_without_weights(tmp: Path) -> str:
    d = tmp / "empty-model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama"}')
    return str(d)


@pytest.mark.parametrize("make,needle", [
    (_corrupt_gguf, "cannot load GGUF"),
    (_hf_dir_without_weights, "cannot load the model in"),
])
def test_cli_score_unloadable_student_is_one_clear_error(tmp_path: Path, make, needle: str, capsys) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:2])
    code = main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r"),
                 "--student", make(tmp_path), "--no-coherence"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_cli_score_bad_device_is_a_user_error(tmp_path: Path, capsys) -> None:
    import torch

    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    bad = ["--device", "tpu9"] if torch.cuda.is_available() else ["--device", "cuda"]
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "r"), *bad]) == 2
    assert "--device" in capsys.readouterr().err


def test_cli_stats_user_errors(tmp_path: Path, capsys) -> None:
    plain = write_jsonl(tmp_path / "plain.jsonl", ROWS[:1])
    assert main(["stats", str(plain)]) == 2
    assert "no scored rows" in capsys.readouterr().err
    assert main(["stats", str(plain), "--format", "xml"]) == 2


@pytest.mark.slow
def test_a_row_that_fails_is_recorded_and_the_rest_of_its_batch_scored(tmp_path: Path, student_dir: Path, monkeypatch) -> None:
    from reflectkit.scoring.scorer import Scorer

    real = Scorer.score

    def fragile(self, triples):
        if any(t[2] == "BOOM" for t in triples):
            raise RuntimeError("tokenizer exploded")
        return real(self, triples)

    monkeypatch.setattr(Scorer, "score", fragile)
    src = write_jsonl(tmp_path / "in.jsonl", [ROWS[0], {"instruction": "Fail.", "output": "BOOM"}])
    s = score(src, tmp_path / "o.jsonl", student=str(student_dir), run_dir=tmp_path / "run", coherence=False)
    assert s.counts == {"failed": 1, "scored": 1} and s.exit_code == 1
    bad = _read(tmp_path / "o.jsonl")[1]["reflectkit"]["score"]
    assert bad["status"] == "failed" and "tokenizer exploded" in bad["reason"]
