"""Parsing completions answers into prompt log-probs, and the span loss (no server: answers as servers send them).

The echo answer below is what llama-cpp-python 0.3.36 (``--logits_all true``) returned here for
``"The capital of France is Paris"`` (echo, logprobs=3, max_tokens=1): six entries for six prompt tokens, no entry for
the generated token, and each value read one position late (" is" lists " Paris" at -0.2644, the value of " Paris"
generated after "The capital of France is"; " Paris" itself gets -8.4526).
"""

from __future__ import annotations

import math

import pytest

from reflectkit.llm.prompt_logprobs import BadAnswer, parse_prompt_logprobs, request_body
from reflectkit.scoring.endpoint import SpanError, span_loss

LLAMA_CPP_PYTHON_ECHO = {
    "choices": [{"text": "The capital of France is Paris.", "index": 0, "finish_reason": "length", "logprobs": {
        "text_offset": [0, 3, 11, 14, 21, 24],
        "token_logprobs": [None, -9.599955558776855, -10.462464332580566, -11.225584030151367, -11.794837951660156,
                           -8.452631950378418],
        "tokens": ["The", " capital", " of", " France", " is", " Paris"],
        "top_logprobs": [None, {" of": -0.412, " capital": -9.5999}, {" the": -1.98, " of": -10.4624},
                         {" is": -0.432, " France": -11.2255}, {" Paris": -0.264419287443161, " is": -11.7948},
                         {".": -0.376, " Paris": -8.4526}]}}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}}

VLLM_PROMPT_LOGPROBS = {
    "choices": [{"text": " Paris", "index": 0, "finish_reason": "length",
                 "logprobs": {"tokens": [" Paris"], "token_logprobs": [-0.26], "top_logprobs": [{" Paris": -0.26}]},
                 "prompt_logprobs": [None, {"6288": {"logprob": -9.1, "rank": 40, "decoded_token": " capital"}},
                                     {"282": {"logprob": -0.41, "rank": 1, "decoded_token": " of"}}]}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def test_echo_answer_keeps_the_prompt_entries_and_counts_what_came_back() -> None:
    r = parse_prompt_logprobs(LLAMA_CPP_PYTHON_ECHO, "echo")
    assert r.tokens[-1] == " Paris" and len(r) == 6 and r.logprobs[0] is None
    assert r.entries == 6 and r.completion_tokens == 1 and r.generated is None  # the probe's count check fails it
    assert r.tops is not None and r.tops[4][" Paris"] == pytest.approx(-0.2644, abs=1e-4)  # the shift's signature


def test_vllm_prompt_logprobs_answer() -> None:
    r = parse_prompt_logprobs(VLLM_PROMPT_LOGPROBS, "prompt_logprobs")
    assert r.logprobs == [None, -9.1, -0.41] and r.token_ids == [-1, 6288, 282] and r.tokens[1:] == [" capital", " of"]
    assert r.generated is not None and r.generated.text == " Paris" and r.entries == 4


@pytest.mark.parametrize("answer,api", [
    ({"choices": [{"text": "x", "logprobs": None}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}, "echo"),
    ({"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": [-1.0], "top_logprobs": [{}]}}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 1}}, "echo"),  # only the generated token's log-prob
    ({"choices": [{"text": "x"}], "usage": {"prompt_tokens": 5}}, "prompt_logprobs"),
    ({"choices": []}, "echo"),
])
def test_answers_without_prompt_logprobs_are_bad_answers(answer: dict, api: str) -> None:
    with pytest.raises(BadAnswer):
        parse_prompt_logprobs(answer, api)  # type: ignore[arg-type]


def test_request_bodies_never_ask_for_zero_tokens() -> None:
    echo = request_body("hi", api="echo")
    assert echo == {"prompt": "hi", "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
    assert request_body([1, 2], api="prompt_logprobs")["prompt_logprobs"] == 0


def test_span_loss_is_the_mean_over_the_target_span_of_the_kept_tokens() -> None:
    lp = [None, -1.0, -2.0, -3.0, -4.0]
    assert span_loss(lp, 5, 0) == (2.5, 4)  # position 0 is never a target
    assert span_loss(lp, 3, 2) == (2.0, 1)  # truncated to 3 tokens, targets from 2
    loss, n = span_loss(lp, 2, 2)
    assert math.isnan(loss) and n == 0
    with pytest.raises(SpanError):
        span_loss([None, None, -1.0], 3, 0)
