"""Verification during runs: a recycle run through a proxy that silently swaps the model behind one name stops
with exit 3 within K calls, marks the suspect rows, names the first suspect call, and resumes once the endpoint is
fixed; another endpoint under the same name never replays the first one's cached answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ALPACA, run_cli
from verify.servers import ALIAS, server_a, server_b, server_c  # noqa: F401,F811  (fixtures)
from verify.swap_proxy import SwapProxy

pytestmark = [pytest.mark.server, pytest.mark.slow]

K = 3  # --canary-every
ROWS = 6
START_CALLS = 1 + 5 + 4  # first canary, the other start canaries (3 prompts x 2 repeats), tokenizer probes


def _recycle(base_url: str, where: Path, *extra: str, rows: int = ROWS):
    return run_cli("recycle", str(ALPACA), "-o", str(where / "out.jsonl"), "--run-dir", str(where / "run"),
                   "--limit", str(rows), "--max-tokens", "12", "--oracle-model", ALIAS, "--oracle-base-url", base_url,
                   "--canary-every", str(K), "--concurrency", "1", *extra)


def _manifest(where: Path) -> dict:
    return json.loads((where / "run" / "manifest.json").read_text())


@pytest.fixture()
def proxy_ac(server_a, server_c) -> Iterator[SwapProxy]:
    p = SwapProxy(server_a.port, server_c.port).start()
    yield p
    p.stop()


@pytest.fixture()
def proxy_ab(server_a, server_b) -> Iterator[SwapProxy]:
    p = SwapProxy(server_a.port, server_b.port).start()
    yield p
    p.stop()


def test_swap_to_another_model_stops_the_run_marks_rows_and_resumes(proxy_ac: SwapProxy, server_a, server_c,
                                                                     tmp_path: Path) -> None:
    proxy_ac.reset(switch_after=START_CALLS + 3)  # 2 row calls and one canary answered by A, then C
    p = _recycle(proxy_ac.base_url, tmp_path)
    assert p.returncode == 3, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "endpoint drift detected at call" in err[0] and "Traceback" not in p.stderr
    m = _manifest(tmp_path)
    ver = m["models"]["oracle"]["verification"]
    drift = ver["drift"]
    assert proxy_ac.switched_at is not None
    assert drift["call"] - drift["last_good_call"] <= K  # detected by the first canary after the switch
    assert m["counts"].get("suspect", 0) >= 1 and ver["suspect_rows"] == m["counts"]["suspect"]
    # the canary checked before call N is good for the calls before it; call N itself is after it
    assert ver["first_suspect_call"] is not None and ver["first_suspect_call"] >= drift["last_good_call"]
    assert m["status"] == "stopped: endpoint drift"
    assert not (tmp_path / "out.jsonl").exists()  # suspect rows never written out as good rows
    a_identity = ver["identity_hash"]

    # the endpoint is fixed (the proxy forwards to A again): the same command resumes and redoes the suspect rows
    proxy_ac.reset(switch_after=None)
    again = _recycle(proxy_ac.base_url, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    m2 = _manifest(tmp_path)
    assert m2["models"]["oracle"]["verification"]["identity_hash"] == a_identity  # stable for an honest endpoint
    assert "suspect" not in m2["counts"] and m2["rows_out"] == ROWS
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == ROWS
    # the answers given after the last good canary (by C, under A's verified identity) were dropped from the
    # cache at the drift: the redone rows are asked again, not replayed
    cache = m2["models"]["oracle"]["cache"]
    assert cache["hits"] == 0 and cache["misses"] >= m["counts"]["suspect"]
    assert m["models"]["oracle"]["cache"]["dropped_after_drift"] >= 1
    # from scratch against the fixed endpoint: every answer is A's, from the cache, with its producer named
    fresh = _recycle(proxy_ac.base_url, tmp_path, "--restart")
    assert fresh.returncode == 0, fresh.stderr
    cache = _manifest(tmp_path)["models"]["oracle"]["cache"]
    assert cache["hits"] == ROWS and cache["replayed"][0]["identity"] == a_identity
    assert cache["line"].startswith(f"{ROWS} of {ROWS} responses from cache, produced by identity {a_identity[:12]}… "
                                    f"at host 127.0.0.1:{proxy_ac.port} on ")

    # C under A's name: another verified identity, so none of A's cached answers is replayed
    c_dir = tmp_path / "c"
    pc = _recycle(server_c.base_url, c_dir, rows=2)  # the first rows: A's answers to them are in the cache
    assert pc.returncode == 0, pc.stdout + pc.stderr
    mc = _manifest(c_dir)
    assert mc["models"]["oracle"]["verification"]["identity_hash"] != a_identity
    assert mc["models"]["oracle"]["cache"]["hits"] == 0
    assert "cache hits 0" in pc.stdout


def test_swap_to_a_requantized_model_is_detected_by_the_canaries(proxy_ab: SwapProxy, tmp_path: Path) -> None:
    proxy_ab.reset(switch_after=START_CALLS + 3)
    p = _recycle(proxy_ab.base_url, tmp_path)
    assert p.returncode == 3, p.stdout + p.stderr
    drift = _manifest(tmp_path)["models"]["oracle"]["verification"]["drift"]
    assert drift["call"] - drift["last_good_call"] <= K
    assert "canary" in drift["reason"]


def test_on_drift_mark_finishes_and_leaves_suspect_rows_out(proxy_ac: SwapProxy, tmp_path: Path) -> None:
    proxy_ac.reset(switch_after=START_CALLS + 1)  # row 1 answered by A, row 2 by C (before any periodic canary)
    p = _recycle(proxy_ac.base_url, tmp_path, "--on-drift", "mark", "--oracle-claims", "embedded")
    assert p.returncode == 3, p.stdout + p.stderr  # finished, but with evidence of drift
    m = _manifest(tmp_path)
    n_suspect = m["counts"]["suspect"]
    assert n_suspect >= 1 and m["rows_out"] == ROWS - n_suspect
    ver = m["models"]["oracle"]["verification"]
    # with the claimed tokenizer the passive check catches C's first answer, before any canary
    assert "claimed tokenizer" in ver["drift"]["reason"]
    assert "prompt-tokens (claims)" in ver["tiers"]
