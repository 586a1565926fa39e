"""ReflectRM as published (issue 16): the vote rule, token confidence from real log-probs (llama.cpp server vs the
embedded model), the data builder, GRPO training with resume, and `judge bench` on the trained judge."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from conftest import run_cli

from reflectkit.evaluate.judge import paper_vote, token_confidence, vote
from reflectkit.evaluate.judge_data import mix_examples
from reflectkit.evaluate.judge_metrics import bench_item, compare_bench, swap_pick


def _a(sample, verdict, conf=None):
    return {"sample": sample, "verdict": verdict, "confidence": conf}


# --------------------------------------------------------------------------------------------- the vote


def test_paper_vote_empty_w_falls_back_to_the_anchor():
    anchor = _a(0, "1")
    others = [_a(1, "2"), _a(2, "2")]
    outcome, w, votes, added = paper_vote(anchor, others, [False, False])
    assert (outcome, w, dict(votes), added) == ("1", [0], {"1": 1}, True)


def test_paper_vote_tie_in_w_adds_the_anchor_and_votes_again():
    anchor = _a(0, "2")
    others = [_a(1, "1"), _a(2, "2"), _a(3, "1")]
    outcome, w, votes, added = paper_vote(anchor, others, [True, True, False])  # W = {1: "1", 2: "2"}: a tie
    assert added and w == [1, 2, 0] and dict(votes) == {"1": 1, "2": 2} and outcome == "2"


def test_paper_vote_anchor_outvoted_and_left_out_of_w():
    anchor = _a(0, "1")
    others = [_a(1, "2"), _a(2, "2"), _a(3, "1")]
    outcome, w, votes, added = paper_vote(anchor, others, [True, True, False])  # W = {1: "2", 2: "2"}
    assert (outcome, w, dict(votes), added) == ("2", [1, 2], {"2": 2}, False)
    # the earlier anchor-vote variant always counts the anchor, which here changes nothing but the counts
    out2, votes2 = vote(anchor, others, [True, True, False])
    assert out2 == "2" and dict(votes2) == {"1": 1, "2": 2}


def test_anchor_vote_variant_keeps_its_tie_rule():
    anchor = _a(0, "tie")
    out, votes = vote(anchor, [_a(1, "1")], [True])
    assert out == "tie" and dict(votes) == {"tie": 1, "1": 1}


def test_token_confidence_is_the_mean_of_the_lowest_tail():
    lps = [-0.01 * i for i in range(1, 21)] + [-5.0, -3.0]  # 22 tokens: the lowest 10% = 3 tokens
    assert token_confidence(lps) == pytest.approx((-5.0 - 3.0 - 0.2) / 3)
    assert token_confidence(lps, fraction=1.0) == pytest.approx(sum(lps) / len(lps))
    with pytest.raises(ValueError):
        token_confidence([])


def test_mix_is_exactly_four_to_one_and_accounts_for_what_it_leaves_out():
    rp = [{"id": f"r{i}", "kind": "response"} for i in range(11)]
    ap = [{"id": f"a{i}", "kind": "analysis"} for i in range(4)]
    mix, acc = mix_examples(rp, ap, 4.0, seed=1)
    kinds = [m["kind"] for m in mix]
    assert kinds.count("response") == 8 and kinds.count("analysis") == 2
    assert len(acc["left_out"]) == 5 and {x["id"] for x in acc["left_out"]} | {m["id"] for m in mix} == \
        {x["id"] for x in rp + ap}
    assert mix_examples(rp, ap, 4.0, seed=1)[0] == mix  # seeded


def test_single_order_protocol_and_paired_compare():
    rows = [{"id": f"p{i}", "label": "1", "o1": "1", "o2": "1" if i % 2 else "2", "calls": 30} for i in range(40)]
    items = [bench_item(r) for r in rows]
    for r, it in zip(rows, items):  # single order = the order the seeded coin picked
        assert it["single_order"] == (1.0 if swap_pick(0, r["id"]) == 1 else float(r["o2"] == "2"))
        assert it["strict"] == float(r["o2"] == "2")
    this = {"per_item": [{"id": r["id"], "metrics": it} for r, it in zip(rows, items)]}
    base = {"per_item": [{"id": r["id"], "metrics": {**it, "strict": 0.0, "calls": 2.0}} for r, it in zip(rows, items)]}
    cmp = compare_bench(this, [("base", base)], label="trained", n_boot=200)
    d = cmp["diff_vs_this"]["base"]["strict"]
    assert cmp["pairs"] == 40 and d["diff"] == pytest.approx(0.5) and d["significant"]
    assert cmp["diff_vs_this"]["base"]["calls"]["diff"] == pytest.approx(28.0)


# --------------------------------------------------------------------------------------------- real log-probs


@pytest.mark.slow
def test_token_confidence_from_a_llama_cpp_server_equals_the_embedded_models(llama_server):
    """The server (llama-cpp-python, logits_all) and the embedded model (logits read in-process) give the same
    generated-token log-probs, so the same token confidence. Greedy decoding of the two can part ways at a near-tie
    (the server evaluates the prompt with logits for every position, a different float summation order), so the
    comparison is over the tokens both generated (at least 16), where contexts are identical.
    Tolerance 1e-3: same weights, same llama.cpp build; only float32 rounding of the batch shapes differs."""
    from reflectkit.llm.base import SamplingParams
    from reflectkit.llm.embedded import EmbeddedModel
    from reflectkit.llm.openai_compat import OpenAICompatModel

    msgs = [{"role": "system", "content": "You are a careful judge."},
            {"role": "user", "content": "Which answer is right? Assistant 1: 2+2=4. Assistant 2: 2+2=5. Explain."}]
    params = SamplingParams(temperature=0.0, max_tokens=32, logprobs=2)

    async def both():
        emb = EmbeddedModel(n_ctx=2048)
        srv = OpenAICompatModel(llama_server.alias, llama_server.base_url)
        try:
            e = await emb.chat(msgs, params)
            plain = await emb.chat(msgs, SamplingParams(temperature=0.0, max_tokens=32))
            s = await srv.chat(msgs, params)
        finally:
            await emb.aclose()
            await srv.aclose()
        return e, plain, s

    e, plain, s = asyncio.run(both())
    assert e.text == plain.text  # asking for log-probs does not change what the embedded model generates
    assert e.logprobs and s.logprobs
    assert "".join(t.token for t in e.logprobs) == e.text
    common = 0
    for a, b in zip(e.logprobs, s.logprobs):
        if a.token != b.token:
            break
        common += 1
    assert common >= 16, (e.text, s.text)
    ea = [t.logprob for t in e.logprobs[:common]]
    sa = [t.logprob for t in s.logprobs[:common]]
    assert all(x <= 0 for x in ea) and max(abs(x - y) for x, y in zip(ea, sa)) < 1e-3
    assert token_confidence(ea) == pytest.approx(token_confidence(sa), abs=1e-3)
    assert e.logprobs[0].top and set(e.logprobs[0].top) == set(s.logprobs[0].top)


# --------------------------------------------------------------------------------------------- data, GRPO, bench

#: a prompt set a 135M model answers in the fixed format often enough for mixed outcomes (the real prompts ask
#: for an analysis first, which it cannot write within a test's token budget)
TINY = {
    "analysis.system.txt": "Follow the instruction.",
    "analysis.user.txt": "{question} 1: {answer_1} 2: {answer_2}\n"
                         "Pick one and copy it exactly: 'Verdict: Assistant 1' or 'Verdict: Assistant 2'.",
    "compare.system.txt": "Follow the instruction.",
    "compare.user.txt": "A: {analysis_a} B: {analysis_b}\nPick one and copy it exactly: 'Sounder: A' or 'Sounder: B'.",
}


def _tiny_prompts(tmp_path):
    d = tmp_path / "tiny-prompts"
    d.mkdir()
    for name, text in TINY.items():
        (d / name).write_text(text)
    return d


def _pairs(path, n=8):
    rows = [{"id": f"q{i}", "question": f"Sum {i}+1?", "answer_1": str(i + 1), "answer_2": str(i + 2),
             "label": "1" if i % 3 else "2"} for i in range(n)]
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.slow
def test_build_data_train_resume_and_bench_the_trained_judge(tmp_path):
    prompts = _tiny_prompts(tmp_path)
    pairs = _pairs(tmp_path / "pairs.json")
    out = tmp_path / "judge"
    common = ["--n", "4", "--data-max-tokens", "10", "--prompt-set", str(prompts), "--num-generations", "2",
              "--max-completion-length", "6", "--save-steps", "1", "--run-dir", str(tmp_path / "jt"), "-q"]
    r = run_cli("judge", "train", str(pairs), "-o", str(out), "--max-steps", "1", *common)
    assert r.returncode == 0, r.stderr[-3000:]

    # the data builder's record: easy pairs dropped, one reflection pair per mixed pair, the ratio applied
    rows = [json.loads(x) for x in (out / "data" / "pairs.jsonl").read_text().splitlines()]
    acc = json.loads((out / "data" / "pairs.mix.json").read_text())
    mix = [json.loads(x) for x in (out / "data" / "pairs.mix.jsonl").read_text().splitlines()]
    cats = {x["id"]: x["reflectkit"]["judge_data"] for x in rows}
    assert len(cats) == 8
    for d in cats.values():
        n_ok = sum(a["correct"] for a in d["analyses"])
        assert d["status"] == ("easy" if n_ok == 4 else "hard" if n_ok == 0 else "mixed")
        kinds = [e["kind"] for e in d["examples"]]
        assert kinds == ([] if d["status"] == "easy" else ["response"] if d["status"] == "hard"
                         else ["response", "analysis"])
        for e in d["examples"]:
            if e["kind"] == "analysis":  # the correct analysis is the labelled one
                good, bad = (d["analyses"][i] for i in e["samples"])
                assert good["correct"] and not bad["correct"]
    statuses = [d["status"] for d in cats.values()]
    assert "mixed" in statuses, statuses  # else this fixture no longer exercises reflection pairs
    assert acc["analysis_candidates"] == statuses.count("mixed")
    assert acc["response_candidates"] == 8 - statuses.count("easy")
    n_rp = sum(m["kind"] == "response" for m in mix)
    n_ap = sum(m["kind"] == "analysis" for m in mix)
    if n_ap:
        assert n_rp == 4 * n_ap
    assert len(acc["left_out"]) == acc["response_candidates"] + acc["analysis_candidates"] - len(mix)
    assert not {m["source_id"] for m in mix} & {rid for rid, d in cats.items() if d["status"] == "easy"}

    m1 = json.loads((out / "manifest.json").read_text())
    assert m1["metrics"]["global_step"] == 1 and (out / "checkpoints" / "checkpoint-1").is_dir()
    # two steps: resumed from the first step's checkpoint, the data taken from the engine's ledger and cache
    r = run_cli("judge", "train", str(pairs), "-o", str(out), "--max-steps", "2", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["metrics"]["global_step"] == 2 and m2["resumed_from"].endswith("checkpoint-1")
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,loss,reward") and len(log) >= 3 and (out / "curves.png").stat().st_size > 0
    assert (out / "merged" / "config.json").exists() and (out / "adapter" / "adapter_config.json").exists()

    # the trained judge in `judge bench`, with both protocols, token confidence from its own log-probs
    rep_path = tmp_path / "bench.json"
    r = run_cli("judge", "bench", str(pairs), "--model", str(out), "--judge", "reflective", "--k", "2",
                "--max-tokens", "6", "--prompt-set", str(prompts), "--limit", "3", "-o", str(tmp_path / "b.jsonl"),
                "--json", str(rep_path), "--run-dir", str(tmp_path / "br"), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(rep_path.read_text())
    for k in ("single_order_accuracy", "strict_accuracy", "positional_agreement", "calls_per_pair"):
        assert len(rep["metrics"][k]["ci"]) == 2
    assert rep["judge"]["model"]["kind"] == "hf-transformers" and rep["judge"]["model"]["path"].endswith("merged")
    assert rep["judge"]["settings"]["procedure"] == "reflectrm"
    assert rep["judge"]["confidence_used"] == {"token": 6}
    j = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    det = j[0]["reflectkit"]["judge"]["details"]
    assert {"analyses", "anchor", "comparisons", "W", "votes", "calls"} <= set(det)
    assert all(a["token_confidence"] is not None and not math.isnan(a["token_confidence"]) for a in det["analyses"])
