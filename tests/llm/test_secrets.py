"""API keys never reach logs, manifests, ledgers, caches, outputs or error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALPACA, LlamaServer, run_cli

pytestmark = [pytest.mark.server, pytest.mark.slow]

# Shaped like a real key (built at run time so no key-like literal is committed).
FAKE_KEY = "sk-" + "reflectkitFAKE0123456789abcdefSECRET"


def _all_bytes(*roots: Path) -> bytes:
    blob = b""
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file():
                blob += p.read_bytes()
    return blob


def test_fake_key_appears_nowhere(llama_server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = run_cli("--cache-dir", str(cache), "recycle", str(ALPACA), "-o", str(tmp_path / "out" / "o.jsonl"),
                "--limit", "2", "--max-tokens", "16", "--oracle-model", llama_server.alias, "--oracle-base-url",
                llama_server.base_url, "--oracle-api-key-env", "MY_ORACLE_KEY", "--run-dir", str(tmp_path / "run"),
                env={"MY_ORACLE_KEY": FAKE_KEY})
    assert r.returncode == 0, r.stderr
    blob = _all_bytes(tmp_path / "run", cache, tmp_path / "out") + r.stdout.encode() + r.stderr.encode()
    assert b"MY_ORACLE_KEY" in (tmp_path / "run" / "manifest.json").read_bytes()  # the variable's name is recorded
    for fragment in (FAKE_KEY, FAKE_KEY[6:-6], "FAKE0123"):
        assert fragment.encode() not in blob


def test_wrong_key_is_one_clear_error_without_the_key(gguf_path, tmp_path: Path) -> None:
    server = LlamaServer(gguf_path, tmp_path / "server.log")
    server.stop()  # free the port and start a key-protected server on it
    port = server.port
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host", "127.0.0.1",
                             "--port", str(port), "--api_key", "the-right-key", "--model_alias", "m"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        import httpx

        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "o.jsonl"), "--limit", "1", "--oracle-model", "m",
                    "--oracle-base-url", f"http://127.0.0.1:{port}/v1", "--run-dir", str(tmp_path / "run"),
                    env={"OPENAI_API_KEY": FAKE_KEY})
    finally:
        proc.terminate()
        proc.wait(10)
    assert r.returncode == 2, r.stderr
    assert "rejected the API key (HTTP 401)" in r.stderr and "Traceback" not in r.stderr
    assert FAKE_KEY not in r.stderr and FAKE_KEY not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1
    r2 = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "o.jsonl"), "--limit", "1", "--oracle-model", "m",
                 "--oracle-base-url", "http://127.0.0.1:9/v1", "--oracle-api-key-env", "NOT_SET_ANYWHERE")
    assert r2.returncode == 2 and "NOT_SET_ANYWHERE" in r2.stderr and "is not set" in r2.stderr
