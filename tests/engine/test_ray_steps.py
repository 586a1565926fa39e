"""``decontaminate`` and ``generate`` on the Ray executor (a local cluster) give the local executor's output.

``recycle`` and ``score`` are in test_ray_executor.py. Here: a dataset step whose embeddings are computed by Ray
actors while its plan stays on the driver (engine/ray_embed.py), and a row step holding a local GGUF model (the
embedded SmolLM2, one per actor).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from reflectkit.embed import cache_for, missing
from reflectkit.engine.executors import run_with_executor
from reflectkit.engine.ray_executor import RayExecutor

sys.path.insert(0, str(ROOT / "tests" / "decontam"))
from decontam_inputs import make_inputs  # noqa: E402

pytestmark = pytest.mark.slow


def _decontam(d: dict[str, Any], tmp: Path, name: str, executor: Any, cache: Path) -> Any:
    return run_with_executor("decontaminate", str(d["train"]), tmp / f"{name}.jsonl", executor=executor,
                             against=[str(d["bench"])], bench_map=d["bench_map"], ngram=False, mark_only=True,
                             run_dir=tmp / "runs" / name, cache_dir=cache)


def test_decontaminate_embeddings_on_ray_match_local(ray_cluster: Any, shared_data: Path, tmp_path: Path) -> None:
    d = make_inputs(shared_data, tmp_path)
    local = _decontam(d, tmp_path, "local", "local", tmp_path / "cache-local")
    ex = RayExecutor(workers=2)
    cache = tmp_path / "cache-ray"
    dist = _decontam(d, tmp_path, "ray", ex, cache)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert dist.report_jsonl.read_bytes() == local.report_jsonl.read_bytes()
    assert dist.counts == local.counts and sum(dist.counts.values()) == 12
    assert "contaminated" in dist.counts  # the verbatim copy at least: the comparison is not of two empty reports
    # the 12 rows' texts were embedded by the actors and stored by the driver; the plan found them in the cache
    rows = [json.loads(x) for x in d["train"].read_text().splitlines()]
    texts = [f"{r['instruction']}\n{r['input']}" if r["input"] else r["instruction"] for r in rows]  # what is embedded
    bench = {json.loads(x)["problem"] for x in d["bench"].read_text().splitlines()}  # embedded first, locally
    fresh = len(set(texts) - bench)
    assert 0 < fresh < len(set(texts))  # the verbatim copy of a benchmark question was already cached
    assert ex.embedding["embeddings_computed"] == fresh and missing(texts, cache_for(cache)) == []
    manifest = json.loads(dist.manifest_path.read_text())
    assert manifest["executor"]["kind"] == "ray" and manifest["executor"]["embedding"]["embeddings_computed"] == fresh
    # a second run against the same cache computes nothing on the cluster and writes the same bytes
    again = RayExecutor(workers=2)
    _decontam(d, tmp_path, "ray2", again, cache)
    assert again.embedding["embeddings_computed"] == 0
    assert again.embedding["embeddings_cached_before"] == len(set(texts))
    assert (tmp_path / "ray2.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_generate_with_a_local_gguf_on_ray_matches_local(ray_cluster: Any, tmp_path: Path) -> None:
    kw = dict(limit=2, max_tokens=8)
    local = run_with_executor("generate", "gsm8k", tmp_path / "local.jsonl", executor="local",
                              run_dir=tmp_path / "l", cache_dir=tmp_path / "cache-l", **kw)
    ex = RayExecutor(workers=2)
    dist = run_with_executor("generate", "gsm8k", tmp_path / "ray.jsonl", executor=ex, run_dir=tmp_path / "r",
                             cache_dir=tmp_path / "cache-r", **kw)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    rows = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["gsm8k-0", "gsm8k-1"] and all(r["response"] for r in rows)
    assert dist.counts == local.counts and ex.dispatched == 2
    assert ex.writer_stats()["duplicate_calls"] == 0
