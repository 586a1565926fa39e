"""Local executor vs the Ray executor (1 and 2 workers) on an I/O-bound and a compute-bound step.

* I/O-bound: ``recycle --phase response`` against the loopback server (``loopback_server.py``: no model, a fixed
  latency), so the figure is the executors' own throughput at the same concurrency.
* Compute-bound: ``score`` with the embedded student (SmolLM2-135M) on CPU, one torch thread per process.
* Embedding-bound: ``decontaminate --embedding`` (no n-grams) against the 80 Vicuna questions: locally the rows are
  embedded on the driver; on Ray by an actor pool with one all-MiniLM-L6-v2 per actor (the search stays on the driver).

Printed per case: wall time, rows/s and the ratio to the local executor measured in the same run; Ray's start-up
time (``ray.init`` of a local cluster) and the per-row scheduling overhead ((Ray wall - local wall) / rows, the
start-up excluded); peak memory (driver and all Ray worker processes, sampled) and the object store's spill; the
duplicate oracle calls (responses paid for twice: the cache writer's count and the server's count minus canaries and
rows), which must be 0.

    .venv/bin/python benchmarks/bench_ray.py                       # 96 I/O rows, 16 score rows, 1000 embed rows
    .venv/bin/python benchmarks/bench_ray.py --io-rows 400 --score-rows 64 --device cuda   # a GPU machine

On a 2-core machine Ray cannot beat local for compute (the cores are the same; Ray adds processes, one model per
actor and serialisation); the point of the figures there is the overhead. Scaling on a real cluster comes from more
cores/GPUs per actor pool, which this machine does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instructions" / "alpaca_cherry_5pct.json"


class MemSampler:
    """Peak RSS (MiB) of the Ray worker processes (``ray::`` in their command line), sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak_workers = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                try:
                    cmd = " ".join(p.info["cmdline"] or [])
                    if "ray::" in cmd or "MapWorker" in cmd:
                        total += p.info["memory_info"].rss
                except Exception:
                    continue
            self.peak_workers = max(self.peak_workers, total / 2**20)
            self._stop.wait(0.2)

    def __enter__(self) -> "MemSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(2)


def spilled_mib() -> float:
    """MiB the object store spilled to disk, from the raylet's log (it logs "Spilled N MiB" when it spills; Ray's
    memory summary needs grpc, which the ray wheel alone does not bring)."""
    import ray

    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path())
    except Exception:
        return float("nan")
    spilled = 0.0
    for log in (session / "logs").glob("raylet*.out"):
        for m in re.finditer(r"Spilled (\d+) MiB", log.read_text(errors="replace")):
            spilled = max(spilled, float(m.group(1)))
    return spilled


def run_case(step: str, executor: Any, out: Path, work: Path, name: str, **kw: Any) -> tuple[float, Any]:
    from reflectkit.engine.executors import run_with_executor

    t0 = time.perf_counter()
    s = run_with_executor(step, DATA, out, executor=executor, run_dir=work / "runs" / name,
                          cache_dir=work / f"cache-{name}", progress=False, **kw)
    return time.perf_counter() - t0, s


def local_vs_ray(step: str, work: Path, tag: str, title: str,
                 detail: Callable[[Any], tuple[dict[str, Any], str]], **kw: Any) -> dict[str, Any]:
    """``step`` on the local executor, then on Ray with 1 and 2 workers: wall, rows/s, ratio, identical output;
    ``detail(executor)`` adds the case's own figures (a dict for the JSON, a phrase for the line)."""
    from reflectkit.engine.ray_executor import RayExecutor

    wall, s = run_case(step, "local", work / f"{tag}-local.jsonl", work, f"{tag}-local", **kw)
    rows = s.rows_in  # what --limit left (a limit beyond the file's rows: the file's rows)
    out: dict[str, Any] = {"local": {"wall_s": wall, "rows_s": rows / wall}, "rows": rows}
    print(f"\n{title.format(rows=rows)}")
    print(f"  local      {wall:7.2f} s  {rows / wall:7.2f} rows/s  1.00x")
    for n in (1, 2):
        ex = RayExecutor(workers=n)
        wall, _ = run_case(step, ex, work / f"{tag}-ray{n}.jsonl", work, f"{tag}-ray{n}", **kw)
        same = (work / f"{tag}-ray{n}.jsonl").read_bytes() == (work / f"{tag}-local.jsonl").read_bytes()
        extra, phrase = detail(ex)
        out[f"ray{n}"] = {"wall_s": wall, "rows_s": rows / wall, "identical": same, **extra}
        print(f"  ray x{n}     {wall:7.2f} s  {rows / wall:7.2f} rows/s  {out['local']['wall_s'] / wall:4.2f}x  "
              f"identical={same}; {phrase}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--io-rows", type=int, default=96)
    ap.add_argument("--score-rows", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--lat-min", type=float, default=0.2)
    ap.add_argument("--lat-max", type=float, default=0.3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-score", action="store_true")
    ap.add_argument("--embed-rows", type=int, default=1000, help="rows for the decontaminate case (0: skip it)")
    a = ap.parse_args()

    from loopback_server import ServerThread

    import ray

    from reflectkit.engine.ray_executor import RayExecutor
    from reflectkit.llm.spec import ModelSpec

    os.environ.setdefault("RK_BENCH_NOKEY", "unused")
    os.environ.setdefault("REFLECTKIT_STUDENT_CACHE", str(ROOT / "test-artifacts" / "student-cache" / "students"))
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                          time.gmtime())}
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    results["ray_start_s"] = round(time.perf_counter() - t0, 2)
    print(f"ray start-up (local cluster, {os.cpu_count()} CPUs): {results['ray_start_s']:.2f} s")
    try:
        with MemSampler() as mem:
            # ---------------------------------------------------------------- I/O-bound
            with ServerThread(lat_min=a.lat_min, lat_max=a.lat_max) as srv:
                spec = ModelSpec(model="loopback", base_url=srv.base_url, api_key_env="RK_BENCH_NOKEY",
                                 canary_every=0)
                kw = dict(models={"oracle": spec}, limit=a.io_rows, phase="response", concurrency=a.concurrency)
                before = srv.stats.served
                wall, s = run_case("recycle", "local", work / "io-local.jsonl", work, "io-local", **kw)
                io = {"local": {"wall_s": wall, "rows_s": a.io_rows / wall}}
                print(f"\nI/O-bound: recycle, {a.io_rows} rows, loopback latency {a.lat_min}-{a.lat_max} s, "
                      f"concurrency {a.concurrency} (physical limit {a.concurrency / ((a.lat_min + a.lat_max) / 2):.1f}"
                      " rows/s)")
                print(f"  local      {wall:7.2f} s  {a.io_rows / wall:7.1f} rows/s  1.00x")
                for n in (1, 2):
                    before = srv.stats.served
                    ex = RayExecutor(workers=n)
                    wall, s = run_case("recycle", ex, work / f"io-ray{n}.jsonl", work, f"io-ray{n}", **kw)
                    served = srv.stats.served - before
                    canaries = int(s.manifest["models"]["oracle"]["verification"]["canary_calls"])  # start only
                    same = (work / f"io-ray{n}.jsonl").read_bytes() == (work / "io-local.jsonl").read_bytes()
                    dup = ex.writer_stats()["duplicate_calls"]
                    pool = sum(ex.first_result_s)  # actor pool start (+ the first batch's latency)
                    io[f"ray{n}"] = {"wall_s": wall, "rows_s": a.io_rows / wall, "identical": same,
                                     "duplicate_calls": dup, "server_extra_calls": served - canaries - a.io_rows,
                                     "pool_start_s": pool,
                                     "overhead_ms_per_row": 1000 * (wall - pool - io["local"]["wall_s"]) / a.io_rows}
                    print(f"  ray x{n}     {wall:7.2f} s  {a.io_rows / wall:7.1f} rows/s  "
                          f"{io['local']['wall_s'] / wall:4.2f}x  identical={same} duplicate calls={dup} "
                          f"(server: {served - canaries - a.io_rows}); actor pool start {pool:.2f} s, then "
                          f"{io[f'ray{n}']['overhead_ms_per_row']:.1f} ms/row over local")
                results["io"] = io
            # ---------------------------------------------------------------- compute-bound
            if not a.skip_score:
                results["score"] = local_vs_ray(
                    "score", work, "sc",
                    f"Compute-bound: score, {{rows}} rows, batch 4, {a.device}, 1 torch thread per process "
                    "(model load included)",
                    lambda ex: ({"first_result_s": sum(ex.first_result_s)},
                                f"first result after {sum(ex.first_result_s):.1f} s (actor start + student load + "
                                "one batch)"),
                    limit=a.score_rows, batch_size=4, threads=1, coherence=False, device=a.device)
            # ---------------------------------------------------------------- embedding-bound
            if a.embed_rows:
                results["embed"] = local_vs_ray(
                    "decontaminate", work, "em",
                    "Embedding-bound: decontaminate --embedding against vicuna, {rows} rows (embedder "
                    "load included)",
                    lambda ex: ({"embeddings_on_ray": ex.embedding.get("embeddings_computed", 0),
                                 "embed_s": ex.embedding.get("embed_s", 0.0)},
                                f"{ex.embedding.get('embeddings_computed', 0)} embeddings on the actors in "
                                f"{ex.embedding.get('embed_s', 0.0):.1f} s (actor start + embedder load included)"),
                    limit=a.embed_rows, against=["vicuna"], ngram=False, mark_only=True)
        results["peak_rss_driver_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results["peak_rss_ray_workers_mib"] = round(mem.peak_workers, 1)
        results["object_store_spilled_mib"] = spilled_mib()
        print(f"\npeak RSS: driver {results['peak_rss_driver_mib']:.0f} MiB, Ray processes (sum, sampled) "
              f"{results['peak_rss_ray_workers_mib']:.0f} MiB; object store spilled: "
              f"{results['object_store_spilled_mib']:.0f} MiB")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + json.dumps(results, default=lambda x: round(x, 3) if isinstance(x, float) else str(x)))


if __name__ == "__main__":
    main()
