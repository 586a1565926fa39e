"""A small OpenAI-compatible ``/v1/completions`` server whose prompt log-probs are right, for the endpoint tests.

Why a project-written server: the tests need an endpoint that returns *correct* prompt log-probs for the embedded
student, and no real server can run here. llama-cpp-python's server returns them shifted by one position
(abetlen/llama-cpp-python#1983), llama.cpp's ``llama-server`` returns none (ggml-org/llama.cpp#27174), and vLLM,
the server that gets them right, needs a GPU (and its wheel cannot be installed on this CPU-only machine). So this
server computes them with the project's exact torch path: the student as :func:`reflectkit.student.load_student`
loads it for in-process scoring (the same HF directory, float32 on CPU), one forward pass per request,
``log_softmax`` in float32, ``log p(token_t) = log_softmax(logits_{t-1})[token_t]``.

It implements what the probe and the scorer use, in the shapes real servers use:

* ``prompt`` as a string (tokenized with the student's tokenizer, special tokens as ``tokenizer(text)`` adds them)
  or a list of token ids (as vLLM accepts);
* ``echo: true`` + ``logprobs: k`` (OpenAI legacy / vLLM): ``choices[0].logprobs`` with ``tokens``,
  ``token_logprobs`` (null first), ``top_logprobs``, ``text_offset`` over prompt + generated tokens;
* ``prompt_logprobs: k`` (vLLM): ``choices[0].prompt_logprobs`` = ``[null, {id: {logprob, rank,
  decoded_token}}, ...]``;
* ``max_tokens`` >= 1: one greedy token (more are not needed) with its log-prob; ``usage`` counts as servers do.

Run: ``python tests/helpers/logprob_server.py --model-dir DIR --port P [--alias NAME]``; ``GET /v1/models`` answers
when it is ready.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def build_app(model_dir: str, alias: str) -> type[BaseHTTPRequestHandler]:
    import torch

    from reflectkit.student import load_student

    torch.set_num_threads(1)  # a shared 2-core test machine
    model, tok, _ = load_student(model_dir, device="cpu")
    lock = threading.Lock()

    def forward(ids: list[int]) -> Any:
        with lock, torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0]
            return torch.log_softmax(logits.float(), dim=-1)

    pieces: dict[int, str] = {}

    def piece(i: int) -> str:
        if i not in pieces:
            pieces[i] = tok.decode([i])
        return pieces[i]

    def complete(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt", "")
        ids = [int(t) for t in prompt] if isinstance(prompt, list) else list(tok(str(prompt))["input_ids"])
        if not ids:
            raise ValueError("empty prompt")
        k = int(body.get("logprobs") or 0) if body.get("logprobs") is not None else None
        lp = forward(ids)
        gen = int(torch.argmax(lp[-1]))
        gen_lp = float(lp[-1, gen])
        # lp[t - 1, ids[t]]: the log-prob of token t given the tokens before it
        idx = torch.tensor(ids[1:], dtype=torch.long)
        prompt_lp: list[float | None] = [None] + lp[:-1].gather(1, idx[:, None])[:, 0].tolist()

        top_v, top_i = torch.topk(lp, max(k or 0, 1), dim=-1)  # every row at once
        top_v, top_i = top_v.tolist(), top_i.tolist()

        def top(row: int, chosen: int) -> dict[str, float]:
            d = {piece(i): v for v, i in zip(top_v[row], top_i[row])}
            d[piece(chosen)] = float(lp[row, chosen])
            return d

        choice: dict[str, Any] = {"index": 0, "text": piece(gen), "finish_reason": "length", "logprobs": None}
        if k is not None:
            toks, vals, tops = [piece(gen)], [gen_lp], [top(len(ids) - 1, gen)]
            if body.get("echo"):
                toks = [piece(i) for i in ids] + toks
                vals = prompt_lp + vals  # type: ignore[assignment]
                tops = [None] + [top(t - 1, ids[t]) for t in range(1, len(ids))] + tops  # type: ignore[list-item]
            offsets, pos = [], 0
            for t in toks:
                offsets.append(pos)
                pos += len(t)
            choice["logprobs"] = {"tokens": toks, "token_logprobs": vals, "top_logprobs": tops, "text_offset": offsets}
            if body.get("echo"):
                choice["text"] = tok.decode(ids) + piece(gen)
        if body.get("prompt_logprobs") is not None:
            choice["prompt_logprobs"] = [None] + [
                {str(ids[t]): {"logprob": prompt_lp[t], "rank": 1, "decoded_token": piece(ids[t])}}
                for t in range(1, len(ids))]
        return {"id": "cmpl-test", "object": "text_completion", "model": alias, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/").endswith("/v1/models"):
                self._send(200, {"object": "list", "data": [{"id": alias, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "invalid JSON"}})
                return
            if not self.path.rstrip("/").endswith("/v1/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if body.get("model") not in (None, alias):
                self._send(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
                return
            try:
                self._send(200, complete(body))
            except (ValueError, IndexError, TypeError) as exc:
                self._send(400, {"error": {"message": str(exc)}})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--alias", default="smollm2")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), build_app(args.model_dir, args.alias))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
