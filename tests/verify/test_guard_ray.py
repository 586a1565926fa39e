"""Verification during a run on the Ray executor: each worker sends the periodic canaries of its own calls (built
from the driver's start verification), a swap behind the proxy stops the run with exit 3, the rows answered since
the last good canary are ``suspect``, what the workers stored unverified is dropped from the cache, and a re-run
against the fixed endpoint redoes those rows with the verified model's answers (none of the other model's replayed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ALPACA
from reflectkit.engine.executors import run_with_executor
from reflectkit.engine.ray_executor import RayExecutor
from reflectkit.errors import UserError
from reflectkit.llm.spec import ModelSpec
from verify.servers import ALIAS, server_a, server_c  # noqa: F401,F811  (fixtures)
from verify.swap_proxy import SwapProxy

pytestmark = [pytest.mark.server, pytest.mark.slow]

K = 2  # --canary-every, per worker
ROWS = 8
START_CALLS = 1 + 5 + 4  # as in test_guard.py: first canary, the other start canaries, tokenizer probes


@pytest.fixture()
def proxy_ac(server_a, server_c) -> Iterator[SwapProxy]:
    p = SwapProxy(server_a.port, server_c.port).start()
    yield p
    p.stop()


def _recycle(url: str, where: Path, executor: Any, on_drift: str = "stop") -> Any:
    os.environ.setdefault("RK_TEST_NOKEY", "unused")
    spec = ModelSpec(model=ALIAS, base_url=url, api_key_env="RK_TEST_NOKEY", canary_every=K, on_drift=on_drift)
    return run_with_executor("recycle", ALPACA, where / "out.jsonl", executor=executor, models={"oracle": spec},
                             limit=ROWS, phase="response", max_tokens=12, concurrency=2, run_dir=where / "run",
                             cache_dir=where / "cache")


def _outputs(path: Path) -> list[str]:
    return [json.loads(x)["output"] for x in path.read_text().splitlines()]


def test_swap_on_ray_stops_marks_drops_and_resumes_with_the_verified_model(ray_cluster: Any, proxy_ac: SwapProxy,
                                                                           server_a: Any, tmp_path: Path) -> None:
    # what A answers, locally and straight from A: the reference for the resumed Ray run
    ref = _recycle(server_a.base_url, tmp_path / "ref", "local")
    assert sum(ref.counts.values()) == ROWS

    proxy_ac.reset(switch_after=START_CALLS + 3)  # a few row calls answered by A, then C under A's name
    ex = RayExecutor(workers=2)
    with pytest.raises(UserError) as err:
        _recycle(proxy_ac.base_url, tmp_path / "ray", ex)
    assert err.value.exit_code == 3 and "endpoint drift detected at call" in str(err.value)
    assert proxy_ac.switched_at is not None
    m = json.loads((tmp_path / "ray" / "run" / "manifest.json").read_text())
    ver = m["models"]["oracle"]["verification"]
    assert m["status"] == "stopped: endpoint drift" and "(on a worker)" in ver["drift"]["reason"]
    assert ver["canary_checks"] >= 1  # periodic canaries ran on the workers and were counted on the driver
    assert m["counts"].get("suspect", 0) >= 1 and ver["suspect_rows"] == m["counts"]["suspect"]
    assert ver["first_suspect_call"] is not None and ver["first_suspect_call"] > 0  # the worker's call number
    assert not (tmp_path / "ray" / "out.jsonl").exists()
    assert m["executor"]["kind"] == "ray"

    # the endpoint is fixed: the same command on Ray resumes, redoes the suspect rows and writes A's answers
    proxy_ac.reset(switch_after=None)
    again = RayExecutor(workers=2)
    s = _recycle(proxy_ac.base_url, tmp_path / "ray", again)
    assert s.counts == ref.counts and s.rows_out == ROWS
    assert _outputs(tmp_path / "ray" / "out.jsonl") == _outputs(tmp_path / "ref" / "out.jsonl")
    m2 = json.loads((tmp_path / "ray" / "run" / "manifest.json").read_text())
    assert m2["models"]["oracle"]["verification"]["drift"] is None
    assert m2["models"]["oracle"]["verification"]["identity_hash"] == ver["identity_hash"]
    assert again.writer_stats()["duplicate_calls"] == 0


def test_on_drift_mark_on_ray_finishes_and_leaves_suspect_rows_out(ray_cluster: Any, proxy_ac: SwapProxy,
                                                                   tmp_path: Path) -> None:
    proxy_ac.reset(switch_after=START_CALLS + 2)
    s = _recycle(proxy_ac.base_url, tmp_path, RayExecutor(workers=2), on_drift="mark")
    assert s.exit_code == 3  # finished, with evidence of drift
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    n_suspect = m["counts"]["suspect"]
    assert n_suspect >= 1 and m["rows_out"] == ROWS - n_suspect
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == ROWS - n_suspect
    assert m["models"]["oracle"]["verification"]["drift"] is not None
