"""Fast batched target-span losses: many (ids, start) sequences in length buckets, one forward each.

Per sequence the result equals ``model(ids, labels=labels).loss`` with ``labels[:start] = -100`` (mean
cross-entropy over the target tokens), computed for many sequences at once:

* all sequences of all samples and all four passes go into one pool, grouped by wrapper (``Sequence_.group``),
  sorted by length and cut into micro-batches of similar length under a padded-token budget (right padding +
  attention mask; real tokens keep positions 0..n-1);
* **shared prefix**: the wrapped passes of every sample start with the same tokens (vicuna's system prompt and
  ``USER:``; for the reverse pass also the reverse query's first sentence). The longest common *token* prefix of a
  group (checked on the actual ids, never assumed) runs once; its key/value cache is reused by every sequence of the
  group, so those tokens are not recomputed per sample and per pass;
* the LM head (576 x 49152 for SmolLM2-135M, a fifth of its FLOPs) runs only on target positions, in chunks, so
  prompt positions never get logits and memory is bounded by ``logit_chunk x vocab``, not ``tokens x vocab``;
* per-sequence means come from a segment sum (``index_add_``); nothing loops over tokens in Python.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from reflectkit.scoring.plan import Sequence_


def _body_and_head(model: Any) -> tuple[Any, Any] | None:
    """The decoder body and LM head, when logits are a plain linear map of the last hidden state."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return None
    try:
        body = model.get_decoder()
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if body is None or head is None or body is model:
        return None
    ok = getattr(model, "_reflectkit_head_is_linear", None)
    if ok is None:  # some models rescale logits inside forward (logits_scaling, lm_head_multiplier...): check once
        with torch.inference_mode():
            ids = torch.arange(1, 9, device=next(model.parameters()).device)[None, :] % max(2, head.weight.shape[0])
            want = model(input_ids=ids).logits.float()
            got = head(body(input_ids=ids).last_hidden_state).float()
        ok = bool(torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max().clamp(min=1.0))))
        try:
            model._reflectkit_head_is_linear = ok
        except (AttributeError, TypeError):
            pass
    return (body, head) if ok else None


def _can_share_prefix(model: Any) -> bool:
    cfg = getattr(model, "config", None)
    return not (getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True))


def buckets(lengths: Sequence[int], token_budget: int, *, slack: float = 1.15) -> list[list[int]]:
    """Indices in micro-batches of similar length: ``rows * max_len <= token_budget`` and the longest at most
    ``slack`` times (+8 tokens) the shortest, so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and ((len(cur) + 1) * lengths[i] > token_budget or lengths[i] > slack * lengths[cur[0]] + 8):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def common_prefix(seqs: Sequence[Sequence_]) -> int:
    """Tokens shared by every sequence, ending before the first predicting position (and before the last token)."""
    if len(seqs) < 2:
        return 0
    first = seqs[0].ids
    n = min(min(len(s.ids) - 1, max(s.start, 1) - 1) for s in seqs)
    n = min(n, len(first))
    for s in seqs[1:]:
        k = 0
        ids = s.ids
        while k < n and ids[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n


class _Prefix:
    """The key/value cache of a shared prefix, expanded per micro-batch."""

    def __init__(self, body: Any, ids: list[int], device: Any) -> None:
        out = body(input_ids=torch.tensor([ids], device=device), use_cache=True)
        self.kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        self.length = len(ids)

    def cache(self, batch: int) -> Any:
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1).contiguous(), v.expand(batch, -1, -1, -1).contiguous())
                                            for k, v in self.kv])


@torch.inference_mode()
def mean_losses(model: Any, seqs: Sequence[Sequence_], *, token_budget: int = 4096, logit_chunk: int = 512,
                pad_id: int = 0, share_prefix: bool = True, work: dict[str, int] | None = None) -> list[tuple[float, int]]:
    """``(mean loss, target tokens)`` per sequence; ``(nan, 0)`` where no token is a target (as the reference).

    ``work``, if given, accumulates ``body_tokens`` (positions through the transformer, padding included),
    ``padding`` and ``head_positions`` (positions through the LM head)."""
    results: list[tuple[float, int]] = [(math.nan, 0)] * len(seqs)
    device = next(model.parameters()).device
    split = _body_and_head(model)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(seqs):
        if s.n_targets > 0:
            groups.setdefault(s.group, []).append(i)
    for gname, todo in sorted(groups.items()):
        prefix = None
        if share_prefix and gname and split is not None and _can_share_prefix(model):
            n = common_prefix([seqs[i] for i in todo])
            if n >= 4:
                prefix = _Prefix(split[0], seqs[todo[0]].ids[:n], device)
        P = prefix.length if prefix else 0
        if work is not None:
            work["body_tokens"] = work.get("body_tokens", 0) + P
        for group in buckets([len(seqs[i].ids) - P for i in todo], token_budget):
            idx = [todo[g] for g in group]
            if work is not None:
                lens = [len(seqs[i].ids) - P for i in idx]
                work["body_tokens"] = work.get("body_tokens", 0) + max(lens) * len(lens)
                work["padding"] = work.get("padding", 0) + max(lens) * len(lens) - sum(lens)
                work["head_positions"] = work.get("head_positions", 0) + sum(seqs[i].n_targets for i in idx)
            _run_bucket(model, split, [seqs[i] for i in idx], idx, prefix, results, logit_chunk, pad_id, device)
    return results


def _run_bucket(model: Any, split: tuple[Any, Any] | None, bseqs: list[Sequence_], idx: list[int], prefix: _Prefix | None,
                results: list[tuple[float, int]], logit_chunk: int, pad_id: int, device: Any) -> None:
    P = prefix.length if prefix else 0
    B = len(bseqs)
    T = max(len(s.ids) for s in bseqs) - P
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P + T), dtype=torch.long)
    lo = torch.empty(B, dtype=torch.long)
    hi = torch.empty(B, dtype=torch.long)
    for r, s in enumerate(bseqs):
        ids[r, : len(s.ids) - P] = torch.tensor(s.ids[P:], dtype=torch.long)
        mask[r, : len(s.ids)] = 1
        lo[r], hi[r] = max(s.start, 1) - P, len(s.ids) - P  # target positions, relative to the suffix
    ids, mask, lo, hi = ids.to(device), mask.to(device), lo.to(device), hi.to(device)
    pos = torch.arange(T, device=device)
    tmask = (pos[None, :] >= lo[:, None]) & (pos[None, :] < hi[:, None])
    rows, cols = tmask.nonzero(as_tuple=True)
    targets = ids[rows, cols]
    if split is not None:
        body, head = split
        kwargs: dict[str, Any] = {"past_key_values": prefix.cache(B), "use_cache": True} if prefix else {}
        hidden = body(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        h = hidden[rows, cols - 1]  # lo >= 1 relative to the suffix, so cols - 1 >= 0
        del hidden
        nll = torch.cat([
            torch.nn.functional.cross_entropy(head(h[c : c + logit_chunk]).float(), targets[c : c + logit_chunk], reduction="none")
            for c in range(0, h.shape[0], logit_chunk)
        ])
    else:  # generic path: full logits of this micro-batch
        logits = model(input_ids=ids, attention_mask=mask).logits
        nll = torch.nn.functional.cross_entropy(logits[rows, cols - 1].float(), targets, reduction="none")
        del logits
    sums = torch.zeros(B, dtype=torch.float64, device=device).index_add_(0, rows, nll.double())
    counts = tmask.sum(dim=1)
    for r, i in enumerate(idx):
        results[i] = (float(sums[r] / counts[r]), int(counts[r]))
