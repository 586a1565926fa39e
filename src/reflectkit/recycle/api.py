"""Python API for recycling: the function ``reflectkit recycle`` calls, derived from :class:`RecycleStep`.

>>> from reflectkit.recycle.api import recycle
>>> s = recycle("alpaca.json", "out.jsonl", phase="response", limit=20)  # doctest: +SKIP
"""

from __future__ import annotations

from reflectkit.engine.api import api_function
from reflectkit.recycle.step import RecycleStep

recycle = api_function(RecycleStep)
