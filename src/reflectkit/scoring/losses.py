"""Fast batched target-span losses: many (ids, start) sequences in length buckets, one forward each.

Per sequence the result equals ``model(ids, labels=labels).loss`` with ``labels[:start] = -100`` (mean
cross-entropy over the target tokens), computed for a whole bucket at once:

* all sequences of all samples and all four passes go into one pool, sorted by length and cut into micro-batches
  under a padded-token budget (right padding + attention mask; real tokens keep positions 0..n-1);
* the transformer body runs once per micro-batch; the LM head (the largest matmul for a small student: 576 x 49152
  for SmolLM2-135M) runs only on target positions, in chunks, so prompt positions never get logits and memory is
  bounded by ``logit_chunk x vocab`` rather than ``tokens x vocab``;
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
    return body, head


def buckets(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices grouped into micro-batches of similar length with ``rows * max_len <= token_budget`` (>= 1 row)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > token_budget:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


@torch.inference_mode()
def mean_losses(model: Any, seqs: Sequence[Sequence_], *, token_budget: int = 4096, logit_chunk: int = 512,
                pad_id: int = 0) -> list[tuple[float, int]]:
    """``(mean loss, target tokens)`` per sequence; ``(nan, 0)`` where no token is a target (as the reference)."""
    results: list[tuple[float, int]] = [(math.nan, 0)] * len(seqs)
    todo = [i for i, s in enumerate(seqs) if s.n_targets > 0]
    device = next(model.parameters()).device
    split = _body_and_head(model)
    for group in buckets([len(seqs[i].ids) for i in todo], token_budget):
        idx = [todo[g] for g in group]
        T = max(len(seqs[i].ids) for i in idx)
        ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        lo = torch.empty(len(idx), dtype=torch.long)
        hi = torch.empty(len(idx), dtype=torch.long)
        for r, i in enumerate(idx):
            s = seqs[i]
            ids[r, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
            mask[r, : len(s.ids)] = 1
            lo[r], hi[r] = max(s.start, 1), len(s.ids)
        ids, mask = ids.to(device), mask.to(device)
        pos = torch.arange(T, device=device)
        tmask = (pos[None, :] >= lo.to(device)[:, None]) & (pos[None, :] < hi.to(device)[:, None])  # target positions
        rows, cols = tmask.nonzero(as_tuple=True)
        targets = ids[rows, cols]
        if split is not None:
            body, head = split
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            h = hidden[rows, cols - 1]
            del hidden
            nll = torch.cat([
                torch.nn.functional.cross_entropy(head(h[c : c + logit_chunk]).float(), targets[c : c + logit_chunk],
                                                  reduction="none")
                for c in range(0, h.shape[0], logit_chunk)
            ])
        else:  # generic path: full logits of this micro-batch
            logits = model(input_ids=ids, attention_mask=mask).logits
            nll = torch.nn.functional.cross_entropy(logits[rows, cols - 1].float(), targets, reduction="none")
            del logits
        sums = torch.zeros(len(idx), dtype=torch.float64, device=device).index_add_(0, rows, nll.double())
        counts = tmask.sum(dim=1)
        for r, i in enumerate(idx):
            results[i] = (float(sums[r] / counts[r]), int(counts[r]))
    return results
