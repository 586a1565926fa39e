"""The Ray executor on a local Ray cluster (2 CPUs, started once for the session): the same output as the local
executor, the driver owning the ledger and the cache, a killed worker and a killed driver losing and duplicating
nothing.

Servers: a real llama.cpp server (``llama_server``) for the equivalence of ``recycle``; the project's loopback
server (``benchmarks/loopback_server.py``) where a kill must land while requests are in flight (a real server
answers one request at a time here, so a kill could not be timed), with verification canaries at start only
(``canary_every=0``) so that the server's request count is exactly start canaries + rows + re-sent requests.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ALPACA, ROOT
from reflectkit.engine.executors import LocalExecutor, executor_for, run_with_executor
from reflectkit.engine.ray_executor import RayExecutor
from reflectkit.errors import UserError
from reflectkit.llm.spec import ModelSpec

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_server import ServerThread

pytestmark = pytest.mark.slow


def _loopback_spec(url: str) -> ModelSpec:
    os.environ.setdefault("RK_TEST_NOKEY", "unused")
    return ModelSpec(model="loopback", base_url=url, api_key_env="RK_TEST_NOKEY", canary_every=0)


def _run(executor: Any, out: Path, tmp: Path, name: str, **kw: Any) -> Any:
    return run_with_executor("recycle", ALPACA, out, executor=executor, run_dir=tmp / "runs" / name,
                             cache_dir=tmp / f"cache-{name}", **kw)


def _canary_calls(summary: Any) -> int:
    """The endpoint calls a run spent on verification (start canaries), counted apart from the rows' calls."""
    return int(summary.manifest["models"]["oracle"]["verification"]["canary_calls"])


def test_executor_choice_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(executor_for(None), LocalExecutor)
    with pytest.raises(UserError, match="--executor must be one of local, ray, got 'spark'"):
        executor_for("spark")
    with pytest.raises(UserError, match="--ray-address needs --executor ray"):
        executor_for("local", ray_address="auto")
    with pytest.raises(UserError, match="--ray-workers must be at least 1"):
        RayExecutor(workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # the optional extra not installed
    with pytest.raises(UserError, match=r"--executor ray needs Ray: pip install 'reflectkit\[ray\]'"):
        executor_for("ray")


def test_recycle_on_ray_matches_local(ray_cluster: Any, llama_server: Any, tmp_path: Path) -> None:
    oracle = ModelSpec(model=llama_server.alias, base_url=llama_server.base_url, api_key_env="RK_TEST_NOKEY",
                       canary_every=0)
    os.environ.setdefault("RK_TEST_NOKEY", "unused")
    kw = dict(models={"oracle": oracle}, limit=2, phase="response", max_tokens=16, concurrency=2)
    local = _run("local", tmp_path / "local.jsonl", tmp_path, "local", **kw)
    ex = RayExecutor(workers=2)
    dist = _run(ex, tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert dist.counts == local.counts and sum(local.counts.values()) == 2
    assert ex.dispatched == 2 and ex.writer_stats() == {"puts": 2, "duplicate_calls": 0, "dropped_after_drift": 0}
    assert dist.manifest["executor"]["kind"] == "ray" and dist.calls == local.calls


def test_score_on_ray_matches_local(ray_cluster: Any, tmp_path: Path) -> None:
    kw = dict(limit=4, batch_size=2, threads=1, coherence=False)
    run_with_executor("score", ALPACA, tmp_path / "local.jsonl", executor="local", run_dir=tmp_path / "l", **kw)
    ex = RayExecutor(workers=2)
    s = run_with_executor("score", ALPACA, tmp_path / "ray.jsonl", executor=ex, run_dir=tmp_path / "r", **kw)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert s.counts == {"scored": 4} and ex.dispatched == 4


def _map_workers() -> list[Any]:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("MapWorker" in c for c in (p.info["cmdline"] or [])):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_killed_worker_rows_are_redispatched_without_paying_twice(ray_cluster: Any, tmp_path: Path) -> None:
    rows = 24
    with ServerThread(lat_min=0.3, lat_max=0.4) as srv:
        kw = dict(models={"oracle": _loopback_spec(srv.base_url)}, limit=rows, phase="response", concurrency=4)
        local = _run("local", tmp_path / "local.jsonl", tmp_path, "local", **kw)
        start_canaries = _canary_calls(local)
        before = srv.stats.served
        killed: dict[str, Any] = {}

        def kill_one() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ws = _map_workers()
                if ws and srv.stats.served - before >= start_canaries + 6:
                    killed["in_flight"] = srv.stats.in_flight
                    ws[0].send_signal(signal.SIGKILL)
                    killed["pid"] = ws[0].pid
                    return
                time.sleep(0.05)

        t = threading.Thread(target=kill_one, daemon=True)
        t.start()
        ex = RayExecutor(workers=2)
        s = _run(ex, tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
        t.join(5)
        served = srv.stats.served - before
    assert "pid" in killed, "no worker was killed: the test did not test anything"
    assert s.counts == local.counts == {"rewritten": rows} and s.failed == 0  # 0 lost
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()  # 0 duplicated rows
    # every response was paid for once and stored once; only requests the killed worker had started and not yet
    # stored were sent again: at most its share of the concurrency (the server's in-flight count at the instant of
    # the kill undercounts them: a reply the server finished just before the kill was never stored)
    assert ex.writer_stats() == {"puts": rows, "duplicate_calls": 0, "dropped_after_drift": 0}
    per_worker = -(-kw["concurrency"] // 2)
    assert served - start_canaries - rows <= max(per_worker, killed["in_flight"])


def test_cache_hits_are_answered_on_the_driver_never_dispatched(ray_cluster: Any, tmp_path: Path) -> None:
    rows = 12
    with ServerThread(lat_min=0.02, lat_max=0.05) as srv:
        kw = dict(models={"oracle": _loopback_spec(srv.base_url)}, limit=rows, phase="response", concurrency=4)
        local = _run("local", tmp_path / "local.jsonl", tmp_path, "shared", **kw)  # fills the cache
        before = srv.stats.served
        ex = RayExecutor(workers=2)
        s = run_with_executor("recycle", ALPACA, tmp_path / "ray.jsonl", executor=ex, run_dir=tmp_path / "r",
                              cache_dir=tmp_path / "cache-shared", **kw)
        served = srv.stats.served - before
    assert ex.dispatched == 0 and ex.resolved_on_driver == rows  # nothing travelled
    assert ex.writer_stats() == {"puts": 0, "duplicate_calls": 0, "dropped_after_drift": 0}
    assert s.cache_hits == rows and served == _canary_calls(local)  # the start canaries only
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


_DRIVER = textwrap.dedent("""
    import os, sys
    from reflectkit.engine.executors import run_with_executor
    from reflectkit.engine.ray_executor import RayExecutor
    from reflectkit.llm.spec import ModelSpec
    os.environ["RK_TEST_NOKEY"] = "unused"
    url, address, out, run_dir, cache = sys.argv[1:6]
    spec = ModelSpec(model="loopback", base_url=url, api_key_env="RK_TEST_NOKEY", canary_every=0)
    run_with_executor("recycle", sys.argv[6], out, executor=RayExecutor(address, workers=2), run_dir=run_dir,
                      cache_dir=cache, models={"oracle": spec}, limit=int(sys.argv[7]), phase="response",
                      concurrency=4)
""")


def _ledger_rows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
            return int(c.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_driver_sigkill_then_rerun_resumes_byte_identical(ray_cluster: Any, tmp_path: Path) -> None:
    rows = 40
    with ServerThread(lat_min=0.2, lat_max=0.3) as srv:
        kw = dict(models={"oracle": _loopback_spec(srv.base_url)}, limit=rows, phase="response", concurrency=4)
        local = _run("local", tmp_path / "local.jsonl", tmp_path, "local", **kw)
        start_canaries = _canary_calls(local)
        before = srv.stats.served
        script = tmp_path / "driver.py"
        script.write_text(_DRIVER)
        run_dir, cache = tmp_path / "runs" / "ray", tmp_path / "cache-ray"
        address = ray_cluster.get_runtime_context().gcs_address
        proc = subprocess.Popen([sys.executable, str(script), srv.base_url, address, str(tmp_path / "ray.jsonl"),
                                 str(run_dir), str(cache), str(ALPACA), str(rows)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 150
        while _ledger_rows(run_dir / "ledger.sqlite") < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the driver finished before it could be killed"
        in_flight = srv.stats.in_flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        committed = _ledger_rows(run_dir / "ledger.sqlite")
        assert 8 <= committed < rows
        time.sleep(2)  # the dead job's actors are torn down by Ray
        ex = RayExecutor(workers=2)
        s = _run(ex, tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
        served = srv.stats.served - before
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert s.counts == {"rewritten": rows} and s.failed == 0
    assert ex.dispatched + ex.resolved_on_driver == rows - committed  # the ledger's rows were not redone
    assert ex.writer_stats()["duplicate_calls"] == 0
    # two invocations' start canaries, each row once, and at most the requests the kill cut off
    assert served - 2 * start_canaries - rows <= in_flight



def test_a_worker_that_keeps_dying_fails_its_rows_with_a_reason_and_a_rerun_finishes(ray_cluster: Any,
                                                                                     tmp_path: Path) -> None:
    rows = 12
    with ServerThread(lat_min=0.3, lat_max=0.4) as srv:
        kw = dict(models={"oracle": _loopback_spec(srv.base_url)}, limit=rows, phase="response", concurrency=2)
        local = _run("local", tmp_path / "local.jsonl", tmp_path, "local", **kw)
        killed: list[int] = []

        def kill_first_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                ws = _map_workers()
                if ws and srv.stats.in_flight:
                    ws[0].send_signal(signal.SIGKILL)
                    killed.append(ws[0].pid)
                time.sleep(0.05)

        t = threading.Thread(target=kill_first_worker, daemon=True)
        t.start()
        # no retries: the first death is final for its batch (as an actor that runs out of memory every time)
        s = _run(RayExecutor(workers=1, max_task_retries=0), tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
        t.join(5)
        assert killed, "no worker was killed: the test did not test anything"
        assert s.failed >= 1 and sum(s.counts.values()) == rows  # failed with a reason, none lost
        ledger = sqlite3.connect(tmp_path / "runs" / "ray" / "ledger.sqlite")
        reasons = [r[0] for r in ledger.execute("SELECT result FROM rows WHERE status = 'failed'")]
        ledger.close()
        assert reasons and all("worker failed after 0 retries" in r for r in reasons)
        again = _run(RayExecutor(workers=1), tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
    assert again.failed == 0 and again.counts == local.counts
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_max_cost_on_ray_stops_within_the_budget_counts_every_paid_call_and_resumes(ray_cluster: Any,
                                                                                    tmp_path: Path) -> None:
    """--max-cost on Ray: each dispatch's actors share what is left of the budget, so together they cannot cross
    it; every call a worker paid for is credited to the driver's spend (checked against the server's own count:
    the loopback server reports the same usage for every call); the re-run with a higher budget finishes with the
    bytes of an uninterrupted run."""
    rows, price = 16, 1000.0  # USD per million tokens: 130 tokens per call -> $0.13

    def spec(url: str, max_cost: float | None) -> ModelSpec:
        return _loopback_spec(url).model_copy(update={"price_in": price, "price_out": price, "max_cost": max_cost})

    with ServerThread(lat_min=0.01, lat_max=0.02) as srv:
        kw = dict(limit=rows, phase="response", concurrency=4, max_tokens=64)
        ref = _run("local", tmp_path / "ref.jsonl", tmp_path, "ref", models={"oracle": spec(srv.base_url, None)}, **kw)
        full = ref.manifest["spend"]["estimated_total"]
        per_call = full / srv.stats.served
        limit = full * 0.6
        before = srv.stats.served
        with pytest.raises(UserError) as err:
            _run(RayExecutor(workers=2), tmp_path / "ray.jsonl", tmp_path, "ray",
                 models={"oracle": spec(srv.base_url, limit)}, **kw)
        paid = srv.stats.served - before
        assert err.value.exit_code == 1 and "higher --max-cost to continue" in str(err.value)
        m1 = json.loads((tmp_path / "runs" / "ray" / "manifest.json").read_text())
        assert m1["status"] == "stopped: --max-cost reached"
        spent1 = m1["spend"]["estimated_total"]
        assert 0 < sum(m1["counts"].values()) < rows and spent1 <= limit
        assert spent1 == pytest.approx(paid * per_call)  # no paid call left uncounted
        assert not (tmp_path / "ray.jsonl").exists()

        again = _run(RayExecutor(workers=2), tmp_path / "ray.jsonl", tmp_path, "ray",
                     models={"oracle": spec(srv.base_url, full * 3)}, **kw)
    assert sum(again.counts.values()) == rows and again.failed == 0
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert again.manifest["spend"]["estimated_total"] > spent1


def test_a_fleet_on_ray_records_who_answered_each_row_and_the_endpoint_stats(ray_cluster: Any,
                                                                            tmp_path: Path) -> None:
    """Two endpoints behind one spec: the workers spread the rows over both, every row's endpoint reaches the
    driver's ledger, and the manifest's endpoint stats count the workers' calls (not only the driver's canaries)."""
    rows = 12
    with ServerThread(lat_min=0.02, lat_max=0.04) as a, ServerThread(lat_min=0.02, lat_max=0.04) as b:
        spec = _loopback_spec(a.base_url).model_copy(update={"base_urls": (a.base_url, b.base_url)})
        kw = dict(models={"oracle": spec}, limit=rows, phase="response", concurrency=4)
        local = _run("local", tmp_path / "local.jsonl", tmp_path, "local", **kw)
        s = _run(RayExecutor(workers=2), tmp_path / "ray.jsonl", tmp_path, "ray", **kw)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    con = sqlite3.connect(tmp_path / "runs" / "ray" / "ledger.sqlite")
    answered = {i: json.loads(e) for i, e in con.execute("SELECT idx, endpoints FROM row_endpoints")}
    con.close()
    assert set(answered) == set(range(rows))
    urls = {u for eps in answered.values() for u in eps}
    assert urls <= {a.base_url, b.base_url} and len(urls) == 2  # both endpoints answered rows
    ep = s.manifest["endpoints"]
    assert sum(ep["rows_answered"].values()) >= rows
    assert set(ep["rows_answered"]) == set(local.manifest["endpoints"]["rows_answered"])
    start = _canary_calls(s)  # the driver's start canaries, on its own fleet
    assert sum(e["answered"] for e in ep["stats"]) == start + rows
