"""Benchmark decontamination: n-gram, embedding and LLM-judge detectors (``reflectkit decontaminate``).

Python API: :func:`reflectkit.decontam.api.decontaminate` (also importable from here); the step is
:class:`reflectkit.decontam.step.DecontamStep`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["decontaminate", "DecontamStep", "DecontamOptions"]


def __getattr__(name: str) -> Any:  # lazy, so `reflectkit --help` does not import numpy/torch
    if name in __all__:
        from reflectkit.decontam import api

        return getattr(api, name)
    raise AttributeError(name)
