"""Hashed word n-gram overlap (the GPT-3 / lm-eval-harness convention).

Text is normalised (NFKC, lowercase, every run of punctuation, underscores and whitespace folded into one word
break) and split into words. A training row is flagged when one of its n-grams (default n = 13) also occurs in a
benchmark item. A benchmark text shorter than n words but at least ``min_words`` long counts as one n-gram of its
own length (GPT-3 used the same rule, with 8 as the minimum), so short prompts are still checked; shorter ones
cannot be checked by overlap at all and are counted as such.

Words are hashed to 64 bits (blake2b), n-grams by a polynomial over the word hashes computed with numpy over a
whole chunk of rows at once. The benchmark index (sorted hashes) is built once; every hash hit is verified word
by word, so a hash collision can never flag a row.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

_WORD_RE = re.compile(r"[^\W_]+")
_BASE = np.uint64(0x9E3779B97F4A7C15)
MIN_WORDS = 8


def words(text: str) -> list[str]:
    """Normalised words of ``text``: lowercase; punctuation, underscores and whitespace folded."""
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


class _Vocab:
    def __init__(self) -> None:
        self._h: dict[str, int] = {}

    def ids(self, toks: Sequence[str]) -> list[int]:
        h = self._h
        out = []
        for t in toks:
            v = h.get(t)
            if v is None:
                v = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
                h[t] = v
            out.append(v)
        return out


@dataclass
class _Segments:
    """Many texts tokenised into one flat array; segment ``s`` spans ``starts[s]:ends[s]``."""

    tokens: list[str]
    hashes: np.ndarray  # uint64 per token
    starts: np.ndarray
    ends: np.ndarray


def _segments(texts: Sequence[str], vocab: _Vocab) -> _Segments:
    toks: list[str] = []
    starts = np.zeros(len(texts), dtype=np.int64)
    ends = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        starts[i] = len(toks)
        toks.extend(words(t))
        ends[i] = len(toks)
    return _Segments(toks, np.array(vocab.ids(toks), dtype=np.uint64), starts, ends)


def _window_hashes(h: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of ``n`` tokens in the flat array (len(h) - n + 1 values, wrapping mod 2^64)."""
    m = len(h) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    out = h[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            out = out * _BASE + h[j : j + m]
    return out


def _valid_starts(seg: _Segments, n: int) -> np.ndarray:
    """Window start positions that lie entirely inside one segment."""
    parts = [np.arange(s, e - n + 1, dtype=np.int64) for s, e in zip(seg.starts, seg.ends) if e - s >= n]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class NgramHit:
    row: int  # index into the texts passed to :meth:`NgramIndex.query`
    field: int  # which of the row's fields (index into the query's field list)
    item: int  # owner (benchmark item) of the matched text
    source: int  # index of the matched text among those the index was built from
    ngram: str  # the shared words


@dataclass
class NgramIndex:
    """Sorted hashes of every benchmark n-gram, with where each came from (built once)."""

    n: int
    min_words: int
    vocab: _Vocab
    seg: _Segments
    owner: np.ndarray  # segment -> item index
    tables: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # k -> (sorted hashes, starts)
    too_short: int = 0  # benchmark texts shorter than min_words

    @classmethod
    def build(cls, texts: Sequence[str], owners: Sequence[int], *, n: int = 13, min_words: int = MIN_WORDS) -> "NgramIndex":
        """Index ``texts`` (one per benchmark field); ``owners[i]`` is the benchmark item ``texts[i]`` belongs to."""
        if n < 1:
            raise ValueError("n must be >= 1")
        vocab = _Vocab()
        seg = _segments(texts, vocab)
        idx = cls(n, min(min_words, n), vocab, seg, np.asarray(owners, dtype=np.int64))
        lengths = seg.ends - seg.starts
        # full-length n-grams
        idx._add_table(n, _valid_starts(seg, n))
        # short texts: the whole text is one k-gram
        short = np.nonzero((lengths < n) & (lengths >= idx.min_words))[0]
        for k in sorted(set(lengths[short].tolist())):
            sel = short[lengths[short] == k]
            idx._add_table(int(k), seg.starts[sel])
        idx.too_short = int(np.sum((lengths < idx.min_words) & (lengths > 0)))
        return idx

    def _add_table(self, k: int, starts: np.ndarray) -> None:
        hashes = _window_hashes(self.seg.hashes, k)[starts] if len(starts) else np.zeros(0, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        old = self.tables.get(k)
        hs, st = hashes[order], starts[order]
        if old is not None:
            hs, st = np.concatenate([old[0], hs]), np.concatenate([old[1], st])
            o2 = np.argsort(hs, kind="stable")
            hs, st = hs[o2], st[o2]
        self.tables[k] = (hs, st)

    def _segment_of(self, pos: int) -> int:
        return int(np.searchsorted(self.seg.starts, pos, side="right") - 1)

    def query(self, rows: Sequence[Sequence[str]], *, max_hits_per_pair: int = 1) -> list[NgramHit]:
        """All (row, field, item) overlaps for rows given as lists of field texts; one hit per (row, item) pair."""
        nf = max((len(r) for r in rows), default=0)
        flat = [r[f] if f < len(r) else "" for r in rows for f in range(nf)]
        seg = _segments(flat, self.vocab)
        hits: list[NgramHit] = []
        seen: set[tuple[int, int]] = set()
        for k, (bh, bstarts) in self.tables.items():
            if not len(bh):
                continue
            starts = _valid_starts(seg, k)
            if not len(starts):
                continue
            wh = _window_hashes(seg.hashes, k)[starts]
            pos = np.searchsorted(bh, wh)
            pos[pos >= len(bh)] = len(bh) - 1
            cand = np.nonzero(bh[pos] == wh)[0]
            for c in cand.tolist():
                tstart = int(starts[c])
                tseg = int(np.searchsorted(seg.starts, tstart, side="right") - 1)
                # a segment can be empty, so step back to the one that really holds tstart
                while seg.ends[tseg] <= tstart:
                    tseg -= 1
                row, fld = divmod(tseg, nf)
                gram = seg.tokens[tstart : tstart + k]
                p = int(pos[c])
                while p < len(bh) and bh[p] == wh[c]:
                    bstart = int(bstarts[p])
                    if self.seg.tokens[bstart : bstart + k] == gram:  # verify: collisions never flag
                        src = self._segment_of(bstart)
                        item = int(self.owner[src])
                        if (row, item) not in seen:
                            seen.add((row, item))
                            hits.append(NgramHit(row, fld, item, src, " ".join(gram)))
                    p += 1
        hits.sort(key=lambda h: (h.row, h.item))
        return hits
