"""Writing outputs: Parquet keeps every column any row has, and rows it cannot hold are one clear error."""

from __future__ import annotations

import pytest

from reflectkit.data.io import read_dataset, write_dataset
from reflectkit.errors import UserError


def test_parquet_keeps_columns_that_only_later_rows_have(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": "x", "output": "d", "extra": 1}]
    write_dataset(rows, tmp_path / "o.parquet")
    recs = read_dataset(tmp_path / "o.parquet").records
    assert [(r.instruction, r.input, r.output) for r in recs] == [("a", "", "b"), ("c", "x", "d")]
    assert recs[1].extra.get("extra") == 1


def test_parquet_mixed_types_are_a_user_error(tmp_path):
    rows = [{"instruction": "a", "output": "b", "k": 1}, {"instruction": "c", "output": "d", "k": "text"}]
    with pytest.raises(UserError, match=r"o.parquet: these rows cannot be written as Parquet .* write .jsonl"):
        write_dataset(rows, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()
