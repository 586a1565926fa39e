"""Read and write datasets: JSONL, JSON arrays, Parquet and CSV, in Alpaca, chat (``messages``) or ShareGPT shape.

Every problem with the user's file becomes one :class:`~reflectkit.errors.UserError` naming the file and the
line (JSONL, JSON, CSV) or row (Parquet). With ``skip_bad_rows=True`` a bad row becomes a :class:`BadRow`
that is counted and reported instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

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

    @property
    def n_rows(self) -> int:
        return self.rows_in_file or (len(self.records) + len(self.bad_rows))

    def limit(self, n: int | None) -> "Dataset":
        """The first ``n`` rows of the file (``--limit``); bad rows among them stay recorded."""
        if n is None:
            return self
        recs = [r for r in self.records if r.index < n]
        bad = [b for b in self.bad_rows if b.index < n]
        return Dataset(self.path, self.file_format, self.shape, recs, bad, self.sha256, self.mapping, self.n_rows)


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
    col = lambda name: mapping.get(name, name)  # noqa: E731
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
) -> Dataset:
    """Read a dataset file into :class:`Record` objects.

    ``format`` forces the record shape (``alpaca``, ``messages``, ``sharegpt``); by default it is detected from
    the first row. ``mapping`` renames fields (``{"instruction": "question", "output": "answer"}``).
    """
    p = Path(path)
    mapping = dict(mapping or {})
    if format is not None and format not in SHAPES:
        raise UserError(f"--format must be one of {', '.join(SHAPES)}, got {format!r}")
    existing_file(p)
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
    col = lambda name: mapping.get(name, name)  # noqa: E731
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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
