"""A complete third-party reflectkit step: count the words of each row and flag short answers.

Install it as a package whose metadata declares the entry point (pyproject.toml)::

    [project.entry-points."reflectkit.steps"]
    wordcount = "reflectkit_wordcount:WordCountStep"

and it appears in ``reflectkit steps``, as ``reflectkit wordcount DATA -o OUT``, in Python as
``reflectkit.engine.api.run("wordcount", DATA, OUT, min_words=5)`` and as a pipeline stage ``kind: wordcount``.
"""

from __future__ import annotations

from typing import Any, Literal

from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult, RowStep, RunContext, StepOptions, option


class WordCountOptions(StepOptions):
    field: Literal["instruction", "output"] = option("output", "Which text to count.")
    min_words: int = option(3, "Rows with fewer words are marked 'short'.", ge=1)
    drop_short: bool = option(False, "Leave short rows out of the output (they stay in the ledger).")


class WordCountStep(RowStep[WordCountOptions]):
    """Count words per row; mark rows under --min-words as short."""

    name = "wordcount"
    Options = WordCountOptions

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        return {"rows": len(records), "oracle_calls": 0}

    async def process(self, record: Record, ctx: RunContext) -> RowResult:
        words = len(getattr(record, self.options.field).split())
        short = words < self.options.min_words
        ctx.count("short_rows", int(short))
        return RowResult("short" if short else "ok", f"{words} words < {self.options.min_words}" if short else None,
                         rk={"words": words}, drop=short and self.options.drop_short)
