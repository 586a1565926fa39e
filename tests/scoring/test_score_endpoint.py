"""`reflectkit score` with the student behind an OpenAI-compatible endpoint: the probe refuses the real servers whose
prompt log-probs are wrong or missing, and scores through a correct server equal the in-process scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.llama_servers import llama_cpp_server, logits_all_server, logprob_server  # noqa: F401 (fixtures)
from helpers_scoring import write_jsonl
from reflectkit.cli import main
from reflectkit.errors import UserError
from reflectkit.scoring.api import score
from reflectkit.scoring.plan import PARTS
from reflectkit.scoring.scorer import Scorer

REL = 1e-4
ROWS = [
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers and explain.", "input": "2 and 3, then 4", "output": "2 + 3 = 5, and 5 + 4 = 9."},
    {"instruction": "Translate to French: cat", "input": "", "output": "chat"},  # one-token output: a null loss
    {"instruction": "Say hi", "input": "", "output": ""},  # empty output: skipped, no request
    {"instruction": "Echo", "input": "Echo Echo", "output": "Echo"},  # rfind picks the last occurrence
]
KEYS = [f"loss_{p}" for p in PARTS] + [f"ppl_{p}" for p in PARTS] + ["ifd_ppl", "ifd_loss", "rifd_ppl", "rifd_loss"]


def _cli(tmp_path: Path, base_url: str, *extra: str) -> list[str]:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:2])
    return ["score", str(src), "-o", str(tmp_path / "out.jsonl"), "--run-dir", str(tmp_path / "run"),
            "--student-base-url", base_url, "--student-model", "smollm2", "--no-coherence", *extra]


def test_probe_refuses_llama_cpp_python_with_logits_all(logits_all_server, tmp_path: Path, capsys) -> None:  # noqa: F811
    code = main(_cli(tmp_path, logits_all_server.base_url))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "shifted by one" in err and "abetlen/llama-cpp-python#1983" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_probe_refuses_llama_cpp_server_without_prompt_logprobs(llama_cpp_server, tmp_path: Path, capsys) -> None:  # noqa: F811
    code = main(_cli(tmp_path, llama_cpp_server.base_url))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "no prompt log-probs" in err and "ggml-org/llama.cpp#27174" in err
    assert not (tmp_path / "out.jsonl").exists()


def _in_process(student: tuple[Any, Any], prompt: str, max_length: int) -> list[dict[str, Any] | None]:
    model, tok = student
    return Scorer(model, tok, prompt=prompt, max_length=max_length, coherence=False).score(
        [(r["instruction"], r["input"], r["output"]) for r in ROWS])


def _worst(got: list[dict[str, Any]], want: list[dict[str, Any] | None]) -> float:
    worst = 0.0
    for g, w in zip(got, want):
        if w is None:
            assert g == {"status": "skipped", "reason": "empty response: nothing to score"}
            continue
        assert g["truncated"] == w["truncated"] and g["target_tokens"] == w["target_tokens"]
        for k in KEYS:
            if w[k] is None:
                assert g[k] is None, k
                continue
            worst = max(worst, abs(g[k] - w[k]) / abs(w[k]))
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer,api,prompt,max_length", [
    ("embedded", "auto", "vicuna", 2048),  # local tokens (checked by the probe) sent as token ids, echo
    ("server", "prompt_logprobs", "alpaca", 64),  # vLLM's prompt_logprobs; truncation on the server's own tokens
])
def test_scores_through_a_correct_endpoint_equal_in_process(logprob_server, student, tmp_path: Path,  # noqa: F811
                                                            tokenizer: str, api: str, prompt: str,
                                                            max_length: int) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    student_spec = {"model": logprob_server.alias, "base_url": logprob_server.base_url}
    kw = dict(student=student_spec, tokenizer=tokenizer, logprob_api=api, prompt=prompt, max_length=max_length,
              coherence=False, batch_size=4)
    s = score(src, tmp_path / "out.jsonl", run_dir=tmp_path / "run", **kw)
    assert s.failed == 0 and s.counts["skipped"] == 1 and s.counts.get("partial", 0) >= 1  # one-token texts
    got = [json.loads(line)["reflectkit"]["score"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    want = _in_process(student, prompt, max_length)
    assert _worst(got, want) < REL
    assert (max_length < 2048) == any(g.get("truncated") for g in got)
    probe = s.manifest["probe"]
    assert probe["passed"] and probe["tokenization"] == ("local" if tokenizer == "embedded" else "server")
    assert probe["api"] == ("prompt_logprobs" if api == "prompt_logprobs" else "echo")
    assert probe["prompt_as"] == ("token_ids" if tokenizer == "embedded" else "text")
    assert all(a["difference"] < 1e-4 for a in probe["alignment"])
    first = s.manifest["scoring"]["endpoint"]
    assert first["requests"] > 0 and first["cache_hits"] == 0
    if tokenizer == "embedded":  # a re-run from scratch is answered by the cache, byte for byte
        again = score(src, tmp_path / "out2.jsonl", run_dir=tmp_path / "run2", **kw)
        ep = again.manifest["scoring"]["endpoint"]
        assert ep["cache_hits"] > 0 and ep["requests"] == 0 and ep["probe_requests"] > 0  # the probe asks live
        assert (tmp_path / "out2.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()


def test_chat_wrapper_with_the_servers_tokenization_is_a_user_error(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    with pytest.raises(UserError, match="--prompt chat with an endpoint student needs"):
        score(src, tmp_path / "o.jsonl", student={"model": "m", "base_url": "http://127.0.0.1:9/v1"}, prompt="chat")


def test_unreachable_endpoint_is_one_clear_error(tmp_path: Path, capsys) -> None:
    from conftest import free_port

    code = main(_cli(tmp_path, f"http://127.0.0.1:{free_port()}/v1"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1 and "--student-base-url" in err
