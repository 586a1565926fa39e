"""`reflectkit generate` / `eval gsm8k` / `refine` end to end with the embedded SmolLM2 model (real llama.cpp)."""

import json

import pytest
from conftest import run_cli

from reflectkit.evaluate.generate import GenerateOptions, PromptBuilder
from reflectkit.evalsets import load_evalset


def test_kshot_prompt_is_lm_eval_format(shared_data):
    b = PromptBuilder(GenerateOptions(shots=2), "gsm8k")
    item = load_evalset("gsm8k", limit=1)[0]
    train = load_evalset("gsm8k_train", limit=2)
    text = b.messages(item)[-1]["content"]
    assert text == (f"Question: {train[0].question}\nAnswer: {train[0].answer}\n\n"
                    f"Question: {train[1].question}\nAnswer: {train[1].answer}\n\n"
                    f"Question: {item.question}\nAnswer:")
    assert b.sampling().stop == ("Question:", "</s>", "<|im_end|>") and b.sampling().temperature == 0.0
    zero = PromptBuilder(GenerateOptions(), "gsm8k").messages(item)
    assert zero == [{"role": "user", "content": f"Question: {item.question}\nAnswer:"}]
    vic = PromptBuilder(GenerateOptions(system="Be brief."), "vicuna")
    v = load_evalset("vicuna", limit=1)[0]
    assert vic.messages(v) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": v.question}]


@pytest.mark.slow
def test_generate_then_eval_gsm8k_is_resumable_and_cached(tmp_path):
    out, run_dir = tmp_path / "a.jsonl", tmp_path / "run"
    args = ("generate", "gsm8k", "-o", str(out), "--limit", "2", "--max-tokens", "8", "--run-dir", str(run_dir))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["id"] for x in rows] == ["gsm8k-0", "gsm8k-1"]
    assert all(isinstance(x["response"], str) and x["model"] == "embedded" and "####" in x["answer"] for x in rows)
    assert rows[0]["reflectkit"]["generate"]["model"]["kind"] == "embedded-llama.cpp"
    first = out.read_bytes()
    # same run dir: nothing left to do; new run dir: every answer comes from the response cache
    r2 = run_cli(*args)
    assert r2.returncode == 0 and "oracle calls 0" in r2.stdout
    r3 = run_cli(*args[:-1], str(tmp_path / "run2"))
    assert r3.returncode == 0 and "oracle calls 0, cache hits 2" in r3.stdout
    assert out.read_bytes() == first
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model_spec"] == {"kind": "embedded"} and manifest["config"]["shots"] == 0

    r4 = run_cli("eval", "gsm8k", str(out), "--json", str(tmp_path / "g.json"), "--md", str(tmp_path / "g.md"))
    assert r4.returncode == 0, r4.stderr
    rep = json.loads((tmp_path / "g.json").read_text())
    assert rep["metrics"]["strict_match"]["n"] == 2 and len(rep["metrics"]["flexible_extract"]["ci"]) == 2
    assert "| strict_match |" in (tmp_path / "g.md").read_text()


@pytest.mark.slow
def test_refine_keeps_every_round(tmp_path):
    out = tmp_path / "r.jsonl"
    r = run_cli("refine", "gsm8k", "-o", str(out), "--limit", "1", "--rounds", "1", "--max-tokens", "6",
                "--critique-max-tokens", "6", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text().splitlines()[0])
    rk = row["reflectkit"]["refine"]
    assert isinstance(rk["draft"], str) and rk["n_rounds"] == 1 and len(rk["rounds"]) == rk["n_rounds"]
    assert rk["stop_reason"] in ("max_rounds", "critique_says_no_change", "revision_unchanged")
    assert all(isinstance(x["feedback"], str) for x in rk["rounds"])
    last_revision = [x["revision"] for x in rk["rounds"] if x["revision"] is not None]
    if rk["stop_reason"] == "max_rounds":
        assert row["response"] == last_revision[-1]
    r2 = run_cli("eval", "gsm8k", str(out))
    assert r2.returncode == 0 and (tmp_path / "r.gsm8k.json").exists()


@pytest.mark.parametrize("args, message", [
    (("generate", "nosuchset", "-o", "x.jsonl"), "unknown benchmark 'nosuchset'"),
    (("generate", "gsm8k", "-o", "x.jsonl", "--model", "missing.gguf"), "--model missing.gguf: no such .gguf file"),
    (("generate", "gsm8k", "-o", "x.jsonl", "--model", "hf:/nonexistent"), "no such directory"),
    (("generate", "gsm8k", "-o", "x.jsonl", "--base-url", "http://127.0.0.1:9/v1"), "--base-url is set but --model"),
    (("generate", "vicuna", "-o", "x.jsonl", "--shots", "2"), "--shots"),
    (("generate", "gsm8k"), "needs -o OUTPUT"),
])
def test_generate_user_errors_exit_2(tmp_path, args, message):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_generate_unreachable_endpoint_exit_2(tmp_path):
    from conftest import free_port

    r = run_cli("generate", "vicuna", "-o", "x.jsonl", "--model", "m", "--base-url",
                f"http://127.0.0.1:{free_port()}/v1", "--max-attempts", "1", "--timeout", "2", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
