"""Fixtures for the training tests (imported by the test modules). A shared HF copy of the default student: the SmolLM2 GGUF is converted once into ``test-artifacts/`` (ignored by
git) and reused by later test sessions, instead of once per test (each test has its own response cache)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def student_dir() -> Path:
    from conftest import ARTIFACTS

    from reflectkit.student import resolve_student

    return resolve_student("embedded", cache_dir=ARTIFACTS / "student-cache").hf_dir


@pytest.fixture(scope="session")
def tokenizer(student_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(student_dir))
