"""Dataset I/O: formats, shapes, mapping, ids, writing in the input's shape, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from reflectkit.data.io import parse_mapping, read_dataset, record_to_row, write_dataset
from reflectkit.errors import UserError

ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_all_file_formats_identically(tmp_path: Path) -> None:
    j = _jsonl(tmp_path / "a.jsonl", ROWS)
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ROWS, indent=2))
    pqf = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), pqf)
    csvf = tmp_path / "a.csv"
    csvf.write_text('instruction,input,output\nName a colour.,,Blue.\nAdd the numbers.,2 and 3,5\n')
    got = []
    for p in (j, arr, pqf, csvf):
        ds = read_dataset(p)
        got.append([(r.instruction, r.input, r.output, r.id) for r in ds.records])
        assert ds.shape == "alpaca"
    assert got[0] == got[1] == got[2] == got[3]
    assert read_dataset(csvf).file_format == "csv" and read_dataset(pqf).file_format == "parquet"


def test_chat_and_sharegpt_shapes_are_detected_and_written_back(tmp_path: Path) -> None:
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                         {"role": "assistant", "content": "Hello."}]}
    share = {"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]}
    ds = read_dataset(_jsonl(tmp_path / "c.jsonl", [chat]))
    assert ds.shape == "messages" and ds.records[0].system == "Be brief."
    row = record_to_row(ds.records[0], output="Hey.", rk={"x": 1})
    assert row["messages"][2] == {"role": "assistant", "content": "Hey."} and row["reflectkit"]["x"] == 1
    ds2 = read_dataset(_jsonl(tmp_path / "s.jsonl", [share]))
    assert ds2.shape == "sharegpt" and ds2.records[0].instruction == "Hi?"
    assert record_to_row(ds2.records[0], instruction="Yo?")["conversations"][0]["value"] == "Yo?"
    # --format overrides detection: a chat file forced to alpaca has no instruction field
    with pytest.raises(UserError, match="missing required field 'instruction'"):
        read_dataset(tmp_path / "c.jsonl", format="alpaca")


def test_mapping_renames_fields(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "q.jsonl", [{"question": "2+2?", "answer": "4"}])
    ds = read_dataset(p, mapping=parse_mapping("instruction=question,output=answer"))
    assert (ds.records[0].instruction, ds.records[0].output) == ("2+2?", "4")
    row = record_to_row(ds.records[0], output="four", mapping=ds.mapping)
    assert row["answer"] == "four" and "output" not in row
    with pytest.raises(UserError, match="--map"):
        parse_mapping("instruction")


def test_ids_are_stable_and_position_aware(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "d.jsonl", [ROWS[0], ROWS[0]])
    a = [r.id for r in read_dataset(p).records]
    b = [r.id for r in read_dataset(p).records]
    assert a == b and a[0] != a[1] and a[0].split("-")[1] == a[1].split("-")[1]


def test_written_rows_keep_shape_and_parquet_roundtrips(tmp_path: Path) -> None:
    ds = read_dataset(_jsonl(tmp_path / "a.jsonl", ROWS))
    rows = [record_to_row(r, rk={"stage": {"status": "ok", "n": [1, 2]}}) for r in ds.records]
    out = write_dataset(rows, tmp_path / "o.parquet")
    back = read_dataset(out)
    assert [r.meta["stage"] for r in back.records] == [{"status": "ok", "n": [1, 2]}] * 2
    assert [r.id for r in back.records] == [r.id for r in ds.records]  # ids survive chaining


BAD_CASES = {
    "malformed_json": ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', "bad.jsonl", ":2: malformed JSON"),
    "missing_field": ('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', "bad.jsonl", ":2: missing required field 'output'"),
    "non_string": ('{"instruction": "a", "output": 5}\n', "bad.jsonl", ":1: field 'output' must be a string, got int"),
    "empty": ("", "bad.jsonl", "file is empty"),
    "json_array_syntax": ('[{"instruction": "a", "output": "b"},\n {"instruction": }]', "bad.json", ":2: malformed JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, name, expected = BAD_CASES[case]
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(UserError) as exc:
        read_dataset(p)
    assert str(p) in str(exc.value) and expected in str(exc.value)
    r = run_cli("recycle", str(p), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_non_utf8_and_unreadable_files(tmp_path: Path) -> None:
    p = tmp_path / "latin.jsonl"
    p.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n')
    with pytest.raises(UserError, match=r"latin.jsonl:2: file is not valid UTF-8"):
        read_dataset(p)
    with pytest.raises(UserError, match="file not found"):
        read_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="is a directory"):
        read_dataset(tmp_path)
    bad_pq = tmp_path / "x.parquet"
    bad_pq.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        read_dataset(bad_pq)


def test_skip_bad_rows_records_and_counts_them(tmp_path: Path) -> None:
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\nnot json\n{"instruction": 3, "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    ds = read_dataset(p, skip_bad_rows=True)
    assert [r.instruction for r in ds.records] == ["a", "c"]
    assert [(b.where.rsplit(":", 1)[1], b.reason.split(" (")[0]) for b in ds.bad_rows] == [
        ("2", "malformed JSON"), ("3", "field 'instruction' must be a string, got int")]
    r = run_cli("recycle", str(p), "-o", str(tmp_path / "o.jsonl"), "--run-dir", str(tmp_path / "run"), "--dry-run",
                "--skip-bad-rows")
    assert r.returncode == 0, r.stderr
    assert "rows: 2" in r.stdout
