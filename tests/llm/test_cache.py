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


# ---------------------------------------------------------------------- producers (issue 12)
class _Endpoint:
    """The attributes CachedChatModel reads of a verified endpoint client (a stand-in: no network needed to test
    what the cache records; the real guard is exercised in tests/verify)."""

    def __init__(self, id_hash: str, host: str = "10.0.0.7:8000", *, verified: bool = True) -> None:
        self.identity = {"kind": "openai-compatible", "model": "m", "base_url": f"http://{host}/v1",
                         "verification": {"identity_hash": id_hash, "host": host}}
        self.cache_identity = f"openai-compatible:m#{id_hash[:16]}" if verified else "openai-compatible:m"
        self.calls = 0

    async def chat(self, messages, params):
        from reflectkit.llm.base import ChatResult

        self.calls += 1
        return ChatResult(text=f"answer to {messages[-1]['content']}", prompt_tokens=3, completion_tokens=2)

    async def aclose(self) -> None:
        pass


def _ask(model, n: int) -> None:
    import asyncio

    async def go() -> None:
        for i in range(n):
            await model.chat([{"role": "user", "content": f"q{i}"}], SamplingParams(), prompt_version="v1")

    asyncio.run(go())


def test_entries_record_their_producer_and_replays_name_it(tmp_path: Path) -> None:
    from reflectkit.llm.cache import CachedChatModel

    cache = ResponseCache(tmp_path / "c")
    producer = _Endpoint("ab12cd34" * 8)
    _ask(CachedChatModel(producer, cache), 3)
    entries = list(cache.iter_entries())
    assert [e["producer"]["identity"] for e in entries] == ["ab12cd34" * 8] * 3
    assert {e["producer"]["host"] for e in entries} == {"10.0.0.7:8000"}
    replay = CachedChatModel(_Endpoint("ab12cd34" * 8), cache)
    _ask(replay, 4)  # 3 from the cache, 1 new
    date = entries[0]["producer"]["date"]
    assert replay.cache_line() == f"3 of 4 responses from cache, produced by identity ab12cd34ab12… at host 10.0.0.7:8000 on {date}"
    assert replay.identity["cache"]["replayed"] == [{"identity": "ab12cd34" * 8, "host": "10.0.0.7:8000",
                                                     "date": date, "responses": 3}]


def test_another_identity_under_the_same_name_shares_nothing(tmp_path: Path) -> None:
    from reflectkit.llm.cache import CachedChatModel

    cache = ResponseCache(tmp_path / "c")
    _ask(CachedChatModel(_Endpoint("a" * 64), cache), 3)
    other = CachedChatModel(_Endpoint("b" * 64), cache)
    _ask(other, 3)
    assert other.hits == 0 and other.inner.calls == 3 and other.cache_line() is None


def test_cache_only_replay_finds_the_verified_entries_and_shows_the_producer(tmp_path: Path) -> None:
    from reflectkit.llm.cache import CachedChatModel

    src = ResponseCache(tmp_path / "src")
    _ask(CachedChatModel(_Endpoint("c" * 64, "oracle.example:443"), src), 2)
    src.export(tmp_path / "x.jsonl")
    dst = ResponseCache(tmp_path / "dst")
    assert dst.import_(tmp_path / "x.jsonl") == (2, 0)
    # a replay never reaches the endpoint, so it cannot know the verified identity: only the name
    replay = CachedChatModel(_Endpoint("c" * 64, verified=False), dst, cache_only=True)
    _ask(replay, 2)
    assert replay.hits == 2 and replay.inner.calls == 0
    assert "produced by identity cccccccccccc… at host oracle.example:443 on" in replay.cache_line()


def test_old_exports_and_old_cache_files_still_work(tmp_path: Path) -> None:
    import sqlite3

    src = ResponseCache(tmp_path / "src")
    _fill(src, 2)
    out = tmp_path / "old.jsonl"
    src.export(out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert all("producer" not in e for e in lines)  # entries without producers export as before
    # a cache file from before producers were recorded: 5 columns
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    con = sqlite3.connect(old_dir / "responses.sqlite")
    con.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, "
                "response TEXT NOT NULL, created REAL NOT NULL)")
    con.commit()
    con.close()
    old = ResponseCache(old_dir)
    assert old.import_(out) == (2, 0)
    assert old.get_entry(lines[0]["key"]) == (lines[0]["response"], None)
