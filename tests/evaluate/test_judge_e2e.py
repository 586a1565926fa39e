"""Pairwise judges and judge benchmarks end to end: real llama.cpp server (OpenAI-compatible) and embedded model."""

import json

import pytest
from conftest import run_cli

from reflectkit.evaluate.judge_step import bench_dataset


def _answers(path, ids_prefix="x", n=2, suffix=""):
    rows = [{"id": f"{ids_prefix}{i}", "prompt": f"What is {i} + {i}?", "response": f"It is {2 * i}.{suffix}"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bench_datasets_load_all_pairs(shared_data):
    llm = bench_dataset("llmbar")
    assert len(llm.records) == 419
    assert {r.raw["subset"] for r in llm.records} == {"Natural", "Adversarial_Neighbor", "Adversarial_GPTInst",
                                                     "Adversarial_GPTOut", "Adversarial_Manual"}
    jb = bench_dataset("judgebench")
    assert len(jb.records) == 620 and {r.raw["label"] for r in jb.records} == {"1", "2"}
    assert len(bench_dataset("llmbar", limit=2).records) == 10


@pytest.mark.slow
def test_generate_and_judge_pairwise_against_openai_endpoint(llama_server, tmp_path):
    ep = ("--model", llama_server.alias, "--base-url", llama_server.base_url)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out, extra in ((a, ()), (b, ("--system", "Answer in one word."))):
        r = run_cli("generate", "vicuna", "-o", str(out), "--limit", "2", "--max-tokens", "8", *ep, *extra,
                    "--run-dir", str(tmp_path / out.stem))
        assert r.returncode == 0, r.stderr
    row = json.loads(a.read_text().splitlines()[0])
    assert row["model"] == llama_server.alias and row["reflectkit"]["generate"]["model"]["kind"] != "embedded-llama.cpp"

    j = tmp_path / "j.jsonl"
    r = run_cli("judge", "pairwise", str(a), str(b), "-o", str(j), "--max-tokens", "12", "--labels", "plain,brief",
                "--json", str(tmp_path / "p.json"), "--md", str(tmp_path / "p.md"), *ep, "--run-dir", str(tmp_path / "jr"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "p.json").read_text())
    c = rep["counts"]
    assert c["questions"] == 2 and c["W"] + c["T"] + c["L"] + c["questions_with_unparsed"] == 2
    assert c["calls_per_pair"] == 2 and rep["labels"] == ["plain", "brief"]
    for name in ("win_rate", "win_fraction", "position_consistency", "first_position_preference", "unparsed_rate"):
        assert len(rep["metrics"][name]["ci"]) == 2
    rows = [json.loads(line) for line in j.read_text().splitlines()]
    assert all(isinstance(x["review"], str) and isinstance(x["review_reverse"], str) for x in rows)
    # the judge saw answer_1 first in `review` and answer_2 first in `review_reverse`
    assert rows[0]["answer_1"] == json.loads(a.read_text().splitlines()[0])["response"]
    # recomputing from the recorded reviews gives the same table
    r2 = run_cli("judge", "summarize", str(j), "--labels", "plain,brief", "--json", str(tmp_path / "s.json"))
    assert r2.returncode == 0, r2.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["counts"] == rep["counts"] and s["metrics"] == rep["metrics"]


@pytest.mark.slow
def test_reflective_judge_embedded_counts_calls(tmp_path):
    a, b = _answers(tmp_path / "a.jsonl", n=1), _answers(tmp_path / "b.jsonl", n=1, suffix=" Sure.")
    r = run_cli("judge", "pairwise", str(a), str(b), "--judge", "reflective", "--k", "2", "--max-tokens", "8",
                "-o", str(tmp_path / "j.jsonl"), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "j.jsonl").with_name("j.summary.json").read_text())
    # k analyses per order, plus one comparison per extra parsed analysis: 2k .. 2(2k-1)
    assert 4 <= rep["counts"]["calls_per_pair"] <= 6
    row = json.loads((tmp_path / "j.jsonl").read_text())
    det = row["reflectkit"]["judge"]["details"]
    assert len(det["analyses"]) == 2 and row["reflectkit"]["judge"]["method"] == "reflective"
    assert rep["counts"]["unparsed_judgments"] == sum(v is None for v in (row["reflectkit"]["judge"]["verdict"],
                                                                         row["reflectkit"]["judge"]["verdict_reverse"]))


@pytest.mark.slow
def test_judge_bench_llmbar_embedded(tmp_path):
    r = run_cli("judge", "bench", "llmbar", "--subset", "Adversarial_GPTOut", "--limit", "1", "--max-tokens", "8",
                "-o", str(tmp_path / "b.jsonl"), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "b.bench.json").read_text())
    for name in ("strict_accuracy", "order_averaged_accuracy", "positional_agreement", "unknown_rate"):
        assert rep["metrics"][name]["n"] in (1, 2) and len(rep["metrics"][name]["ci"]) == 2
    assert rep["counts"]["pairs"] == 1 and "near chance" in r.stdout


def test_pairwise_mismatched_ids_exit_2(tmp_path):
    a, b = _answers(tmp_path / "a.jsonl"), _answers(tmp_path / "b.jsonl", ids_prefix="y")
    r = run_cli("judge", "pairwise", str(a), str(b))
    assert r.returncode == 2 and "no answer for id 'x0'" in r.stderr and "Traceback" not in r.stderr


def test_bench_unknown_name_exit_2():
    r = run_cli("judge", "bench", "mtbench")
    assert r.returncode == 2 and "unknown judge benchmark" in r.stderr
