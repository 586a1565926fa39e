"""Read and write datasets: JSONL, JSON arrays, Parquet and CSV, in Alpaca, chat (``messages``) or ShareGPT shape.

Every problem with the user's file becomes one :class:`~reflectkit.errors.UserError` naming the file and the
line (JSONL, JSON, CSV) or row (Parquet). With ``skip_bad_rows=True`` a bad row becomes a :class:`BadRow`
that is counted and reported instead.

**Streaming.** Files of at least ``REFLECTKIT_STREAM_MIN_BYTES`` bytes (default 16 MiB) in a format that can be
read row by row (JSONL line by line, a JSON array element by element, CSV/TSV row by row, Parquet one row-group
batch at a time) are not held in
memory: :func:`read_dataset` checks every row once (so a bad row is still reported before any work starts) and
keeps only the counts, the file's sha256 and the digest of the row ids; ``Dataset.records`` is then a
:class:`LazyRecords` that reads the file again each time it is iterated. Indexing it (or slicing anything but a
prefix) reads the whole file into memory once, for the steps that need every row at once. A JSON object (a
wrapper such as ``{"data": [...]}``, or one row) is read whole. :func:`write_rows` writes JSONL output row by row; Parquet output is
built in memory (its schema is the union of every row's columns).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, overload

from reflectkit.data.record import RK_KEY, Record, row_id
from reflectkit.errors import UserError

SHAPES = ("alpaca", "messages", "sharegpt")
CANONICAL_FIELDS = ("instruction", "input", "output", "messages", "conversations", "system")
# What ``--map`` accepts: the record fields, ``answer`` (kept in ``Record.extra["answer"]``, read by eval sets and
# the GSM8K tools), and ``question`` / ``id`` (the question and row-id columns of a user eval set, read by
# :func:`reflectkit.evalsets.load_evalset`; ``generate my.jsonl --map question=q,answer=a,id=uid``).
MAPPABLE_FIELDS = CANONICAL_FIELDS + ("answer", "question", "id")
_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt"}


@dataclass
class BadRow:
    """A row that could not be read; kept (not silently dropped) and counted in the manifest."""

    where: str  # "file:line N" or "file:row N"
    reason: str
    index: int = -1  # position among the file's rows

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}


@dataclass
class Dataset:
    path: Path
    file_format: str  # jsonl | json | parquet | csv
    shape: str  # alpaca | messages | sharegpt
    records: list[Record]
    bad_rows: list[BadRow] = field(default_factory=list)
    sha256: str = ""
    mapping: dict[str, str] = field(default_factory=dict)

    rows_in_file: int = 0
    #: sha256 of the row ids joined by newlines (computed while scanning a streamed file; else on demand)
    ids_digest: str | None = None

    @property
    def n_rows(self) -> int:
        return self.rows_in_file or (len(self.records) + len(self.bad_rows))

    @property
    def streamed(self) -> bool:
        """True when the records are read from the file on each pass rather than held in memory."""
        return isinstance(self.records, LazyRecords) and not self.records.materialised

    def row_ids_sha256(self) -> str:
        """sha256 of ``"\n".join(record ids)``, streamed (the run fingerprint's row-id part)."""
        if self.ids_digest is None:
            h = hashlib.sha256()
            for i, r in enumerate(self.records):
                h.update((("\n" if i else "") + r.id).encode())
            self.ids_digest = h.hexdigest()
        return self.ids_digest

    def limit(self, n: int | None) -> Dataset:
        """The first ``n`` rows of the file (``--limit``); bad rows among them stay recorded."""
        if n is None:
            return self
        bad = [b for b in self.bad_rows if b.index < n]
        recs: Any
        if isinstance(self.records, LazyRecords) and not self.records.materialised:
            recs = self.records.first(n, min(n, self.n_rows) - len(bad))
        else:
            recs = [r for r in self.records if r.index < n]
        return Dataset(self.path, self.file_format, self.shape, recs, bad, self.sha256, self.mapping, self.n_rows)


class LazyRecords(Sequence[Record]):
    """The records of a streamed file: each iteration reads the file again, row by row (flat memory).

    ``len()`` is known from the scan. A prefix slice (``records[:k]``) reads only the first rows; any other index
    reads every record into memory once (``materialised``), for the steps that need the whole dataset.
    """

    def __init__(self, source: _StreamSource, count: int, limit: int | None = None) -> None:
        self._source = source
        self._count = count
        self._limit = limit
        self._cache: list[Record] | None = None

    @property
    def materialised(self) -> bool:
        return self._cache is not None

    def first(self, n: int, count: int) -> LazyRecords:
        limit = n if self._limit is None else min(n, self._limit)
        return LazyRecords(self._source, max(0, count), limit)

    def __iter__(self) -> Iterator[Record]:
        if self._cache is not None:
            return iter(self._cache)
        return self._source.iter_records(self._limit)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @overload
    def __getitem__(self, i: int) -> Record: ...

    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...

    def __getitem__(self, i: int | slice) -> Record | list[Record]:
        if self._cache is None and isinstance(i, slice) and i.start in (None, 0) and i.step in (None, 1) \
                and i.stop is not None and i.stop >= 0:
            return list(islice(iter(self), i.stop))
        if self._cache is None:
            self._cache = list(self._source.iter_records(self._limit))
        return self._cache[i]

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, LazyRecords)) else NotImplemented

    def __repr__(self) -> str:
        return f"LazyRecords({self._source.path}, {self._count} records)"


def parse_mapping(spec: str | None) -> dict[str, str]:
    """Parse ``--map instruction=question,output=answer`` into ``{"instruction": "question", ...}``."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise UserError(f"--map: expected FIELD=COLUMN pairs separated by commas, got {part!r}")
        key, col = (s.strip() for s in part.split("=", 1))
        if key not in MAPPABLE_FIELDS:
            raise UserError(f"--map: unknown field {key!r}; mappable fields are: {', '.join(MAPPABLE_FIELDS)}")
        if not col:
            raise UserError(f"--map: empty column name for {key!r}")
        mapping[key] = col
    return mapping


# --------------------------------------------------------------------------------------------- reading


_NOT_PARSED: Any = object()  # "the whole file was not parsed as one JSON document"


def _detect_file_format(path: Path, data: bytes) -> tuple[str, Any]:
    """Return ``(file format, parsed JSON document or _NOT_PARSED)``.

    Parquet and CSV/TSV are told by the name. For the JSON family the content decides:

    * the whole file parses as one JSON array -> ``json``;
    * the whole file parses as one JSON object -> ``json`` (so ``{"data": [...]}`` wrappers are unwrapped), except a
      one-line object in a ``.jsonl``/``.ndjson`` file, which is a one-row JSONL file;
    * otherwise, a ``.jsonl``/``.ndjson`` name, or a first non-blank line that is valid JSON on its own -> ``jsonl``
      (one object per line; a malformed later line is reported, or skipped, as a bad row);
    * otherwise -> ``json``, whose parse error then names the file and the line.
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet", _NOT_PARSED
    if suffix in (".csv", ".tsv"):
        return "csv", _NOT_PARSED
    jsonl_name = suffix in (".jsonl", ".ndjson")
    text = _decode(path, data)
    stripped = text.strip()
    if not jsonl_name and suffix != ".json" and not stripped.startswith(("{", "[")):
        raise UserError(
            f"{path}: cannot tell the file format from the name; use .jsonl, .json, .parquet or .csv"
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = _NOT_PARSED
    if doc is not _NOT_PARSED:
        one_row_jsonl = jsonl_name and not isinstance(doc, list) and "\n" not in stripped
        return ("jsonl", _NOT_PARSED) if one_row_jsonl else ("json", doc)
    if jsonl_name:
        return "jsonl", _NOT_PARSED
    first_line = stripped.split("\n", 1)[0]
    try:
        json.loads(first_line)
    except json.JSONDecodeError:
        return "json", _NOT_PARSED
    return "jsonl", _NOT_PARSED


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _iter_raw_rows(path: Path, fmt: str, data: bytes, parsed: Any = _NOT_PARSED) -> Iterator[tuple[str, Any]]:
    """Yield (location, raw row) pairs. Raises UserError for file-level problems.

    ``parsed`` is the already-parsed JSON document for ``fmt == "json"`` (from :func:`_detect_file_format`).
    """
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise UserError(f"{path}: not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
        for i, row in enumerate(table.to_pylist()):
            if isinstance(row.get(RK_KEY), str):
                try:
                    row[RK_KEY] = json.loads(row[RK_KEY])
                except json.JSONDecodeError:
                    pass
            yield f"{path}:row {i + 1}", row
        return
    text = _decode(path, data)
    if not text.strip():
        raise UserError(f"{path}: file is empty")
    if fmt == "json":
        if parsed is not _NOT_PARSED:
            obj = parsed
        else:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None
        if isinstance(obj, dict):
            for key in ("data", "rows", "examples"):
                if isinstance(obj.get(key), list):
                    obj = obj[key]
                    break
            else:
                obj = [obj]
        if not isinstance(obj, list):
            raise UserError(f"{path}: expected a JSON array of objects, got {type(obj).__name__}")
        # Find each element's starting line for messages.
        for i, row in enumerate(obj):
            yield f"{path}:row {i + 1}", row
        return
    if fmt == "jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"{path}:{lineno}", _Malformed(f"malformed JSON ({exc.msg}, column {exc.colno})")
        return
    if fmt == "csv":
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if not reader.fieldnames:
            raise UserError(f"{path}: CSV file has no header row")
        try:
            for row in reader:
                yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
        except csv.Error as exc:
            raise UserError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
        return
    raise AssertionError(fmt)


@dataclass
class _Malformed:
    reason: str


def _detect_shape(raw: dict[str, Any], mapping: dict[str, str]) -> str:
    if mapping.get("messages", "messages") in raw and isinstance(raw.get(mapping.get("messages", "messages")), list):
        return "messages"
    if mapping.get("conversations", "conversations") in raw and isinstance(
        raw.get(mapping.get("conversations", "conversations")), list
    ):
        return "sharegpt"
    return "alpaca"


class _RowError(Exception):
    pass


def _string_field(raw: dict[str, Any], column: str, *, required: bool, what: str) -> str:
    if column not in raw or raw[column] is None:
        if required:
            raise _RowError(f"missing required field {column!r}" + (f" (mapped from {what!r})" if column != what else ""))
        return ""
    value = raw[column]
    if not isinstance(value, str):
        raise _RowError(f"field {column!r} must be a string, got {type(value).__name__}")
    return value


def _chat_record(raw: dict[str, Any], column: str, role_key: str, content_key: str) -> tuple[str, str, str, int]:
    turns = raw.get(column)
    if not isinstance(turns, list) or not turns:
        raise _RowError(f"field {column!r} must be a non-empty list of messages")
    system = ""
    instruction: str | None = None
    output: str | None = None
    n_user = 0
    for j, msg in enumerate(turns):
        if not isinstance(msg, dict):
            raise _RowError(f"{column}[{j}] must be an object")
        role = msg.get(role_key)
        content = msg.get(content_key)
        if not isinstance(role, str):
            raise _RowError(f"{column}[{j}].{role_key} must be a string")
        if not isinstance(content, str):
            raise _RowError(f"{column}[{j}].{content_key} must be a string, got {type(content).__name__}")
        role = role.lower()
        if role == "system":
            if instruction is None:
                system = content
        elif role in _USER_ROLES:
            n_user += 1
            if instruction is None:
                instruction = content
        elif role in _ASSISTANT_ROLES:
            if instruction is not None and output is None:
                output = content
        else:
            raise _RowError(f"{column}[{j}]: unknown role {role!r}")
    if instruction is None:
        raise _RowError(f"{column!r} has no user message")
    return system, instruction, output or "", max(n_user, 1)


def _to_record(index: int, raw: Any, shape: str, mapping: dict[str, str], require_output: bool) -> Record:
    if not isinstance(raw, dict):
        raise _RowError(f"expected a JSON object, got {type(raw).__name__}")
    col = lambda name: mapping.get(name, name)
    system = ""
    turns = 1
    if shape == "alpaca":
        instruction = _string_field(raw, col("instruction"), required=True, what="instruction")
        input_ = _string_field(raw, col("input"), required=False, what="input")
        output = _string_field(raw, col("output"), required=require_output, what="output")
        system = _string_field(raw, col("system"), required=False, what="system")
        used = {col("instruction"), col("input"), col("output"), col("system")}
    elif shape == "messages":
        system, instruction, output, turns = _chat_record(raw, col("messages"), "role", "content")
        input_ = ""
        used = {col("messages")}
    elif shape == "sharegpt":
        system, instruction, output, turns = _chat_record(raw, col("conversations"), "from", "value")
        input_ = ""
        used = {col("conversations")}
    else:
        raise AssertionError(shape)
    if not instruction.strip():
        raise _RowError("instruction is empty")
    meta = raw.get(RK_KEY) if isinstance(raw.get(RK_KEY), dict) else {}
    rid = meta.get("id") if isinstance(meta.get("id"), str) else row_id(index, instruction, input_, output)
    extra = {k: v for k, v in raw.items() if k not in used and k != RK_KEY}
    if "answer" in mapping and mapping["answer"] in raw:
        extra["answer"] = raw[mapping["answer"]]
    return Record(
        id=rid,
        index=index,
        instruction=instruction,
        input=input_,
        output=output,
        system=system,
        shape=shape,
        raw=raw,
        meta=dict(meta),
        turns=turns,
        extra=extra,
    )


def existing_file(path: str | os.PathLike[str], *, what: str = "file", expected: str = "a dataset file") -> Path:
    """``path`` as a Path when it is an existing file; else a UserError: ``<path>: <what> not found`` or
    ``<path>: is a directory, expected <expected>``."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: {what} not found")
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected {expected}")
    return p


def read_dataset(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    require_output: bool = True,
    stream: bool | None = None,
) -> Dataset:
    """Read a dataset file into :class:`Record` objects.

    ``format`` forces the record shape (``alpaca``, ``messages``, ``sharegpt``); by default it is detected from
    the first row. ``mapping`` renames fields (``{"instruction": "question", "output": "answer"}``).
    ``stream``: None streams files of at least :func:`stream_min_bytes` in a streamable format (see the module
    docstring), True streams whenever the format allows, False never streams.
    """
    p = Path(path)
    mapping = dict(mapping or {})
    if format is not None and format not in SHAPES:
        raise UserError(f"--format must be one of {', '.join(SHAPES)}, got {format!r}")
    existing_file(p)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise UserError(f"{p}: cannot read file ({exc.strerror})") from None
    if stream is not False and (stream or size >= stream_min_bytes()):
        sfmt = _stream_format(p)
        if sfmt is not None:
            return _StreamSource(p, sfmt, format, mapping, require_output, skip_bad_rows).scan()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"{p}: cannot read file ({exc.strerror})") from None
    if not data.strip():
        raise UserError(f"{p}: file is empty")
    fmt, parsed = _detect_file_format(p, data)
    sha = hashlib.sha256(data).hexdigest()
    records: list[Record] = []
    bad: list[BadRow] = []
    shape = format
    index = 0
    for where, raw in _iter_raw_rows(p, fmt, data, parsed):
        try:
            if isinstance(raw, _Malformed):
                raise _RowError(raw.reason)
            if shape is None and isinstance(raw, dict):
                shape = _detect_shape(raw, mapping)
            rec = _to_record(index, raw, shape or "alpaca", mapping, require_output)
        except _RowError as exc:
            if not skip_bad_rows:
                raise UserError(f"{where}: {exc} (use --skip-bad-rows to record and skip bad rows)") from None
            bad.append(BadRow(where, str(exc), index))
            index += 1
            continue
        records.append(rec)
        index += 1
    if not records and not bad:
        raise UserError(f"{p}: file contains no rows")
    if not records:
        raise UserError(f"{p}: no readable rows ({len(bad)} bad rows; first: {bad[0].where}: {bad[0].reason})")
    return Dataset(p, fmt, shape or "alpaca", records, bad, sha, mapping, index)


# --------------------------------------------------------------------------------------------- streaming

ENV_STREAM_MIN_BYTES = "REFLECTKIT_STREAM_MIN_BYTES"
_STREAM_MIN_BYTES = 16 << 20


def stream_min_bytes() -> int:
    """Files at least this large are streamed when their format allows (``REFLECTKIT_STREAM_MIN_BYTES``)."""
    try:
        return int(os.environ.get(ENV_STREAM_MIN_BYTES, _STREAM_MIN_BYTES))
    except ValueError:
        return _STREAM_MIN_BYTES


def _stream_format(path: Path) -> str | None:
    """The streamable format of ``path``, or None when it must be read whole (JSON, an unclear JSONL file)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":  # an array streams element by element; an object (a wrapper, one row) is read whole
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "json" if head.startswith(b"[") else None
    if suffix not in (".jsonl", ".ndjson"):
        return None
    # JSONL only when the first non-blank line is an object on its own and a second row follows: then the whole
    # file cannot be one JSON document, so the eager reader would call it JSONL too
    lines = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            if lines == 0:
                try:
                    first = json.loads(raw.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return None
                if not isinstance(first, dict):
                    return None
            lines += 1
            if lines >= 2:
                return "jsonl"
    return None


class _StreamSource:
    """A dataset file read row by row (JSONL, CSV/TSV, Parquet). :meth:`scan` checks every row once and returns
    the :class:`Dataset`; :meth:`iter_records` reads the records again, as often as needed."""

    def __init__(self, path: Path, fmt: str, shape: str | None, mapping: dict[str, str], require_output: bool,
                 skip_bad_rows: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.shape = shape
        self.mapping = mapping
        self.require_output = require_output
        self.skip_bad_rows = skip_bad_rows
        self._hash: Any = None

    # -- raw rows
    def _raw(self) -> Iterator[tuple[str, Any]]:
        if self.fmt == "jsonl":
            yield from self._raw_jsonl()
        elif self.fmt == "json":
            yield from self._raw_json_array()
        elif self.fmt == "csv":
            yield from self._raw_csv()
        else:
            yield from self._raw_parquet()

    def _raw_jsonl(self) -> Iterator[tuple[str, Any]]:
        offset = 0
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if self._hash is not None:
                    self._hash.update(raw)
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise UserError(f"{self.path}:{lineno}: file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                                    f"at offset {offset + exc.start})") from None
                offset += len(raw)
                if not line.strip():
                    continue
                try:
                    yield f"{self.path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{self.path}:{lineno}", _Malformed(f"malformed JSON ({exc.msg}, column {exc.colno})")

    def _raw_json_array(self, chunk: int = 1 << 20) -> Iterator[tuple[str, Any]]:
        """The elements of a top-level JSON array, parsed one at a time from a sliding buffer."""
        decoder = json.JSONDecoder()
        ws = " \t\r\n"
        with open(self.path, encoding="utf-8-sig") as fh:
            buf, pos, lines_before, eof = "", 0, 0, False

            def more() -> bool:
                nonlocal buf, pos, lines_before, eof
                if eof:
                    return False
                try:
                    data = fh.read(chunk)
                except UnicodeDecodeError:
                    raise UserError(f"{self.path}:{lines_before + buf.count(chr(10)) + 1}: file is not valid UTF-8") from None
                if not data:
                    eof = True
                    return False
                if pos > chunk:  # drop what is parsed; count its lines for messages
                    lines_before += buf.count("\n", 0, pos)
                    buf, pos = buf[pos:], 0
                buf += data
                return True

            def skip() -> str:
                nonlocal pos
                while True:
                    while pos < len(buf) and buf[pos] in ws:
                        pos += 1
                    if pos < len(buf) or not more():
                        return buf[pos] if pos < len(buf) else ""

            def fail(msg: str, at: int) -> UserError:
                return UserError(f"{self.path}:{lines_before + buf.count(chr(10), 0, at) + 1}: malformed JSON ({msg})")

            if skip() != "[":
                raise fail("expected a JSON array", pos)
            pos += 1
            i = 0
            if skip() == "]":
                return
            while True:
                skip()
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        if end == len(buf) and not eof and isinstance(obj, (int, float)):
                            raise json.JSONDecodeError("number may continue", buf, pos)  # read the rest first
                        break
                    except json.JSONDecodeError as exc:
                        if not more():
                            raise fail(exc.msg, exc.pos) from None
                pos = end
                i += 1
                yield f"{self.path}:row {i}", obj
                c = skip()
                if c == ",":
                    pos += 1
                elif c == "]":
                    return
                else:
                    raise fail("expected ',' or ']' after an array element", pos)

    def _raw_csv(self) -> Iterator[tuple[str, Any]]:
        delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
        with open(self.path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            try:
                if not reader.fieldnames:
                    raise UserError(f"{self.path}: CSV file has no header row")
                for row in reader:
                    yield f"{self.path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
            except csv.Error as exc:
                raise UserError(f"{self.path}:{reader.line_num}: malformed CSV ({exc})") from None
            except UnicodeDecodeError:
                raise UserError(f"{self.path}:{reader.line_num + 1}: file is not valid UTF-8") from None

    def _raw_parquet(self) -> Iterator[tuple[str, Any]]:
        try:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(self.path)
            batches = pf.iter_batches(batch_size=2048)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise UserError(f"{self.path}: not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
        i = 0
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:
                raise UserError(f"{self.path}: not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
            if batch is None:
                return
            for row in batch.to_pylist():
                i += 1
                if isinstance(row.get(RK_KEY), str):
                    try:
                        row[RK_KEY] = json.loads(row[RK_KEY])
                    except json.JSONDecodeError:
                        pass
                yield f"{self.path}:row {i}", row

    # -- records
    def _rows(self) -> Iterator[Record | BadRow]:
        """Records and bad rows in file order (a bad row raises unless ``skip_bad_rows``)."""
        shape = self.shape
        index = 0
        for where, raw in self._raw():
            try:
                if isinstance(raw, _Malformed):
                    raise _RowError(raw.reason)
                if shape is None and isinstance(raw, dict):
                    shape = self.shape = _detect_shape(raw, self.mapping)
                yield _to_record(index, raw, shape or "alpaca", self.mapping, self.require_output)
            except _RowError as exc:
                if not self.skip_bad_rows:
                    raise UserError(f"{where}: {exc} (use --skip-bad-rows to record and skip bad rows)") from None
                yield BadRow(where, str(exc), index)
            index += 1

    def iter_records(self, limit: int | None = None) -> Iterator[Record]:
        for r in self._rows():
            if limit is not None and r.index >= limit:
                return
            if isinstance(r, Record):
                yield r

    def scan(self) -> Dataset:
        """Read every row once: counts, bad rows, shape, the file's sha256 and the row-id digest; no records kept."""
        self._hash = hashlib.sha256() if self.fmt == "jsonl" else None
        ids = hashlib.sha256()
        bad: list[BadRow] = []
        n_records = n_rows = 0
        for r in self._rows():
            n_rows += 1
            if isinstance(r, BadRow):
                bad.append(r)
                continue
            ids.update((("\n" if n_records else "") + r.id).encode())
            n_records += 1
        sha = self._hash.hexdigest() if self._hash is not None else file_sha256(self.path)
        self._hash = None
        if not n_records and not bad:
            raise UserError(f"{self.path}: file contains no rows")
        if not n_records:
            raise UserError(f"{self.path}: no readable rows ({len(bad)} bad rows; first: {bad[0].where}: {bad[0].reason})")
        return Dataset(self.path, self.fmt, self.shape or "alpaca", LazyRecords(self, n_records), bad, sha,  # type: ignore[arg-type]
                       self.mapping, n_rows, ids.hexdigest())


# --------------------------------------------------------------------------------------------- writing


def _replace_chat(turns: list[Any], role_key: str, content_key: str, instruction: str, output: str) -> list[Any]:
    new = [dict(m) if isinstance(m, dict) else m for m in turns]
    seen_user = False
    for m in new:
        role = str(m.get(role_key, "")).lower()
        if role in _USER_ROLES and not seen_user:
            m[content_key] = instruction
            seen_user = True
        elif role in _ASSISTANT_ROLES and seen_user:
            m[content_key] = output
            return new
    if seen_user:
        new.append({role_key: "assistant" if role_key == "role" else "gpt", content_key: output})
    return new


def record_to_row(
    rec: Record,
    *,
    instruction: str | None = None,
    input: str | None = None,
    output: str | None = None,
    rk: dict[str, Any] | None = None,
    mapping: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the output row in the record's original shape, with new texts and reflectkit's fields under ``reflectkit``."""
    mapping = mapping or {}
    col = lambda name: mapping.get(name, name)
    row = dict(rec.raw)
    ins = rec.instruction if instruction is None else instruction
    inp = rec.input if input is None else input
    out = rec.output if output is None else output
    if rec.shape == "alpaca":
        row[col("instruction")] = ins
        if inp or col("input") in row:
            row[col("input")] = inp
        row[col("output")] = out
    elif rec.shape == "messages":
        row[col("messages")] = _replace_chat(row.get(col("messages"), []), "role", "content", ins, out)
    else:
        row[col("conversations")] = _replace_chat(row.get(col("conversations"), []), "from", "value", ins, out)
    meta = dict(rec.meta)
    meta["id"] = rec.id
    if rk:
        meta.update(rk)
    row[RK_KEY] = meta
    return row


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path``, fsync it and rename it over ``path``: readers see the old file or
    the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_open(path) as fh:
        fh.write(data)


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_dataset(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows atomically: Parquet for ``.parquet``/``.pq``, otherwise JSONL.

    In Parquet the ``reflectkit`` column is stored as a JSON string (its nested fields vary from row to row);
    :func:`read_dataset` decodes it again.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = [{**r, RK_KEY: json.dumps(r[RK_KEY], ensure_ascii=False)} if RK_KEY in r else r for r in rows]
            # every column any row has (from_pylist alone takes the columns of the first row and drops the rest)
            columns = list(dict.fromkeys(k for r in flat for k in r))
            buf = io.BytesIO()
            try:
                table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in flat])
            except (pa.ArrowException, ValueError, TypeError) as exc:
                raise UserError(f"{p}: these rows cannot be written as Parquet ({exc}); write .jsonl instead") from None
            pq.write_table(table, buf)
            _atomic_write_bytes(p, buf.getvalue())
        else:
            _atomic_write_bytes(p, dumps_jsonl(rows))
    except OSError as exc:
        raise UserError(f"{p}: cannot write output ({exc.strerror})") from None
    return p


def write_rows(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write rows atomically and return how many: JSONL row by row (flat memory, the same bytes as
    :func:`write_dataset`); Parquet through :func:`write_dataset` (built in memory)."""
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".pq"):
        rows = list(rows)
        write_dataset(rows, p)
        return len(rows)
    n = 0
    try:
        with _atomic_open(p, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                n += 1
    except OSError as exc:
        raise UserError(f"{p}: cannot write output ({exc.strerror})") from None
    return n


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
