"""``--map`` parsing: exactly the fields something reads are accepted, and the error lists exactly those."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reflectkit.data.io import CANONICAL_FIELDS, MAPPABLE_FIELDS, parse_mapping, read_dataset
from reflectkit.errors import UserError


def test_every_accepted_field_parses() -> None:
    spec = ",".join(f"{f}=col_{f}" for f in MAPPABLE_FIELDS)
    assert parse_mapping(spec) == {f: f"col_{f}" for f in MAPPABLE_FIELDS}
    assert set(CANONICAL_FIELDS) <= set(MAPPABLE_FIELDS)


@pytest.mark.parametrize("field", ["reference", "instructions", "ID", "answers"])
def test_unknown_fields_are_refused(field: str) -> None:
    with pytest.raises(UserError, match=rf"--map: unknown field '{field}'"):
        parse_mapping(f"instruction=q,{field}=x")


def test_error_lists_exactly_the_accepted_fields() -> None:
    with pytest.raises(UserError) as exc:
        parse_mapping("reference=ref")
    m = re.search(r"mappable fields are: (.*)$", str(exc.value))
    assert m, str(exc.value)
    listed = [s.strip() for s in m.group(1).split(",")]
    assert listed == list(MAPPABLE_FIELDS)
    for f in listed:  # every listed field really is accepted
        assert parse_mapping(f"{f}=x") == {f: "x"}
    assert {"id", "answer", "question"} <= set(listed) and "reference" not in listed


def test_answer_and_id_mappings_are_used(tmp_path: Path) -> None:
    from reflectkit.evalsets import load_evalset

    p = tmp_path / "set.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in [
        {"q": "1+1?", "sol": "2", "uid": "a1"},
        {"q": "2+2?", "sol": "4", "uid": "a2"},
    ]))
    ds = read_dataset(p, mapping=parse_mapping("instruction=q,answer=sol"), require_output=False)
    assert [r.extra["answer"] for r in ds.records] == ["2", "4"]
    # the README's form for a user eval set: question=, answer=, id=
    items = load_evalset(str(p), mapping=parse_mapping("question=q,answer=sol,id=uid"))
    assert [(i.id, i.question, i.answer) for i in items] == [("a1", "1+1?", "2"), ("a2", "2+2?", "4")]


def test_malformed_specs() -> None:
    assert parse_mapping(None) == {} and parse_mapping("") == {}
    with pytest.raises(UserError, match="FIELD=COLUMN"):
        parse_mapping("instruction")
    with pytest.raises(UserError, match="empty column name"):
        parse_mapping("output=")
