"""The DuckDB store: schema migrations, writing runs as they progress, and queries.

Several processes share one database file (the app, `tokentop bench`, `runs`, a second app...), and
DuckDB lets only one process write it at a time. So no process keeps the file open: every query or
transaction opens it, does its work and closes it (connection()). A conflicting lock held by another
process is waited out with backoff for at most LOCK_WAIT_S, then a one-line StoreError names that
process. Within a process, threads share whatever connection is open at that moment (see _FileGate).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import duckdb
import numpy as np

from data.paths import default_db_path
from engine.errors import TokentopError
from engine.terminal_text import one_line

# How long a query or transaction waits for another process's lock on the file before giving up.
# Other tokentop processes hold it for milliseconds at a time (one short transaction).
LOCK_WAIT_S = 5.0
_FIRST_BACKOFF_S = 0.002
_MAX_BACKOFF_S = 0.05


# SQL over `runs r JOIN requests q`: the requests a run's figures count (data.analysis.run_figures: its
# module docstring says the rule, and counts() is the same rule in Python).
COUNTED_SQL = "(q.success OR (r.kind = 'interactive' AND q.ttft_ms IS NOT NULL AND q.e2el_ms IS NOT NULL))"


# The one-row manifest table every bundle holds (data/travel/bundle.py); a database never has it.
BUNDLE_MANIFEST_TABLE = "tokentop_bundle"


class StoreError(TokentopError):
    """The database cannot be opened or written; the message says what to do."""

    exit_code = 2  # bad input (engine.errors)


class DatabaseLocked(StoreError):
    """Another process held the file's lock for longer than we were willing to wait."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


@dataclass
class RequestRow:
    """One finished (or failed) request, as stored."""

    request_index: int
    case_id: str
    rep: int
    sent_at: datetime
    send_offset_s: float
    prompt: str
    input_tokens: int | None
    output_tokens: int
    target_tokens: int | None
    ttft_ms: float | None
    e2el_ms: float | None
    tpot_ms: float | None
    tps: float | None
    success: bool
    finish_reason: str | None
    error: str | None
    output_text: str
    chunk_t_ns: Sequence[int] = ()
    chunk_tokens: Sequence[int] = ()
    # Reasoning models: time to first answer token and the reasoning/answer split (None = no reasoning).
    ttfo_ms: float | None = None
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
    chunk_reasoning_tokens: Sequence[int] | None = None
    # Client self-check: lateness against the schedule, and the wait on the concurrency limit.
    send_lag_ms: float | None = None
    queue_wait_ms: float | None = None
    # Workloads (schema 007): the conversation and turn, the prompt length asked for, cached prompt tokens.
    conversation_id: int | None = None
    turn_index: int | None = None
    target_input_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_form: str | None = None
    # Schema 011: the server's own timing (engine.measure.server_timing; vLLM's per-request metrics).
    server_ttft_ms: float | None = None  # scheduled -> first token (the queue not included)
    server_queue_time_ms: float | None = None
    server_generation_time_ms: float | None = None
    server_mean_itl_ms: float | None = None
    server_tokens_per_second: float | None = None
    server_timing_source: str | None = None  # "server" (the stream's metrics) or "engine" (in-process)
    spec_acceptance_rate: float | None = None
    spec_acceptance_length: float | None = None
    spec_accepted_tokens: int | None = None
    spec_draft_tokens: int | None = None
    spec_steps: int | None = None
    # Schema 006: how tokens were counted, first content, stopping early, failures, schedule-to-finish.
    token_count_source: str | None = None
    ttfc_ms: float | None = None
    first_chunk_empty: bool | None = None
    asked_tokens: int | None = None
    stopped_early: bool | None = None
    error_kind: str | None = None
    http_status: int | None = None
    schedule_to_finish_ms: float | None = None


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("data.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text()))
    return sorted(found)


def new_run_id() -> str:
    """A run id: local start time and 6 random hex digits, e.g. 20260101-093000-1a2b3c (time-sortable;
    engine/orchestrator.py makes the same shape). Ids become keys here and paths on a remote
    (runs/<run_id>/), so ids from outside must pass check_ids("run", ...)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def new_fetch_id() -> str:
    """A price fetch id (prices.fetch_id, price_fetches.fetch_id): 12 random hex digits."""
    return uuid.uuid4().hex[:12]


class IdError(TokentopError, ValueError):
    """An id from outside (a bundle, a remote, a manifest) that is not of a shape this store makes;
    the message is one line and shows the id escaped (it is outside text)."""

    exit_code = 2  # bad input (engine.errors)


# The only shapes tokentop makes (new_run_id, new_fetch_id); anything else from outside is refused.
ID_SHAPES = {
    "run": (re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}"), "YYYYMMDD-HHMMSS-xxxxxx"),
    "price fetch": (re.compile(r"[0-9a-f]{12}"), "12 hex digits"),
}


def check_ids(kind: str, ids: Iterable[Any], where: str = "") -> None:
    """The one id check for everything that crosses the box's edge (import, export, push, pull).
    `kind` is "run" or "price fetch"; raises IdError naming the first id that is not exactly the
    shape new_run_id / new_fetch_id make (not a string, path separators, dots, control characters…)."""
    shape, example = ID_SHAPES[kind]
    for value in ids:
        if not isinstance(value, str) or shape.fullmatch(value) is None:
            shown = ascii(value) if len(str(value)) <= 60 else ascii(str(value)[:60]) + "…"
            raise IdError(f"{where + ': ' if where else ''}{kind} id {shown} is not one tokentop makes ({example})")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


class Store:
    def __init__(self, path: str | os.PathLike | None = None, *, lock_wait_s: float = LOCK_WAIT_S):
        self.path = Path(path) if path else default_db_path()
        self.lock_wait_s = lock_wait_s
        self._on_close: list[Any] = []  # callbacks run by close() (the background writer's flush)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot open database {self.path}: {exc} (choose a writable file with --db PATH or TOKENTOP_DB)"
            ) from None
        self._gate = _gate_for(self.path)
        self._refuse_bundle()  # before migrate(), which would write into it
        self.migrate()
        self.recover_crashed_runs()

    # -- connections ------------------------------------------------------------
    @contextmanager
    def connection(self, *, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one short piece of work (a query or a transaction), writable. The file is
        open only while some thread of this process is inside one of these blocks; waits out another
        process's lock for at most `wait_s` (default LOCK_WAIT_S), then raises DatabaseLocked."""
        with self._gate.use(True, self.lock_wait_s if wait_s is None else wait_s) as con:
            yield con

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Like connection(), but opens the file read-only when nothing else in this process has it
        open, so several processes can read at once."""
        with self._gate.use(False, self.lock_wait_s) as con:
            yield con

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts. A statement that is not a read (UPDATE, INSERT...) gets a writable connection."""
        if _READ_SQL.match(sql):
            return self._dicts(sql, params)
        with self.connection() as con:
            cur = con.execute(sql, list(params))
            if cur.description is None:
                return []
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    @contextmanager
    def transaction(self, *, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """connection() inside BEGIN ... COMMIT (ROLLBACK on error)."""
        with self.connection(wait_s=wait_s) as con:
            con.execute("BEGIN")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # -- schema -------------------------------------------------------------
    def _refuse_bundle(self) -> None:
        """A bundle (`tokentop export`) named as the database (--db, TOKENTOP_DB) is refused, read-only,
        before anything is written to it: it is input to import, never a database to run in."""
        try:
            if not self.path.is_file() or self.path.stat().st_size == 0:
                return
        except OSError:
            return
        with self.reading() as con:
            found = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ?", [BUNDLE_MANIFEST_TABLE]
            ).fetchone()[0]
        if found:
            raise StoreError(
                f"{self.path} is a bundle written by `tokentop export`, not a database: "
                f"import it with `tokentop import {self.path}` (and use --db for the database to import into)"
            )

    def migrate(self) -> int:
        with self.connection() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            done = {row[0] for row in con.execute("SELECT version FROM schema_version").fetchall()}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                con.execute("BEGIN")
                try:
                    con.execute(sql)
                    con.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        [version, name, datetime.now(timezone.utc)],
                    )
                    con.execute("COMMIT")
                except Exception:
                    con.execute("ROLLBACK")
                    raise
            return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    def schema_version(self) -> int:
        with self.reading() as con:
            return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    def recover_crashed_runs(self) -> int:
        """Runs left 'running' by a process of this host that no longer exists become 'aborted'."""
        host = socket.gethostname()
        with self.connection() as con:
            rows = con.execute(
                "SELECT run_id, pid FROM runs WHERE status = 'running' AND hostname = ?", [host]
            ).fetchall()
            stale = [run_id for run_id, pid in rows if pid is None or not _pid_alive(pid)]
            for run_id in stale:
                con.execute(
                    "UPDATE runs SET status = 'aborted', error = coalesce(error, 'process ended during the run') "
                    "WHERE run_id = ?",
                    [run_id],
                )
            return len(stale)

    # -- writing ------------------------------------------------------------
    def start_run(self, **fields: Any) -> str:
        """Insert a 'running' run row; returns its id. The keywords are run_row_params's (below): kind,
        engine, model and environment required; TypeError for a missing or unknown one."""
        run_id, params = run_row_params(**fields)
        with self.connection() as con:
            insert_run(con, params)
        return run_id

    def add_request(self, run_id: str, row: RequestRow) -> None:
        with self.transaction() as con:
            insert_request(con, run_id, row)

    def finish_run(self, run_id: str, status: str, **ending: Any) -> None:
        """Mark a run finished: update_finished_run's (below) keywords, duration_s, summary and error;
        TypeError for an unknown one."""
        with self.connection() as con:
            update_finished_run(con, run_id, status, **ending)

    # -- reading ------------------------------------------------------------
    def _dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self.reading() as con:
            cur = con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = """
            SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.duration_s, r.suite, r.reps,
                   r.engine, r.model, r.hostname, r.device, r.gpu_key, r.gpu_count, r.label,
                   r.provider, r.provider_source, r.instance_id, r.instance_type, r.region, r.price_per_hour_usd,
                   TRY_CAST(json_extract_string(r.suite_json, '$.load.max_concurrency') AS INTEGER) AS max_concurrency,
                   json_extract_string(r.suite_json, '$.load.request_rate') AS request_rate,
                   r.workload_key, r.workload_label,
                   count(q.request_index) AS requests,
                   count(q.request_index) FILTER (WHERE q.success) AS completed,
                   avg(q.tps) FILTER (WHERE {counted}) AS mean_tps,
                   avg(q.ttft_ms) FILTER (WHERE {counted}) AS mean_ttft_ms,
                   avg(q.tpot_ms) FILTER (WHERE {counted}) AS mean_tpot_ms,
                   sum(q.output_tokens) FILTER (WHERE {counted}) AS output_tokens
            FROM runs r LEFT JOIN requests q USING (run_id)
            GROUP BY ALL
            ORDER BY r.started_at DESC, r.run_id DESC
        """.format(counted=COUNTED_SQL)
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._dicts(sql)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            matches = self._dicts("SELECT * FROM runs WHERE run_id LIKE ? ORDER BY started_at", [run_id + "%"])
            if len(matches) != 1:
                return None
            rows = matches
        run = rows[0]
        for key in ("suite_json", "engine_args", "environment", "summary", "gpus_used", "client_health",
                    "failures_by_kind", "workload"):
            if isinstance(run.get(key), str):
                run[key] = json.loads(run[key])
        return run

    def get_requests(self, run_id: str) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM requests WHERE run_id = ? ORDER BY request_index", [run_id])

    def get_chunks(self, run_id: str, request_index: int | None = None) -> list[dict[str, Any]]:
        if request_index is None:
            return self._dicts(
                "SELECT * FROM chunks WHERE run_id = ? ORDER BY request_index, chunk_index", [run_id]
            )
        return self._dicts(
            "SELECT * FROM chunks WHERE run_id = ? AND request_index = ? ORDER BY chunk_index",
            [run_id, request_index],
        )

    def close(self) -> None:
        """Flush what this process still buffers for the file (bounded); there is no connection to close."""
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_READ_SQL = re.compile(r"\s*(SELECT|WITH|FROM|DESCRIBE|SHOW|SUMMARIZE|EXPLAIN|PRAGMA|VALUES)\b", re.IGNORECASE)


# -- the SQL of each write, shared by Store's own methods and the recorder's background writer --------
def run_row_params(
    *,
    kind: str,
    engine: str,
    model: str | None,
    environment: dict[str, Any],
    suite: str | None = None,
    suite_json: Any = None,
    reps: int | None = None,
    engine_args: dict[str, Any] | None = None,
    dtype: str | None = None,
    label: str | None = None,
    run_id: str | None = None,
    workload: dict[str, Any] | None = None,
) -> tuple[str, list[Any]]:
    """(run_id, insert_run's parameters in its column order) for a new 'running' run row; the one list of
    a run row's fields, taken by Store.start_run and RunRecorder.start. environment: what
    engine/telemetry/environment.py gathers; run_id: a new one when None."""
    run_id = run_id or new_run_id()
    # The GPUs the engine was given (environment["gpus_used"]) when known, else every GPU seen.
    gpus_used = environment.get("gpus_used")
    gpus = gpus_used if gpus_used is not None else (environment.get("gpus") or [])
    first = gpus[0] if gpus else {}
    # Where the run ran and what the instance costs: environment["location"] (see engine/telemetry/environment.py).
    where = environment.get("location") or {}
    return run_id, [
        run_id,
        kind,
        datetime.now(timezone.utc),
        suite,
        _json(suite_json),
        reps,
        engine,
        _json(engine_args or {}),
        model,
        dtype,
        environment.get("hostname") or socket.gethostname(),
        os.getpid(),
        environment.get("device") or "CPU",
        first.get("key"),
        len(gpus) or None,
        first.get("memory_mb"),
        first.get("driver"),
        _json(environment),
        label,
        where.get("provider"),
        where.get("provider_source"),
        where.get("instance_id"),
        where.get("instance_type"),
        where.get("region"),
        where.get("price_per_hour_usd"),
        _json(gpus_used),
        _json(workload),
        (workload or {}).get("key"),
        (workload or {}).get("label"),
    ]


def insert_run(con: duckdb.DuckDBPyConnection, params: list[Any]) -> None:
    con.execute(
        """INSERT INTO runs (run_id, kind, status, started_at, suite, suite_json, reps, engine,
               engine_args, model, dtype, hostname, pid, device, gpu_key, gpu_count, gpu_memory_mb,
               driver, environment, label, provider, provider_source, instance_id, instance_type,
               region, price_per_hour_usd, gpus_used, workload, workload_key, workload_label)
           VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                   ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        params,
    )


# requests' columns and their types (the lists are cast, so a column of all None still binds)
_REQUEST_TYPES = {
    "run_id": "VARCHAR", "request_index": "INTEGER", "case_id": "VARCHAR", "rep": "INTEGER",
    "sent_at": "TIMESTAMPTZ", "send_offset_s": "DOUBLE", "prompt": "VARCHAR", "input_tokens": "INTEGER",
    "output_tokens": "INTEGER", "target_tokens": "INTEGER", "ttft_ms": "DOUBLE", "e2el_ms": "DOUBLE",
    "tpot_ms": "DOUBLE", "tps": "DOUBLE", "success": "BOOLEAN", "finish_reason": "VARCHAR", "error": "VARCHAR",
    "output_text": "VARCHAR", "ttfo_ms": "DOUBLE", "reasoning_tokens": "INTEGER", "answer_tokens": "INTEGER",
    "send_lag_ms": "DOUBLE", "queue_wait_ms": "DOUBLE",
    "token_count_source": "VARCHAR", "ttfc_ms": "DOUBLE", "first_chunk_empty": "BOOLEAN", "asked_tokens": "INTEGER",
    "stopped_early": "BOOLEAN", "error_kind": "VARCHAR", "http_status": "INTEGER", "schedule_to_finish_ms": "DOUBLE",
    "conversation_id": "INTEGER", "turn_index": "INTEGER", "target_input_tokens": "INTEGER", "cached_tokens": "INTEGER",
    "prompt_form": "VARCHAR",
    "server_ttft_ms": "DOUBLE", "server_queue_time_ms": "DOUBLE", "server_generation_time_ms": "DOUBLE",
    "server_mean_itl_ms": "DOUBLE", "server_tokens_per_second": "DOUBLE", "server_timing_source": "VARCHAR",
    "spec_acceptance_rate": "DOUBLE", "spec_acceptance_length": "DOUBLE", "spec_accepted_tokens": "INTEGER",
    "spec_draft_tokens": "INTEGER", "spec_steps": "INTEGER",
}
_REQUEST_COLUMNS = ", ".join(_REQUEST_TYPES)
_REQUEST_FIELDS = list(_REQUEST_TYPES)[1:]


def insert_request(con: duckdb.DuckDBPyConnection, run_id: str, row: RequestRow) -> None:
    """The request row and its chunks; the caller owns the transaction."""
    insert_requests(con, [(run_id, row)])


def insert_requests(con: duckdb.DuckDBPyConnection, items: Sequence[tuple[str, RequestRow]]) -> None:
    """Many requests and all their chunks in two statements (unnest() zips the column lists), however
    many there are: the background writer's batches cost about what one request did."""
    if not items:
        return
    columns = [[run_id for run_id, _row in items]]
    columns += [[getattr(row, name) for _run_id, row in items] for name in _REQUEST_FIELDS]
    con.execute(
        f"INSERT INTO requests ({_REQUEST_COLUMNS}) "
        f"SELECT {', '.join(f'unnest(?::{t}[])' for t in _REQUEST_TYPES.values())}",
        columns,
    )
    by_run: dict[str, list[RequestRow]] = {}
    for run_id, row in items:
        if len(row.chunk_t_ns):
            by_run.setdefault(run_id, []).append(row)
    for run_id, rows in by_run.items():
        _insert_chunks(con, run_id, rows)


def _insert_chunks(con: duckdb.DuckDBPyConnection, run_id: str, rows: Sequence[RequestRow]) -> None:
    """Every chunk of these requests in one statement. The columns go in as numpy arrays that DuckDB
    scans in C++ (a registered dict of arrays): ~10x less CPU than binding Python lists, which costs
    the measuring process ~1.5 us per value (benchmarks/RESULTS.md, client ceiling)."""
    counts = [len(row.chunk_t_ns) for row in rows]
    total = sum(counts)
    t_ns = np.empty(total, dtype=np.int64)
    tokens = np.empty(total, dtype=np.int32)
    reasoning = np.zeros(total, dtype=np.int32)
    has_reasoning = np.zeros(total, dtype=np.bool_)
    pos = 0
    for row, n in zip(rows, counts):
        t_ns[pos:pos + n] = row.chunk_t_ns
        tokens[pos:pos + n] = row.chunk_tokens[:n]
        per = row.chunk_reasoning_tokens
        if per:
            for i, k in enumerate(list(per)[:n]):
                if k is not None:
                    reasoning[pos + i] = int(k)
                    has_reasoning[pos + i] = True
        pos += n
    columns = {
        "request_index": np.repeat(np.fromiter((row.request_index for row in rows), dtype=np.int32, count=len(rows)),
                                   counts),
        "chunk_index": np.concatenate([np.arange(n, dtype=np.int32) for n in counts]),
        "t_ns": t_ns, "tokens": tokens, "reasoning": reasoning, "has_reasoning": has_reasoning,
    }
    name = f"_tokentop_chunks_{threading.get_ident()}"
    con.register(name, columns)
    try:
        con.execute(
            "INSERT INTO chunks (run_id, request_index, chunk_index, t_ns, tokens, reasoning_tokens) "
            "SELECT ?, request_index, chunk_index, t_ns, tokens, CASE WHEN has_reasoning THEN reasoning END "
            f"FROM {name}",
            [run_id],
        )
    finally:
        con.unregister(name)


def update_finished_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    status: str,
    *,
    duration_s: float | None = None,
    summary: Any = None,
    error: str | None = None,
) -> None:
    """Set a run row's status, finished_at (now), duration_s (seconds), summary (stored as JSON; its
    client_health, failures and token counting also in their own columns) and error (one line); shared by
    Store.finish_run and the recorder's background writer."""
    # The client's self-check (engine.measure.client_health) travels in the summary and gets its own column;
    # so do the run's failures and how its tokens were counted (schema 006).
    health = summary.get("client_health") if isinstance(summary, dict) else None
    overall = (summary.get("overall") if isinstance(summary, dict) else None) or {}
    sources = overall.get("token_count_sources") or {}
    con.execute(
        "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, summary = ?, error = ?, client_health = ?, "
        "failed_requests = ?, failure_rate = ?, failures_by_kind = ?, stopped_early = ?, token_count_source = ?, "
        "output_tokens_estimated = ? WHERE run_id = ?",
        [status, datetime.now(timezone.utc), duration_s, _json(summary), error, _json(health),
         overall.get("failed"), overall.get("failure_rate"), _json(overall.get("failures_by_kind")),
         overall.get("stopped_early"), ", ".join(sorted(sources)) or None, overall.get("output_tokens_estimated"),
         run_id],
    )


# -- opening the file ---------------------------------------------------------------------------------
# DuckDB names the holder as "in /usr/bin/python3 (PID 123)", or only "in PID 0" when it cannot name it
# (seen in CI while another process wrote: most likely a lock released before DuckDB asked who held it);
# either way a conflict, waited out like any other.
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?:(?P<exe>.*?) \()?PID (?P<pid>\d+)\)?")
_OTHER_CONFIG = "different configuration"  # this process has the file open in the other mode
_LOCK_CONFLICT = "Conflicting lock is held"  # another process holds it, however DuckDB names the holder
# (other "Could not set lock" errors, e.g. a file system without locks, are not waited out)


class _FileGate:
    """One per database file in this process. Threads that need the file at the same time share one
    open database (a cursor each), so the process holds DuckDB's file lock only while some thread is
    working, and never opens the same file twice in different modes (DuckDB refuses that). Reads open
    it read-only (other processes may read at once); a write waits for this process's read-only
    users to finish, then opens it writable; reads arriving while it is writable share it."""

    def __init__(self, path: Path):
        self.path = path
        self.cond = threading.Condition()
        self.db: duckdb.DuckDBPyConnection | None = None
        self.writable = False
        self.users = 0
        self.opening = False
        self.writers_waiting = 0
        self.local = threading.local()  # per thread: how many blocks it is inside, and whether writable

    @contextmanager
    def use(self, write: bool, wait_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
        depth = getattr(self.local, "depth", 0)
        if depth:  # nested in this thread: the open database is already ours
            if write and not self.writable:
                raise RuntimeError("a write inside a read-only Store.reading() block")
            cursor = self.db.cursor()
            self.local.depth = depth + 1
            try:
                yield cursor
            finally:
                self.local.depth = depth
                cursor.close()
            return
        db = self._acquire(write, wait_s)
        self.local.depth = 1
        try:
            cursor = db.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            self.local.depth = 0
            self._release()

    def _acquire(self, write: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
        with self.cond:
            if write:
                self.writers_waiting += 1
            try:
                while True:
                    if self.db is not None and (self.writable or (not write and not self.writers_waiting)):
                        self.users += 1
                        return self.db
                    if self.db is None and not self.opening:
                        self.opening = True
                        break
                    self.cond.wait()
            finally:
                if write:
                    self.writers_waiting -= 1
        try:
            db, writable = _connect(self.path, write, wait_s)
        except BaseException:
            with self.cond:
                self.opening = False
                self.cond.notify_all()
            raise
        with self.cond:
            self.db, self.writable, self.users, self.opening = db, writable, 1, False
            self.cond.notify_all()
        return db

    def _release(self) -> None:
        with self.cond:
            self.users -= 1
            if self.users:
                return
            db, self.db, self.writable = self.db, None, False
            try:
                db.close()  # releases the file lock (after a checkpoint when it was written)
            except duckdb.Error:
                pass
            self.cond.notify_all()


_gates: dict[str, _FileGate] = {}
_gates_lock = threading.Lock()


def _gate_for(path: Path) -> _FileGate:
    key = os.path.realpath(path)
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = _FileGate(Path(path))
        return gate


def _connect(path: Path, write: bool, wait_s: float) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """Open the file, retrying with backoff while another process holds a conflicting lock."""
    deadline = time.monotonic() + wait_s
    delay = _FIRST_BACKOFF_S
    read_only = not write and path.exists()
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only), not read_only
        except duckdb.Error as exc:
            text = str(exc)
            if _OTHER_CONFIG in text and read_only:
                read_only = False  # someone in this process holds it writable: share that
                continue
            holder = _LOCK_HOLDER.search(text)
            if holder is None and _LOCK_CONFLICT not in text and _OTHER_CONFIG not in text:
                reason = one_line(exc)
                raise StoreError(
                    f"cannot open database {path}: {reason} (choose a writable file with --db PATH or TOKENTOP_DB)"
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _locked_error(path, holder, _OTHER_CONFIG in text, wait_s) from None
            time.sleep(min(remaining, delay * (0.5 + random.random())))
            delay = min(delay * 2, _MAX_BACKOFF_S)


def _locked_error(path: Path, holder: re.Match | None, in_this_process: bool, wait_s: float) -> DatabaseLocked:
    pid = int(holder["pid"]) if holder else None
    if pid:
        who = f"process {pid} ({_describe_process(pid, holder['exe'] or f'PID {pid}')})"
    else:
        pid, who = None, "this process" if in_this_process else "another process"
    return DatabaseLocked(
        f"database {path} is locked by {who}, still after {wait_s:g} s: wait for it to finish, stop it, "
        "or use another file with --db PATH",
        pid,
    )


def _describe_process(pid: int, exe: str) -> str:
    """The holder's command line (`tokentop bench ...`) when /proc has it, else its executable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        args = [a for a in raw.decode(errors="replace").split("\0") if a]
    except OSError:
        args = []
    if args:
        # `python -m tui.cli bench` / `.../bin/tokentop bench`: show the program name, not the interpreter path
        args[0] = Path(args[0]).name
        text = " ".join(args)
    else:
        text = exe
    return text if len(text) <= 80 else text[:79] + "…"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
