"""``reflectkit verify endpoint`` / ``verify fingerprint`` against real llama.cpp servers (A, B, C: see servers.py).

The false-positive rate over 20+ seeds is measured by benchmarks/bench_verify.py; here A claiming A is checked at
2 seeds to keep the suite fast (each check asks ~50 probes of a 135M model on 2 cores)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import run_cli
from reflectkit.llm.openai_compat import OpenAICompatModel
from reflectkit.verify.endpoint import verify_endpoint
from reflectkit.verify.reference import resolve_reference
from verify.servers import ALIAS, server_a, server_b, server_c  # noqa: F401,F811  (fixtures)

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _tiers(report: dict) -> dict[str, str]:
    return {t["tier"]: t["verdict"] for t in report["tiers"]}


def test_a_claiming_a_is_consistent_at_every_tier_across_seeds(server_a) -> None:
    async def go() -> list[dict]:
        ref = resolve_reference("embedded")
        out = []
        try:
            for seed in (0, 1):
                client = OpenAICompatModel(ALIAS, server_a.base_url)
                try:
                    out.append(await verify_endpoint(client, ref, budget=36, seed=seed))
                finally:
                    await client.aclose()
        finally:
            await ref.aclose()
        return out

    reports = asyncio.run(go())
    for r in reports:
        assert _tiers(r) == {"metadata": "inconclusive", "tokenizer": "consistent", "logprobs": "consistent",
                             "text": "consistent"}, r["tiers"]
        assert r["verdict"] == "consistent" and r["exit_code"] == 0
    # different seeds ask different log-prob probes
    assert len({tuple(a["probe"] for a in r["endpoint_answers"] if a["tier"] == "logprobs") for r in reports}) > 1


def test_c_claiming_a_is_inconsistent_at_the_tokenizer_tier(server_c, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    p = run_cli("verify", "endpoint", "--base-url", server_c.base_url, "--model", ALIAS, "--claims", "embedded",
                "--budget", "16", "--json", str(out))
    assert p.returncode == 3, p.stderr
    report = json.loads(out.read_text())
    assert _tiers(report)["tokenizer"] == "inconsistent"
    assert "tokenizer  inconsistent" in p.stdout and "verdict: inconsistent (exit 3)" in p.stdout
    # a third party can re-check: every probe and answer is in the report, the metadata says "the-model"
    assert report["tiers"][0]["evidence"]["served_models"] == [ALIAS]
    tok = [a for a in report["endpoint_answers"] if a["tier"] == "tokenizer"]
    assert tok and all(a["messages"] and a["prompt_tokens"] > 0 for a in tok)


def test_b_claiming_a_passes_the_tokenizer_and_fails_the_logprob_tier(server_b, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    p = run_cli("verify", "endpoint", "--base-url", server_b.base_url, "--model", ALIAS, "--claims", "embedded",
                "--budget", "40", "--json", str(out))
    assert p.returncode == 3, p.stdout + p.stderr
    tiers = _tiers(json.loads(out.read_text()))
    assert tiers["tokenizer"] == "consistent"
    assert tiers["logprobs"] == "inconsistent"


def test_published_fingerprint_checks_endpoints(server_a, server_c, tmp_path: Path) -> None:
    fp = tmp_path / "fp.json"
    p = run_cli("verify", "fingerprint", "--local", "embedded", "-o", str(fp), "--budget", "24")
    assert p.returncode == 0, p.stderr
    data = json.loads(fp.read_text())
    assert data["format"] == "reflectkit-fingerprint" and data["answers"]
    assert data["source"]["kind"] == "local"
    good = run_cli("verify", "endpoint", "--base-url", server_a.base_url, "--model", ALIAS, "--claims", str(fp))
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run_cli("verify", "endpoint", "--base-url", server_c.base_url, "--model", ALIAS, "--claims", str(fp))
    assert bad.returncode == 3, bad.stdout + bad.stderr
    # an endpoint's own fingerprint names only its host
    efp = tmp_path / "efp.json"
    p = run_cli("verify", "fingerprint", "--base-url", server_a.base_url, "--model", ALIAS, "-o", str(efp),
                "--budget", "16")
    assert p.returncode == 0, p.stderr
    src = json.loads(efp.read_text())["source"]
    assert src == {"kind": "endpoint", "host": f"127.0.0.1:{server_a.port}", "model": ALIAS}


@pytest.mark.parametrize("args, needle", [
    (["--claims", "no-such.gguf"], "--claims no-such.gguf: no such .gguf file"),
    (["--claims", "embedded", "--budget", "2"], "--budget"),
    (["--claims", "nothing-like-this"], "--claims nothing-like-this: expected"),
])
def test_user_errors_are_one_line_exit_2(args: list[str], needle: str) -> None:
    p = run_cli("verify", "endpoint", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", *args)
    assert p.returncode == 2
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_bad_fingerprint_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "fp.json"
    bad.write_text('{"format": "reflectkit-fingerprint", "plan": {"seed": "x"}}')
    p = run_cli("verify", "endpoint", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--claims", str(bad))
    assert p.returncode == 2 and f"--claims {bad}: plan.seed" in p.stderr, p.stderr
