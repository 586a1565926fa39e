"""Three real llama.cpp servers under one alias (names prove nothing): A = SmolLM2-135M Q4_1 (the embedded
model), B = A requantized to Q8_0, C = gemma-3-270m Q4_K_M.

Each server starts at most once per test process (a few seconds) and stops when the process exits: the fixtures
are imported by several test modules, so the servers live in a module-level registry rather than in one fixture's
scope."""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from conftest import LlamaServer
from verify import models

ALIAS = "the-model"
_RUNNING: dict[str, LlamaServer] = {}


def _get(name: str, path: Callable[[], Path]) -> LlamaServer:
    if name not in _RUNNING:
        log = Path(tempfile.mkdtemp(prefix=f"rk-verify-{name}-")) / "server.log"
        server = LlamaServer(path(), log, alias=ALIAS, n_ctx=2048)
        atexit.register(server.stop)
        _RUNNING[name] = server
    return _RUNNING[name]


@pytest.fixture(scope="session")
def server_a() -> LlamaServer:
    return _get("a", models.model_a)


@pytest.fixture(scope="session")
def server_b() -> LlamaServer:
    return _get("b", models.model_b)


@pytest.fixture(scope="session")
def server_c() -> LlamaServer:
    return _get("c", models.model_c)
