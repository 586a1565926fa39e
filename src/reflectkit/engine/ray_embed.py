"""Sentence embeddings on a Ray cluster, for dataset steps that embed every row (``decontaminate --embedding``).

The driver owns the embedding cache as it owns the response cache: it looks every text up first, sends only the
misses to an actor pool (Ray Data ``map_batches``, one embedder per actor, a GPU each when the cluster has GPUs),
and writes each batch of vectors into the cache as it streams back. The step then reads its embeddings from the
cache on the driver exactly as in a local run, so everything after the embedding (the top-k search, thresholds,
the judge) is unchanged, and a run killed half-way keeps the batches already stored.

The vectors are those of the same model on the same texts; the batches differ from a local run's (a local run
embeds each chunk of 8,192 rows in one call), which can move a similarity in its last float32 bits, far below the
4 decimals recorded in the output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from reflectkit.errors import UserError

#: texts per actor call (each call embeds them in model batches of the step's ``batch_size``)
TEXTS_PER_TASK = 1024


class _Embedder:
    """The callable class Ray Data runs in each actor: loads the sentence embedder once, embeds batches."""

    def __init__(self, batch_size: int, device: str | None) -> None:
        from reflectkit.embed import load_model

        self.batch_size, self.device = batch_size, device
        load_model(device)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from reflectkit.embed import compute

        return {"key": batch["key"], "vec": compute(list(batch["text"]), batch_size=self.batch_size,
                                                    device=self.device)}


def embed_on_ray(ray: Any, texts: Iterable[str], *, cache_dir: Path | None, batch_size: int, workers: int,
                 cpus: float, gpus: float, max_task_retries: int,
                 texts_per_task: int = TEXTS_PER_TASK) -> dict[str, Any]:
    """Compute and cache the embeddings of the ``texts`` the cache lacks; returns what was done (for the manifest)."""
    from reflectkit.embed import cache_for, missing

    cache = cache_for(cache_dir)
    texts = list(texts)
    todo = missing(texts, cache)
    stats: dict[str, Any] = {"embeddings_computed": 0, "embeddings_cached_before": len(set(texts)) - len(todo),
                             "embed_s": 0.0}
    if not todo:
        return stats
    t0 = time.monotonic()
    ds = ray.data.from_items([{"key": k, "text": t} for k, t in todo],
                             override_num_blocks=max(1, min(-(-len(todo) // texts_per_task), 4 * workers)))
    out = ds.map_batches(_Embedder, fn_constructor_args=(batch_size, "cuda" if gpus else None),
                         batch_size=texts_per_task, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
                         num_cpus=cpus, num_gpus=gpus, batch_format="numpy", max_restarts=-1,
                         max_task_retries=max_task_retries)
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            vecs = np.asarray(batch["vec"], dtype=np.float32)
            cache.put_many({str(k): v for k, v in zip(batch["key"], vecs)})  # durable as it arrives
            stats["embeddings_computed"] += len(vecs)
    except Exception as exc:  # the actors kept dying: what was stored stays; a re-run computes only the rest
        from reflectkit.engine.ray_executor import _first_line

        raise UserError(f"embedding on Ray failed after {max_task_retries} retries ({_first_line(exc)}); "
                        f"{stats['embeddings_computed']} of {len(todo)} embeddings were cached, re-run to "
                        "compute the rest", exit_code=1) from None
    stats["embed_s"] = round(time.monotonic() - t0, 3)
    return stats


__all__ = ["embed_on_ray", "TEXTS_PER_TASK"]
