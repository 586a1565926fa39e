"""Chunked exact cosine search between benchmark items and training rows, with bounded memory.

The training embeddings arrive chunk by chunk (they need not all be in memory). For each chunk the similarity
block ``bench @ chunk.T`` is computed in slices of at most ``max_block_bytes``, and two running results are kept:

* for every benchmark item, its top-k training rows (the LLM Decontaminator candidate pairs);
* for every training row, its most similar benchmark item (so that *every* copy of a leaked item is found, not
  only the one nearest to the benchmark item).

Peak extra memory is one block plus O(items * k + rows). Inputs must be L2-normalised (cosine = dot product).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_BLOCK_BYTES = 64 << 20


@dataclass
class SearchState:
    k: int
    n_items: int
    max_block_bytes: int = DEFAULT_BLOCK_BYTES
    top_scores: np.ndarray = field(init=False)  # (items, k), descending
    top_rows: np.ndarray = field(init=False)  # (items, k), -1 where fewer than k rows seen
    row_best_score: list[np.ndarray] = field(default_factory=list)
    row_best_item: list[np.ndarray] = field(default_factory=list)
    rows_seen: int = 0

    def __post_init__(self) -> None:
        self.top_scores = np.full((self.n_items, self.k), -np.inf, dtype=np.float32)
        self.top_rows = np.full((self.n_items, self.k), -1, dtype=np.int64)

    def add(self, bench: np.ndarray, chunk: np.ndarray) -> None:
        """Fold a chunk of training embeddings (rows ``rows_seen .. rows_seen+len(chunk)``) into the results."""
        m = bench.shape[0]
        step = max(1, self.max_block_bytes // max(1, 4 * m))
        for s in range(0, chunk.shape[0], step):
            block = bench @ chunk[s : s + step].T  # (m, c) float32
            offset = self.rows_seen + s
            best = block.argmax(axis=0)
            self.row_best_item.append(best.astype(np.int64))
            self.row_best_score.append(block[best, np.arange(block.shape[1])].astype(np.float32))
            self._merge_topk(block, offset)
        self.rows_seen += chunk.shape[0]

    def _merge_topk(self, block: np.ndarray, offset: int) -> None:
        c = block.shape[1]
        kk = min(self.k, c)
        if c > kk:
            part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(c), (block.shape[0], c))
        scores = np.take_along_axis(block, part, axis=1)
        all_s = np.concatenate([self.top_scores, scores], axis=1)
        all_r = np.concatenate([self.top_rows, part + offset], axis=1)
        # stable tie-break: higher score first, then lower row index
        order = np.lexsort((all_r, -all_s), axis=1)[:, : self.k]
        self.top_scores = np.take_along_axis(all_s, order, axis=1)
        self.top_rows = np.take_along_axis(all_r, order, axis=1)

    def row_best(self) -> tuple[np.ndarray, np.ndarray]:
        """(best item per row, its score) for every row seen."""
        if not self.row_best_item:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(self.row_best_item), np.concatenate(self.row_best_score)


def top_k_search(bench: np.ndarray, train: np.ndarray, k: int = 1, *, chunk_rows: int = 8192,
                 max_block_bytes: int = DEFAULT_BLOCK_BYTES) -> SearchState:
    """Convenience wrapper over in-memory arrays (the pipeline streams chunks into :class:`SearchState`)."""
    st = SearchState(k, bench.shape[0], max_block_bytes)
    for s in range(0, train.shape[0], chunk_rows):
        st.add(bench, train[s : s + chunk_rows])
    return st
