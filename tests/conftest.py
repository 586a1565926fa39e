"""Shared fixtures: isolated cache dirs, paths to shared data, a real llama.cpp server on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
SHARED_DATA = SHARED / "data"
ALPACA = SHARED_DATA / "instructions" / "alpaca_cherry_5pct.json"
GSM8K_TRAIN = SHARED_DATA / "instructions" / "gsm8k_train.jsonl"
GSM8K_TEST = SHARED_DATA / "benchmarks" / "gsm8k_test.jsonl"
FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"

sys.path.insert(0, str(Path(__file__).parent))

# Fixtures shared by a sub-suite live in tests/helpers/ and are loaded here, so that `from conftest import ...`
# in any test always means this file.
pytest_plugins = ["helpers.scoring_fixtures", "helpers.ray_fixtures"]

from helpers.llama_servers import ServerProcess, free_port  # noqa: E402,F401  (after sys.path; free_port: `from conftest import free_port`)

# Converting the GGUF student to an HF directory takes 30-80 s: do it once for the whole suite, for every fixture
# scope and CLI subprocess, and keep it between runs under the git-ignored test-artifacts/.
os.environ["REFLECTKIT_STUDENT_CACHE"] = str(ARTIFACTS / "student-cache" / "students")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own response cache and no progress bars, so tests never share state by accident."""
    monkeypatch.setenv("REFLECTKIT_CACHE_DIR", str(tmp_path_factory.mktemp("rkcache")))
    monkeypatch.setenv("REFLECTKIT_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def alpaca_path() -> Path:
    return ALPACA


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from reflectkit.llm.embedded import embedded_gguf_path

    return embedded_gguf_path()


class LlamaServer(ServerProcess):
    """A real ``python -m llama_cpp.server`` serving the SmolLM2 GGUF on 127.0.0.1:<free port>."""

    def __init__(self, gguf: Path, log_path: Path, alias: str = "smollm2", n_ctx: int = 4096) -> None:
        super().__init__([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
                          "--host", "127.0.0.1", "--port", "{port}", "--n_ctx", str(n_ctx), "--seed", "0"],
                         log_path, alias=alias)


@pytest.fixture(scope="session")
def llama_server(gguf_path, tmp_path_factory):
    """Session-wide real llama.cpp server (OpenAI-compatible) with the embedded SmolLM2 model."""
    server = LlamaServer(gguf_path, tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real ``reflectkit`` CLI in a subprocess (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "reflectkit", *args], capture_output=True, text=True, env=full_env,
        cwd=str(cwd) if cwd else None, timeout=timeout,
    )
