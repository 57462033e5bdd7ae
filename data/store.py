"""The DuckDB store: schema migrations, writing runs as they progress, and queries.

One connection per Store, guarded by a lock, so the app's worker threads and the
engine's result callbacks can all write through the same object.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import duckdb

from data.paths import default_db_path


class StoreError(Exception):
    """The database cannot be opened or written; the message says what to do."""


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


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("data.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text()))
    return sorted(found)


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


class Store:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_db_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(str(self.path))
        except (duckdb.Error, OSError) as exc:
            reason = str(exc).splitlines()[0]
            raise StoreError(
                f"cannot open database {self.path}: {reason} "
                "(choose a writable file with --db PATH or TOKENTOP_DB)"
            ) from None
        self.migrate()
        self.recover_crashed_runs()

    # -- schema -------------------------------------------------------------
    def migrate(self) -> int:
        with self._lock:
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
            )
            done = {row[0] for row in self.con.execute("SELECT version FROM schema_version").fetchall()}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                self.con.execute("BEGIN")
                try:
                    self.con.execute(sql)
                    self.con.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        [version, name, datetime.now(timezone.utc)],
                    )
                    self.con.execute("COMMIT")
                except Exception:
                    self.con.execute("ROLLBACK")
                    raise
            return self.schema_version()

    def schema_version(self) -> int:
        with self._lock:
            return self.con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    def recover_crashed_runs(self) -> int:
        """Runs left 'running' by a process of this host that no longer exists become 'aborted'."""
        host = socket.gethostname()
        with self._lock:
            rows = self.con.execute(
                "SELECT run_id, pid FROM runs WHERE status = 'running' AND hostname = ?", [host]
            ).fetchall()
            stale = [run_id for run_id, pid in rows if pid is None or not _pid_alive(pid)]
            for run_id in stale:
                self.con.execute(
                    "UPDATE runs SET status = 'aborted', error = coalesce(error, 'process ended during the run') "
                    "WHERE run_id = ?",
                    [run_id],
                )
            return len(stale)

    # -- writing ------------------------------------------------------------
    def start_run(
        self,
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
    ) -> str:
        run_id = run_id or new_run_id()
        # The GPUs the engine was given (environment["gpus_used"]) when known, else every GPU seen.
        gpus_used = environment.get("gpus_used")
        gpus = gpus_used if gpus_used is not None else (environment.get("gpus") or [])
        first = gpus[0] if gpus else {}
        # Where the run ran and what the instance costs: environment["location"] (see engine/environment.py).
        where = environment.get("location") or {}
        with self._lock:
            self.con.execute(
                """INSERT INTO runs (run_id, kind, status, started_at, suite, suite_json, reps, engine,
                       engine_args, model, dtype, hostname, pid, device, gpu_key, gpu_count, gpu_memory_mb,
                       driver, environment, label, provider, provider_source, instance_id, instance_type,
                       region, price_per_hour_usd, gpus_used)
                   VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                           ?, ?, ?, ?, ?, ?, ?)""",
                [
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
                ],
            )
        return run_id

    def add_request(self, run_id: str, row: RequestRow) -> None:
        with self._lock:
            self.con.execute("BEGIN")
            try:
                self.con.execute(
                    """INSERT INTO requests (run_id, request_index, case_id, rep, sent_at, send_offset_s, prompt,
                           input_tokens, output_tokens, target_tokens, ttft_ms, e2el_ms, tpot_ms, tps,
                           success, finish_reason, error, output_text, ttfo_ms, reasoning_tokens,
                           answer_tokens, send_lag_ms, queue_wait_ms)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [
                        run_id,
                        row.request_index,
                        row.case_id,
                        row.rep,
                        row.sent_at,
                        row.send_offset_s,
                        row.prompt,
                        row.input_tokens,
                        row.output_tokens,
                        row.target_tokens,
                        row.ttft_ms,
                        row.e2el_ms,
                        row.tpot_ms,
                        row.tps,
                        row.success,
                        row.finish_reason,
                        row.error,
                        row.output_text,
                        row.ttfo_ms,
                        row.reasoning_tokens,
                        row.answer_tokens,
                        row.send_lag_ms,
                        row.queue_wait_ms,
                    ],
                )
                if row.chunk_t_ns:
                    # unnest() zips the lists: one INSERT for all chunks instead of executemany.
                    reasoning = row.chunk_reasoning_tokens
                    self.con.execute(
                        "INSERT INTO chunks (run_id, request_index, chunk_index, t_ns, tokens, reasoning_tokens) "
                        "SELECT ?, ?, unnest(?), unnest(?), unnest(?), unnest(?)",
                        [
                            run_id,
                            row.request_index,
                            list(range(len(row.chunk_t_ns))),
                            [int(t) for t in row.chunk_t_ns],
                            [int(n) for n in row.chunk_tokens],
                            [None if n is None else int(n) for n in reasoning]
                            if reasoning
                            else [None] * len(row.chunk_t_ns),
                        ],
                    )
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        duration_s: float | None = None,
        summary: Any = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self.con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, summary = ?, error = ? "
                "WHERE run_id = ?",
                [status, datetime.now(timezone.utc), duration_s, _json(summary), error, run_id],
            )

    def set_client_health(self, run_id: str, health: Any) -> None:
        """The client's self-check for a run (engine.client_health.assess), in runs.client_health."""
        with self.connection() as con:
            con.execute("UPDATE runs SET client_health = ? WHERE run_id = ?", [_json(health), run_id])

    # -- raw access (other data/ modules) -------------------------------------
    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one short piece of work (a query or a transaction). Every module that
        needs raw SQL goes through here, so how long the file is held is decided in one place."""
        with self._lock:
            yield self.con

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts."""
        return self._dicts(sql, params)

    # -- reading ------------------------------------------------------------
    def _dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = """
            SELECT r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.duration_s, r.suite, r.reps,
                   r.engine, r.model, r.hostname, r.device, r.gpu_key, r.label,
                   count(q.request_index) AS requests,
                   count(q.request_index) FILTER (WHERE q.success) AS completed,
                   avg(q.tps) FILTER (WHERE q.success) AS mean_tps,
                   avg(q.ttft_ms) FILTER (WHERE q.success) AS mean_ttft_ms,
                   avg(q.tpot_ms) FILTER (WHERE q.success) AS mean_tpot_ms,
                   sum(q.output_tokens) FILTER (WHERE q.success) AS output_tokens
            FROM runs r LEFT JOIN requests q USING (run_id)
            GROUP BY ALL
            ORDER BY r.started_at DESC
        """
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
        for key in ("suite_json", "engine_args", "environment", "summary"):
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
        with self._lock:
            try:
                self.con.close()
            except duckdb.Error:
                pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
