"""The correctness probe: prove that an endpoint's prompt log-probs are right before scoring a single row with them.

Servers disagree on what ``/v1/completions`` returns for prompt tokens, and a scorer that trusts them publishes
wrong IFD values silently:

* llama-cpp-python (0.3.36) gives each prompt token the log-prob read from the logits *at its own position*, which
  predict the next token: every value is shifted by one (abetlen/llama-cpp-python#1983, open);
* llama.cpp's own ``llama-server`` returns no prompt log-probs at all: it refuses ``echo`` (ggml-org/llama.cpp#27174,
  open);
* vLLM returns them (``echo`` or its ``prompt_logprobs``).

Checks, in this order, for each request shape (``echo``, then vLLM's ``prompt_logprobs``) until one passes:

1. **alignment**: ask for one greedy token g after P with its log-prob, then score P+g: the log-prob the server
   gives g as a prompt token must equal the one it gave it as a generated token (within ``tolerance`` nats). Where
   it does not and the value sits one position early (the last token of P lists g with the generated log-prob),
   the symptom is the shift of llama-cpp-python#1983. A server with no prompt log-probs fails here too;
2. **entries**: scoring P+g returns one log-prob entry per prompt token (``usage.prompt_tokens``), plus one for
   the generated token; the first prompt token's entry is null, every other is a number;
3. **tokens**: with a local tokenizer of the claimed student, the server's prompt tokens must be the local
   tokenizer's on the probe texts (then rows are planned with the local tokenizer, as in-process, and token ids
   are sent where the server accepts them); without one, the run uses the server's tokenization and records it.

A failing endpoint is refused with one line (:class:`~reflectkit.errors.UserError`) naming the upstream issue where
the symptom is recognised. The result goes into the run's manifest (``probe``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

from reflectkit.errors import UserError
from reflectkit.llm.base import RequestFailed
from reflectkit.llm.prompt_logprobs import LogprobAPI, PromptLogprobsClient

LLAMA_CPP_PYTHON_ISSUE = "abetlen/llama-cpp-python#1983"
LLAMA_CPP_ISSUE = "ggml-org/llama.cpp#27174"

#: prompts whose greedy next token is a plain word for most models (P + g must tokenize as P's tokens + g)
ALIGNMENT_PROMPTS = ("The capital of France is", "The cat sat on the", "One, two, three, four,")
#: texts whose tokens are compared with the local tokenizer (plain, digits, punctuation, a vicuna-wrapped row)
TOKEN_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Add 2 and 3: 2 + 3 = 5; then (5 * 7) - 1 = 34!",
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: Name a primary color. ASSISTANT:Red is one.",
)
#: attempts per probe request: a server that cannot answer is refused fast, not after minutes of retries
PROBE_ATTEMPTS = 2

Tokenization = Literal["local", "server"]


class ProbeRefused(Exception):
    """One check failed; ``symptom`` is ``no_prompt_logprobs``, ``shifted_by_one``, ``misaligned``, ``entries``,
    ``tokens``, ``generation`` or ``unreachable``."""

    def __init__(self, symptom: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.symptom = symptom
        self.details = details or {}


@dataclass
class ProbeResult:
    """What the probe found; ``to_manifest()`` is the manifest's ``probe`` section."""

    passed: bool
    api: LogprobAPI | None
    tokenization: Tokenization
    prompt_as: Literal["text", "token_ids"] = "text"
    tokenizer: str | None = None
    tolerance: float = 0.05
    alignment: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, Any] = field(default_factory=dict)
    tried: dict[str, str] = field(default_factory=dict)

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-3 * abs(b)


async def _alignment(client: PromptLogprobsClient, api: LogprobAPI, tol: float) -> list[dict[str, Any]]:
    """Checks 1 and 2 on two of the probe prompts; raises :class:`ProbeRefused`."""
    done: list[dict[str, Any]] = []
    for prompt in ALIGNMENT_PROMPTS:
        try:
            g = await client.generate_one(prompt, top=5, max_attempts=PROBE_ATTEMPTS)
        except RequestFailed as exc:
            if any(w in str(exc) for w in ("ConnectError", "Timeout", "RemoteProtocolError")):
                raise ProbeRefused("unreachable", f"cannot reach it ({exc})") from None
            raise ProbeRefused("generation", f"cannot generate one token with log-probs ({exc})") from None
        if g.logprob is None:
            raise ProbeRefused("no_prompt_logprobs", "the endpoint returns no log-probs at all")
        try:
            scored = await client.prompt_logprobs(prompt + g.text, api=api, use_cache=False, top=5,
                                                  max_attempts=PROBE_ATTEMPTS)
        except RequestFailed as exc:
            raise ProbeRefused("no_prompt_logprobs", f"it returns no prompt log-probs ({exc})") from None
        n = len(scored)
        bad = [k for k, v in enumerate(scored.logprobs) if (v is None) != (k == 0)]
        if bad:
            raise ProbeRefused("entries", f"its prompt log-prob entries are null where they should not be, or the "
                               f"first is not null (positions {bad[:5]})")
        if not scored.tokens or scored.tokens[-1] != g.text:
            continue  # P + g did not tokenize as P's tokens + g: this prompt cannot test alignment; try the next
        echoed = scored.logprobs[-1]
        assert echoed is not None
        rec = {"prompt": prompt, "generated": g.text, "generated_logprob": g.logprob, "echoed_logprob": echoed,
               "difference": abs(echoed - g.logprob)}
        if not _close(echoed, g.logprob, tol):
            early = (scored.tops or [{}] * n)[n - 2] if n >= 2 else {}
            if g.text in early and _close(early[g.text], g.logprob, tol):
                raise ProbeRefused(
                    "shifted_by_one",
                    f"its prompt log-probs are shifted by one position: the log-prob it gives the token {g.text!r} "
                    f"after {prompt!r} as a prompt token is {echoed:.4f}, as a generated token {g.logprob:.4f}, and "
                    f"the generated value is listed one position early (each prompt token's log-prob is read from "
                    f"the logits at its own position; the known bug {LLAMA_CPP_PYTHON_ISSUE})", rec)
            raise ProbeRefused(
                "misaligned", f"its prompt log-probs do not match its own generation: {g.text!r} after {prompt!r} "
                f"gets {echoed:.4f} as a prompt token and {g.logprob:.4f} as a generated token "
                f"(difference {abs(echoed - g.logprob):.4f} > {tol})", rec)
        # aligned: now the count (a server may also drop or add entries, e.g. a BOS it does not count)
        want = n + scored.completion_tokens
        if scored.entries != want:
            raise ProbeRefused("entries", f"it returns {scored.entries} log-prob entries for {n} prompt + "
                               f"{scored.completion_tokens} generated tokens (expected {want})",
                               {"prompt": prompt + g.text, "entries": scored.entries, "prompt_tokens": n})
        done.append(rec)
        if len(done) == 2:
            return done
    if not done:
        raise ProbeRefused("tokens", "none of the probe prompts tokenizes as prompt + generated token, so "
                           "alignment could not be checked")
    return done


def _pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


async def _tokens(client: PromptLogprobsClient, api: LogprobAPI, tokenizer: Any, tol: float) -> dict[str, Any]:
    """Check 3 against a local tokenizer; also whether token-id prompts are accepted (and give the same values)."""
    out: dict[str, Any] = {"texts": len(TOKEN_TEXTS), "token_ids_accepted": False}
    for text in TOKEN_TEXTS:
        ids = list(tokenizer(text)["input_ids"])
        try:
            r = await client.prompt_logprobs(text, api=api, use_cache=False, max_attempts=PROBE_ATTEMPTS)
        except RequestFailed as exc:
            raise ProbeRefused("no_prompt_logprobs", f"it returns no prompt log-probs for a probe text ({exc})") from None
        if r.token_ids is not None and all(t >= 0 for t in r.token_ids[1:]):
            same = r.token_ids[1:] == ids[1:] and len(r.token_ids) == len(ids)
            server = r.token_ids
        else:
            same = r.tokens == _pieces(tokenizer, ids)
            server = r.tokens
        if not same:
            local = ids if r.token_ids is not None else _pieces(tokenizer, ids)
            k = next((j for j, (a, b) in enumerate(zip(server, local)) if a != b), min(len(server), len(local)))
            raise ProbeRefused("tokens", f"its tokens differ from the local tokenizer's on {text[:40]!r}...: "
                               f"{len(server)} vs {len(local)} tokens, first difference at token {k} "
                               f"(server {server[k:k + 3]!r}, local {local[k:k + 3]!r})")
    text = TOKEN_TEXTS[0]
    ids = list(tokenizer(text)["input_ids"])
    try:
        as_text = await client.prompt_logprobs(text, api=api, use_cache=False, max_attempts=1)
        as_ids = await client.prompt_logprobs(ids, api=api, use_cache=False, max_attempts=1)
    except RequestFailed:
        return out
    out["token_ids_accepted"] = len(as_ids) == len(as_text) and all(
        (a is None and b is None) or (a is not None and b is not None and _close(a, b, tol))
        for a, b in zip(as_ids.logprobs, as_text.logprobs))
    return out


def _refusal(where: str, failures: dict[str, ProbeRefused]) -> UserError:
    """One line: the most telling failure (echo's, the usual shape) and what the other shape did."""
    first = failures.get("echo") or next(iter(failures.values()))
    hint = ""
    if first.symptom == "no_prompt_logprobs":
        hint = (f": the symptom of {LLAMA_CPP_ISSUE} (llama.cpp's own server has no prompt log-probs); serve the "
                "student with vLLM or score in-process with --student")
    elif first.symptom == "shifted_by_one":
        hint = "; serve the student with vLLM or score in-process with --student"
    elif first.symptom == "tokens":
        hint = "; give the tokenizer of the model the endpoint serves (tokenizer=...) or tokenizer='server'"
    others = "; ".join(f"{api}: {exc.symptom}" for api, exc in failures.items() if exc is not first)
    more = f" (also tried {others})" if others else ""
    if first.symptom == "unreachable":
        return UserError(f"{where}: {first}")
    return UserError(f"{where}: the endpoint failed the prompt log-prob probe and cannot be used for scoring: "
                     f"{first}{hint}{more}")


async def probe_endpoint(client: PromptLogprobsClient, *, tokenizer: Any = None, tokenizer_name: str | None = None,
                         api: Literal["auto", "echo", "prompt_logprobs"] = "auto", tolerance: float = 0.05,
                         where: str = "--student-base-url") -> ProbeResult:
    """Run the probe; the result of the first request shape that passes, else a :class:`UserError` (one line)."""
    apis: list[LogprobAPI] = ["echo", "prompt_logprobs"] if api == "auto" else [api]
    failures: dict[str, ProbeRefused] = {}
    for shape in apis:
        try:
            alignment = await _alignment(client, shape, tolerance)
            tokens = await _tokens(client, shape, tokenizer, tolerance) if tokenizer is not None else {}
        except ProbeRefused as exc:
            failures[shape] = exc
            if exc.symptom == "unreachable":
                break
            continue
        local = tokenizer is not None
        return ProbeResult(True, shape, "local" if local else "server",
                           "token_ids" if tokens.get("token_ids_accepted") else "text",
                           tokenizer_name if local else None, tolerance, alignment, tokens,
                           {k: f"{v.symptom}: {v}" for k, v in failures.items()})
    raise _refusal(f"{where} {client.base_url}", failures)


__all__ = ["probe_endpoint", "ProbeResult", "ProbeRefused", "LLAMA_CPP_PYTHON_ISSUE", "LLAMA_CPP_ISSUE"]
