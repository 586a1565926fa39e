"""The four passes of the published recipe from an endpoint's prompt log-probs.

Each pass of tianyi-lab/Reflection_Tuning ``selection_code/data_analysis.py`` (see :mod:`reflectkit.scoring.plan`)
is a mean of ``-log p(token | tokens before it)`` over a span of a truncated token sequence. A causal model's
log-prob of token ``t`` depends only on tokens ``< t``, so the prompt log-probs an endpoint returns for a text are
the reference's values for every truncation of that text: truncating the server's token list after the fact is
exactly the reference's ``encode(text, truncation=True, max_length=m)``. The rules are applied to:

* the local tokenizer's tokens, when the probe found them equal to the server's (``tokenization: local``): the plans
  are :func:`~reflectkit.scoring.plan.build_plans`'s, as in-process; token ids are sent (already truncated) where
  the server accepts them, else the text, and then every answer must have as many tokens as the local tokenizer
  gives (else the row fails with both counts);
* the server's own tokens (``tokenization: server``): the lengths the recipe needs (the wrapped prompt, the reverse
  query, the text before the target span) are the server's token counts of those texts, asked for like the rest
  (and cached). ``ins_len``/``res_len`` then count any special token the server adds.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Sequence

from reflectkit.llm.base import FatalModelError
from reflectkit.llm.prompt_logprobs import Prompt, PromptLogprobs, PromptLogprobsClient
from reflectkit.scoring.coherence import coherences
from reflectkit.scoring.metrics import score_dict
from reflectkit.scoring.plan import GROUPS, PARTS, Plan, Sequence_, Tokenize, build_plans
from reflectkit.scoring.probe import ProbeResult
from reflectkit.scoring.wrappers import Wrapper

Triple = tuple[str, str, str]
#: one triple's outcome: its score dict (None: empty output, nothing to score) or why it failed
Outcome = dict[str, Any] | None | Exception


class SpanError(Exception):
    """The endpoint's answer cannot give this pass's loss (a token count that differs, a null log-prob)."""


def span_loss(logprobs: Sequence[float | None], keep: int, start: int) -> tuple[float, int]:
    """Mean ``-log p`` of tokens ``max(start, 1) <= t < keep`` (``(nan, 0)`` when none), as ``model(ids,
    labels=labels).loss`` with ``labels[:start] = -100`` on the first ``keep`` tokens."""
    lo = max(start, 1)
    if keep <= lo:
        return math.nan, 0
    vals = logprobs[lo:keep]
    if any(v is None for v in vals):
        raise SpanError(f"the endpoint returned a null log-prob inside the scored span ({lo}..{keep})")
    return -math.fsum(vals) / len(vals), len(vals)  # type: ignore[arg-type]


class _Fetcher:
    """Each distinct prompt is asked for once per batch (passes and variants share texts)."""

    def __init__(self, client: PromptLogprobsClient, api: Any) -> None:
        self.client = client
        self.api = api
        self._tasks: dict[Any, asyncio.Task[PromptLogprobs]] = {}

    def __call__(self, prompt: Prompt) -> Awaitable[PromptLogprobs]:
        key = prompt if isinstance(prompt, str) else tuple(prompt)
        if key not in self._tasks:
            self._tasks[key] = asyncio.ensure_future(self.client.prompt_logprobs(prompt, api=self.api))
        return self._tasks[key]


@dataclass
class EndpointScorer:
    """Scores triples through an endpoint that passed the probe (``probe``)."""

    probe: ProbeResult
    wrapper: Wrapper
    tokenize: Tokenize | None  # the local tokenizer, when ``probe.tokenization == "local"``
    max_length: int = 2048
    coherence: bool = True
    cache_dir: Path | None = None

    async def score(self, client: PromptLogprobsClient, triples: Sequence[Triple]) -> list[tuple[Outcome, int]]:
        """Per triple: (its score dict, None for an empty output, or the exception that failed it; the prompt
        tokens its passes took). A fatal endpoint error (key, model) is raised."""
        fetch = _Fetcher(client, self.probe.api)
        keep = [k for k, t in enumerate(triples) if t[2].strip()]
        if self.probe.tokenization == "local":
            assert self.tokenize is not None
            plans = build_plans([triples[k] for k in keep], self.wrapper, self.tokenize, self.max_length)
            coros = [self._local(fetch, p) for p in plans]
        else:
            coros = [self._server(fetch, triples[k]) for k in keep]
        results = await asyncio.gather(*coros, return_exceptions=True)
        for r in results:
            if isinstance(r, FatalModelError):
                raise r
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        ok = [(k, r) for k, r in zip(keep, results) if not isinstance(r, BaseException)]
        cohs = coherences([triples[k] for k, _ in ok], enabled=self.coherence, cache_dir=self.cache_dir)
        out: list[tuple[Outcome, int]] = [(None, 0)] * len(triples)
        for k, r in zip(keep, results):
            if isinstance(r, BaseException):
                out[k] = (r, 0)  # type: ignore[assignment]
        for (k, (losses, plan, tokens)), c in zip(ok, cohs):
            out[k] = (score_dict(plan, losses, c, triples[k][2]), tokens)
        return out

    async def _local(self, fetch: _Fetcher, plan: Plan) -> tuple[dict[str, tuple[float, int]], Plan, int]:
        ids_ok = self.probe.prompt_as == "token_ids"
        losses: dict[str, tuple[float, int]] = {}
        tokens = 0
        for part in PARTS:
            seq = plan.seqs[part]
            if seq.n_targets == 0:  # nothing to predict: no request (the in-process scorer skips it too)
                losses[part] = (math.nan, 0)
                continue
            r = await fetch(seq.ids if ids_ok else seq.text)
            want = len(seq.ids) if ids_ok else seq.full_len
            if len(r) != want:
                raise SpanError(f"the endpoint tokenized the {part} text into {len(r)} tokens, the local tokenizer "
                                f"into {want}: they differ on this row")
            losses[part] = span_loss(r.logprobs, len(seq.ids), seq.start)
            tokens += len(r)
        return losses, plan, tokens

    async def _server(self, fetch: _Fetcher, t: Triple) -> tuple[dict[str, tuple[float, int]], Plan, int]:
        ins, inp, out = t
        L = self.max_length
        prompt, rev = self.wrapper.wrap(ins, inp), self.wrapper.reverse(out)
        whole, whole_rev = prompt + out, rev + ins + inp
        pre3 = whole_rev[: whole_rev.rfind(ins)]
        # pre4 = whole[:whole.rfind(out)] is always `prompt`: the output is a suffix of `whole`
        ins_text, len_text = ins + inp, (f"{ins}\n{inp}" if inp else ins)
        texts = [ins_text, out, whole_rev, whole, prompt, rev, pre3, len_text]
        got = await asyncio.gather(*(fetch(x) for x in texts))
        r_ins, r_out, r_wrev, r_whole, r_prompt, r_rev, r_pre3, r_len = got
        ins_len, rev_len = min(len(r_prompt), L), min(len(r_rev), L)
        spec = {"ins_alone": (r_ins, L - rev_len + 1, 0), "out_alone": (r_out, L - ins_len + 1, 0),
                "ins_condition": (r_wrev, L, len(r_pre3)), "out_condition": (r_whole, L, len(r_prompt))}
        losses: dict[str, tuple[float, int]] = {}
        seqs: dict[str, Sequence_] = {}
        for part, (r, m, start) in spec.items():
            n = min(len(r), m)
            seqs[part] = Sequence_([], start, len(r) > m, GROUPS[part], len(r))
            losses[part] = span_loss(r.logprobs, n, start)
        plan = Plan(seqs, len(r_len), len(r_out), [p for p in PARTS if seqs[p].truncated])
        return losses, plan, sum(len(r) for r in (r_ins, r_out, r_wrev, r_whole))


__all__ = ["EndpointScorer", "SpanError", "span_loss"]
