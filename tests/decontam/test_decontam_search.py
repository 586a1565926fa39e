"""Chunked top-k search against brute force and against sentence-transformers' semantic_search."""

from __future__ import annotations

import numpy as np
import torch
from sentence_transformers import util

from reflectkit.decontam.search import top_k_search


def _unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_chunked_search_equals_brute_force_with_tiny_blocks() -> None:
    rng = np.random.default_rng(0)
    bench, train = _unit(rng, 37), _unit(rng, 1001)
    st = top_k_search(bench, train, k=3, chunk_rows=128, max_block_bytes=37 * 4 * 50)  # 50 rows per block
    full = bench @ train.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :3]
    assert np.array_equal(st.top_rows, want)
    assert np.allclose(st.top_scores, np.take_along_axis(full, want, axis=1), atol=1e-6)
    best_item, best_score = st.row_best()
    assert np.array_equal(best_item, full.argmax(axis=0))
    assert np.allclose(best_score, full.max(axis=0), atol=1e-6)


def test_agrees_with_semantic_search() -> None:
    rng = np.random.default_rng(1)
    bench, train = _unit(rng, 20), _unit(rng, 500)
    st = top_k_search(bench, train, k=2, chunk_rows=77)
    ref = util.semantic_search(torch.from_numpy(bench), torch.from_numpy(train), top_k=2)
    assert [[h["corpus_id"] for h in hits] for hits in ref] == st.top_rows.tolist()


def test_fewer_rows_than_k_leaves_empty_slots() -> None:
    rng = np.random.default_rng(2)
    st = top_k_search(_unit(rng, 4), _unit(rng, 2), k=3)
    assert (st.top_rows[:, 2] == -1).all() and set(st.top_rows[:, :2].ravel().tolist()) == {0, 1}
