"""Scoring fixtures: the real SmolLM2 student, converted from the wheel's GGUF once for the suite, loaded once per
session on CPU with one thread (the shared 2-core machine thrashes with more)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def student_dir() -> Path:
    """The converted embedded student (tests/conftest.py points REFLECTKIT_STUDENT_CACHE at a suite-wide dir)."""
    from reflectkit.student import resolve_student

    return resolve_student("embedded").hf_dir


@pytest.fixture(scope="session")
def student(student_dir: Path) -> Iterator[tuple[Any, Any]]:
    import torch

    from reflectkit.student import load_student

    threads = torch.get_num_threads()
    # On an idle machine (CI) torch's default threads are fastest; on a box shared with other test runs, one thread
    # avoids thread-barrier thrashing: set REFLECTKIT_TEST_TORCH_THREADS=1 there.
    torch.set_num_threads(int(os.environ.get("REFLECTKIT_TEST_TORCH_THREADS", threads)))
    model, tok, _ = load_student(str(student_dir), device="cpu")
    yield model, tok
    torch.set_num_threads(threads)
