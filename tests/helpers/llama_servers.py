"""Fixtures for the endpoint-scoring tests: real servers (and the project's log-prob server) on free loopback ports.

* ``logits_all_server``: a real ``python -m llama_cpp.server --logits_all true`` with the embedded SmolLM2 GGUF
  (its prompt log-probs are shifted by one: abetlen/llama-cpp-python#1983);
* ``llama_cpp_server``: llama.cpp's own ``llama-server`` binary, built by ``make llama-server`` into
  ``~/.cache/reflectkit-wheels/llama-server-<version>/bin`` (or ``$REFLECTKIT_LLAMA_SERVER``): it returns no prompt
  log-probs (ggml-org/llama.cpp#27174);
* ``logprob_server``: ``tests/helpers/logprob_server.py`` (correct prompt log-probs from the project's torch path;
  its docstring says why no real server can play that part here).

Import the fixtures into a test module (``from helpers.llama_servers import logits_all_server``); each is
module-scoped, started on first use and stopped when the module is done.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

LLAMA_VERSION = "0.3.36"
HELPERS = Path(__file__).resolve().parent


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server process on 127.0.0.1:<free port>; ready when ``GET /v1/models`` answers 200."""

    def __init__(self, argv: list[str], log_path: Path, *, alias: str = "smollm2", timeout: float = 120,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.alias = alias
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        cmd = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{cmd[0]} exited with {self.proc.returncode}; log: {log_path}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{cmd[0]} did not come up within {timeout}s; log: {log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def llama_server_binary() -> Path:
    env = os.environ.get("REFLECTKIT_LLAMA_SERVER")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "reflectkit-wheels" / f"llama-server-{LLAMA_VERSION}" / "bin" / "llama-server"


@pytest.fixture(scope="module")
def logits_all_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", "{port}", "--n_ctx", "2048", "--seed", "0", "--logits_all", "true",
         "--n_threads", "1"],
        tmp_path_factory.mktemp("llama-cpp-python") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llama_cpp_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    binary = llama_server_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"llama.cpp's llama-server is not built at {binary}: run `make llama-server` (make test does)")
    server = ServerProcess(
        [str(binary), "-m", str(gguf_path), "--host", "127.0.0.1", "--port", "{port}", "-c", "2048", "-a", "smollm2",
         "-t", "1", "--no-webui"],
        tmp_path_factory.mktemp("llama-server") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logprob_server(student_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        [sys.executable, str(HELPERS / "logprob_server.py"), "--model-dir", str(student_dir), "--port", "{port}"],
        tmp_path_factory.mktemp("logprob-server") / "server.log",
        env={"PYTHONPATH": os.pathsep.join(p for p in (str(HELPERS.parents[1] / "src"), os.environ.get("PYTHONPATH"))
                                           if p)})
    yield server
    server.stop()
