"""Response cache export/import: JSONL and gzip round trips, added/present counts, and tampered exports."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from reflectkit.errors import UserError
from reflectkit.llm.base import SamplingParams
from reflectkit.llm.cache import ResponseCache, cache_key


def _fill(cache: ResponseCache, n: int, *, model: str = "m@1") -> list[str]:
    keys = []
    for i in range(n):
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question {i} — é"}]
        params = SamplingParams(temperature=0.1 * i, max_tokens=64 + i, stop=("\n\n",) if i % 2 else None)
        key = cache_key(model, messages, params, "synth/paper@abc")
        request = {"messages": messages, "params": params.to_dict(), "prompt_version": "synth/paper@abc"}
        cache.put(key, model, request, {"text": f"answer {i}", "finish_reason": "stop", "completion_tokens": i})
        keys.append(key)
    return keys


def _read_export(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.mark.parametrize("name", ["export.jsonl", "export.jsonl.gz"])
def test_export_then_import_into_a_fresh_cache(tmp_path: Path, name: str) -> None:
    src = ResponseCache(tmp_path / "src")
    keys = _fill(src, 5)
    out = tmp_path / name
    assert src.export(out) == 5
    if name.endswith(".gz"):
        assert out.read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    entries = _read_export(out)
    assert sorted(e["key"] for e in entries) == sorted(keys)
    assert all(set(e) == {"key", "model", "request", "response"} for e in entries)

    dst = ResponseCache(tmp_path / "dst")
    assert len(dst) == 0
    assert dst.import_(out) == (5, 0)
    assert len(dst) == 5
    for key in keys:
        assert dst.get(key) == src.get(key)
    assert list(dst.iter_entries()) == list(src.iter_entries())
    src.close()
    dst.close()


def test_import_counts_entries_already_present(tmp_path: Path) -> None:
    src = ResponseCache(tmp_path / "src")
    _fill(src, 4)
    out = tmp_path / "all.jsonl"
    src.export(out)
    dst = ResponseCache(tmp_path / "dst")
    _fill(dst, 2)  # the first two entries are already there
    assert dst.import_(out) == (2, 2)
    assert dst.import_(out) == (0, 4)  # importing twice adds nothing
    assert len(dst) == 4
    src.close()
    dst.close()


def test_import_keeps_the_existing_response_for_a_present_key(tmp_path: Path) -> None:
    src = ResponseCache(tmp_path / "src")
    (key,) = _fill(src, 1)
    out = tmp_path / "one.jsonl"
    src.export(out)
    dst = ResponseCache(tmp_path / "dst")
    entry = _read_export(out)[0]
    dst.put(key, entry["model"], entry["request"], {"text": "local answer"})
    assert dst.import_(out) == (0, 1)
    assert dst.get(key) == {"text": "local answer"}
    src.close()
    dst.close()


@pytest.mark.parametrize("field", ["response_is_fine_but_request_changed", "key_changed", "model_changed"])
def test_tampered_entry_is_refused_with_file_and_line(tmp_path: Path, field: str) -> None:
    src = ResponseCache(tmp_path / "src")
    _fill(src, 3)
    out = tmp_path / "export.jsonl"
    src.export(out)
    entries = _read_export(out)
    bad = entries[1]
    if field == "response_is_fine_but_request_changed":
        bad["request"]["messages"][1]["content"] = "a different question"
    elif field == "key_changed":
        bad["key"] = "0" * 64
    else:
        bad["model"] = "another-model"
    out.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")

    dst = ResponseCache(tmp_path / "dst")
    with pytest.raises(UserError) as exc:
        dst.import_(out)
    assert f"{out}:2:" in str(exc.value) and "does not match its request" in str(exc.value)
    # lines before the tampered one were imported; the tampered entry and those after it were not
    assert len(dst) == 1
    assert dst.get(entries[0]["key"]) is not None
    assert dst.get(bad["key"]) is None
    src.close()
    dst.close()


def test_import_errors_name_file_and_line(tmp_path: Path) -> None:
    dst = ResponseCache(tmp_path / "dst")
    with pytest.raises(UserError, match="cache export file not found"):
        dst.import_(tmp_path / "missing.jsonl")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('\n{"key": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"{junk}:2: ") + "not a reflectkit cache export line"):
        dst.import_(junk)
    notjson = tmp_path / "notjson.jsonl"
    notjson.write_text("hello\n", encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(f"{notjson}:1: ") + "not a reflectkit cache export line"):
        dst.import_(notjson)
    assert len(dst) == 0
    dst.close()


def test_export_of_an_empty_cache(tmp_path: Path) -> None:
    c = ResponseCache(tmp_path / "c")
    out = tmp_path / "empty.jsonl.gz"
    assert c.export(out) == 0
    assert _read_export(out) == []
    assert ResponseCache(tmp_path / "d").import_(out) == (0, 0)
    c.close()
