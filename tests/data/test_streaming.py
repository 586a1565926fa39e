"""Streaming reads: a streamed file gives the same records, ids, hashes and errors as reading it whole, for JSONL,
CSV and Parquet; --limit and prefixes read only what they need; bad rows are still reported before any work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reflectkit.data.io import LazyRecords, read_dataset, write_rows
from reflectkit.errors import UserError

ROWS = [{"instruction": f"Task {i}: explain ünïcode {i}.", "input": "x" if i % 3 else "", "output": f"Answer {i}."}
        for i in range(120)]


def _files(tmp_path: Path) -> list[Path]:
    j = tmp_path / "a.jsonl"
    j.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    p = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p, row_group_size=25)
    c = tmp_path / "a.csv"
    with open(c, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    return [j, p, c]


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["jsonl", "parquet", "csv"])
def test_streamed_equals_whole(tmp_path: Path, kind: int) -> None:
    path = _files(tmp_path)[kind]
    whole, streamed = read_dataset(path, stream=False), read_dataset(path, stream=True)
    assert isinstance(streamed.records, LazyRecords) and streamed.streamed and not whole.streamed
    assert [(r.id, r.instruction, r.input, r.output) for r in streamed.records] == \
        [(r.id, r.instruction, r.input, r.output) for r in whole.records]
    assert (streamed.sha256, streamed.n_rows, streamed.shape, len(streamed.records)) == \
        (whole.sha256, whole.n_rows, whole.shape, len(whole.records))
    assert streamed.row_ids_sha256() == whole.row_ids_sha256()  # the run fingerprint: old run dirs resume
    lw, ls = whole.limit(7), streamed.limit(7)
    assert [r.id for r in ls.records] == [r.id for r in lw.records] and len(ls.records) == 7
    assert ls.row_ids_sha256() == lw.row_ids_sha256()
    assert [r.id for r in streamed.records[:3]] == [r.id for r in whole.records[:3]]
    assert streamed.streamed  # a prefix did not load the file
    assert streamed.records[50].id == whole.records[50].id and not streamed.streamed  # an index did, once


def test_bad_rows_are_reported_before_any_work_and_skipped_with_their_lines(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in ROWS[:5]]
    lines.insert(2, '{"instruction": ')
    lines.insert(4, '{"input": "no instruction"}')
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:3: malformed JSON"):
        read_dataset(p, stream=True)
    ds = read_dataset(p, stream=True, skip_bad_rows=True)
    whole = read_dataset(p, stream=False, skip_bad_rows=True)
    assert [b.where for b in ds.bad_rows] == [b.where for b in whole.bad_rows] == [f"{p}:3", f"{p}:5"]
    assert [r.id for r in ds.records] == [r.id for r in whole.records] and len(ds.records) == 5


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "u.jsonl"
    p.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n')
    with pytest.raises(UserError, match=r"u.jsonl:2: file is not valid UTF-8"):
        read_dataset(p, stream=True)


def test_small_or_unclear_files_are_read_whole(tmp_path: Path, monkeypatch) -> None:
    j = _files(tmp_path)[0]
    assert not read_dataset(j).streamed  # under the threshold
    monkeypatch.setenv("REFLECTKIT_STREAM_MIN_BYTES", "1")
    assert read_dataset(j).streamed
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ROWS))
    assert read_dataset(arr).streamed  # a JSON array streams too


def test_write_rows_streams_the_same_bytes(tmp_path: Path) -> None:
    from reflectkit.data.io import write_dataset

    rows = [{"a": i, "t": "é"} for i in range(50)]
    write_dataset(rows, tmp_path / "a.jsonl")
    assert write_rows(iter(rows), tmp_path / "b.jsonl") == 50
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_json_arrays_stream_element_by_element(tmp_path: Path) -> None:
    from reflectkit.data.io import _StreamSource

    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ROWS, indent=2, ensure_ascii=False), encoding="utf-8")
    whole, streamed = read_dataset(arr, stream=False), read_dataset(arr, stream=True)
    assert streamed.streamed and streamed.file_format == "json"
    assert [r.id for r in streamed.records] == [r.id for r in whole.records]
    assert streamed.sha256 == whole.sha256 and streamed.row_ids_sha256() == whole.row_ids_sha256()
    # tiny read chunks: elements, numbers and strings cut at every boundary still parse
    src = _StreamSource(arr, "json", None, {}, True, False)
    assert [raw for _, raw in src._raw_json_array(chunk=7)] == ROWS
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": }\n]')
    with pytest.raises(UserError, match=r"bad.json:3: malformed JSON"):
        read_dataset(bad, stream=True)
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"data": ROWS}))
    assert not read_dataset(wrapped, stream=True).streamed  # an object wrapper is read whole
