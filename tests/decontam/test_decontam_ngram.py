"""The hashed n-gram detector on known positives and negatives."""

from __future__ import annotations

import json

import numpy as np

from reflectkit.decontam.ngram import NgramIndex, _window_hashes, words


def test_words_fold_case_punctuation_and_whitespace() -> None:
    assert words("Janet’s  ducks—lay 16_eggs!\nPer DAY.") == ["janet", "s", "ducks", "lay", "16", "eggs", "per", "day"]


def test_window_hashes_match_a_direct_computation() -> None:
    h = np.array([3, 5, 7, 11, 13], dtype=np.uint64)
    got = _window_hashes(h, 3)
    base = 0x9E3779B97F4A7C15
    want = [((a * base + b) * base + c) % (1 << 64) for a, b, c in zip([3, 5, 7], [5, 7, 11], [7, 11, 13])]
    assert got.tolist() == want


def test_verbatim_gsm8k_item_is_found_and_unrelated_rows_are_not(shared_data) -> None:
    test = [json.loads(x) for x in (shared_data / "benchmarks/gsm8k_test.jsonl").read_text().splitlines()[:200]]
    train = [json.loads(x) for x in (shared_data / "instructions/gsm8k_train.jsonl").read_text().splitlines()[:200]]
    texts = [t["question"] for t in test] + [t["answer"] for t in test]
    idx = NgramIndex.build(texts, list(range(200)) * 2, n=13)
    rows = [(f"Solve: {test[17]['question'].upper()}", "", "ok"),  # case and prefix do not hide it
            ("Explain.", "", test[42]["answer"]),  # the reference solution leaked into an output
            *[(t["question"], "", t["answer"]) for t in train[:50]]]  # same-domain negatives
    hits = idx.query(rows)
    found = {(h.row, h.item, h.field) for h in hits}
    assert (0, 17, 0) in found and (1, 42, 2) in found
    assert not [h for h in hits if h.row >= 2]
    src = {h.row: h.source for h in hits}
    assert src[0] == 17 and src[1] == 200 + 42  # question text vs answer text


def test_short_benchmark_texts_count_as_one_ngram_and_tiny_ones_are_reported() -> None:
    idx = NgramIndex.build(["Write a haiku about autumn leaves in the wind", "Hi there"], [0, 1], n=13)
    assert idx.too_short == 1
    hits = idx.query([("please write a haiku about autumn leaves, in the wind!", "", ""),
                      ("write a haiku about autumn leaves", "", ""),  # only part of the short prompt
                      ("hi there", "", "")])
    assert [(h.row, h.item) for h in hits] == [(0, 0)]


def test_a_changed_word_in_every_window_breaks_the_match() -> None:
    q = " ".join(f"w{i}" for i in range(30))
    idx = NgramIndex.build([q], [0], n=13)
    broken = q.split()
    for i in range(0, 30, 12):
        broken[i] = "x"
    assert idx.query([(" ".join(broken), "", "")]) == []
    assert len(idx.query([(q, "", "")])) == 1
