"""File-format detection of read_dataset: JSONL, JSON arrays, JSON wrapper objects, pretty-printed JSON, CSV, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectkit.data.io import read_dataset, write_dataset
from reflectkit.errors import UserError

ROWS = [
    {"instruction": "Add 2 and 2.", "output": "4"},
    {"instruction": "Name a colour.", "input": "warm", "output": "red"},
    {"instruction": "Say hi.", "output": "hi"},
]


def _texts(ds) -> list[tuple[str, str, str]]:
    return [(r.instruction, r.input, r.output) for r in ds.records]


EXPECTED = [(r["instruction"], r.get("input", ""), r["output"]) for r in ROWS]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("name", ["d.jsonl", "d.ndjson", "d.json", "d.txt"])
def test_jsonl_is_read_line_by_line_whatever_the_name(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text(_jsonl(ROWS))
    ds = read_dataset(p)
    assert ds.file_format == "jsonl"
    assert _texts(ds) == EXPECTED


def test_json_array_compact_and_pretty(tmp_path: Path) -> None:
    for i, text in enumerate([json.dumps(ROWS), json.dumps(ROWS, indent=2)]):
        p = tmp_path / f"a{i}.json"
        p.write_text(text)
        ds = read_dataset(p)
        assert ds.file_format == "json"
        assert _texts(ds) == EXPECTED


@pytest.mark.parametrize("key", ["data", "rows", "examples"])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_wrapper_object_is_unwrapped(tmp_path: Path, key: str, indent: int | None) -> None:
    p = tmp_path / "wrapped.json"
    p.write_text(json.dumps({"version": 1, key: ROWS}, indent=indent))
    ds = read_dataset(p)
    assert ds.file_format == "json"
    assert _texts(ds) == EXPECTED
    assert ds.n_rows == len(ROWS)


def test_pretty_printed_single_object_is_one_row(tmp_path: Path) -> None:
    p = tmp_path / "one.json"
    p.write_text(json.dumps(ROWS[1], indent=4))
    ds = read_dataset(p)
    assert ds.file_format == "json"
    assert _texts(ds) == [EXPECTED[1]]


def test_pretty_printed_wrapper_without_a_json_suffix(tmp_path: Path) -> None:
    p = tmp_path / "wrapped.data"
    p.write_text(json.dumps({"data": ROWS}, indent=2))
    ds = read_dataset(p)
    assert ds.file_format == "json"
    assert _texts(ds) == EXPECTED


def test_one_line_jsonl_file_stays_jsonl(tmp_path: Path) -> None:
    # One row that happens to hold a list under "data": in a .jsonl file it is a row, not a wrapper.
    row = {"instruction": "q", "output": "a", "data": [1, 2]}
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps(row) + "\n")
    ds = read_dataset(p)
    assert ds.file_format == "jsonl"
    assert _texts(ds) == [("q", "", "a")]
    assert ds.records[0].extra["data"] == [1, 2]


def test_pretty_printed_object_in_a_jsonl_file_is_read_as_json(tmp_path: Path) -> None:
    p = tmp_path / "pretty.jsonl"
    p.write_text(json.dumps({"data": ROWS}, indent=2))
    ds = read_dataset(p)
    assert ds.file_format == "json"
    assert _texts(ds) == EXPECTED


def test_malformed_pretty_json_object_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "data": [\n    {"instruction": "a", "output": "b"},\n    {"instruction": }\n  ]\n}\n')
    with pytest.raises(UserError) as exc:
        read_dataset(p)
    assert f"{p}:4: malformed JSON" in str(exc.value)


def test_json_named_jsonl_with_a_bad_later_line_is_a_bad_row(tmp_path: Path) -> None:
    p = tmp_path / "mixed.json"
    p.write_text(_jsonl(ROWS[:2]) + '{"instruction": "x", "output": \n' + _jsonl(ROWS[2:]))
    with pytest.raises(UserError) as exc:
        read_dataset(p)
    assert f"{p}:3: malformed JSON" in str(exc.value)
    ds = read_dataset(p, skip_bad_rows=True)
    assert ds.file_format == "jsonl"
    assert _texts(ds) == EXPECTED
    assert [b.where for b in ds.bad_rows] == [f"{p}:3"]


def test_jsonl_with_a_bad_first_line_names_line_1(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": \n' + _jsonl(ROWS))
    with pytest.raises(UserError) as exc:
        read_dataset(p)
    assert f"{p}:1: malformed JSON" in str(exc.value)


def test_csv_and_tsv(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('instruction,input,output\n"Add 2 and 2.",,4\n"Name a colour.",warm,red\n"Say hi.",,hi\n')
    ds = read_dataset(p)
    assert ds.file_format == "csv"
    assert _texts(ds) == EXPECTED
    t = tmp_path / "d.tsv"
    t.write_text("instruction\tinput\toutput\nAdd 2 and 2.\t\t4\nName a colour.\twarm\tred\nSay hi.\t\thi\n")
    ds = read_dataset(t)
    assert ds.file_format == "csv"
    assert _texts(ds) == EXPECTED


def test_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    src = tmp_path / "src.jsonl"
    src.write_text(_jsonl([{**r, "input": r.get("input", "")} for r in ROWS]))
    ds = read_dataset(src)
    p = write_dataset([dict(r.raw) for r in ds.records], tmp_path / "d.parquet")
    back = read_dataset(p)
    assert back.file_format == "parquet"
    assert _texts(back) == EXPECTED


def test_unknown_suffix_without_json_content_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("instruction,output\na,b\n")
    with pytest.raises(UserError, match="cannot tell the file format"):
        read_dataset(p)
