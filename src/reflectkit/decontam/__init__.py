"""Benchmark decontamination: n-gram, embedding and LLM-judge detectors (``reflectkit decontaminate``).

Python API: :func:`reflectkit.decontam.api.decontaminate` (also importable from here).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DecontamSummary", "decontaminate"]


def __getattr__(name: str) -> Any:  # lazy, so `reflectkit --help` does not import numpy/torch
    if name in __all__:
        from reflectkit.decontam import api

        return getattr(api, name)
    raise AttributeError(name)
