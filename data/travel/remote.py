"""A shared remote for a fleet of boxes: push finished runs as open Parquet, pull what is missing.

A remote is a directory (a shared or network mount; a path or file:// URL) or `s3://bucket/prefix`
on any S3-compatible store, configured by the standard AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL for a non-AWS endpoint; an http:// endpoint is
allowed for a local server). The client is obstore (Rust object_store): it signs requests itself.

Layout (documented in the README; DuckDB reads it in place):

    runs/<run_id>/run.parquet             the runs row (environment, engine args, provider, price)
    runs/<run_id>/requests.parquet
    runs/<run_id>/chunks.parquet          every chunk's arrival time
    runs/<run_id>/gpu_samples.parquet
    runs/<run_id>/server_samples.parquet
    runs/<run_id>/prices.parquet          the prices stored when it ran (see data/travel/bundle.py)
    runs/<run_id>/manifest.json           written last: a run without it is incomplete and ignored

Pushes are remembered per remote in remote_pushes (pushed | failed, attempts, last_error). With
TOKENTOP_REMOTE set, every finished run is pushed by a background thread (RunRecorder.finish calls
run_finished). A failed push is retried with the next finished run, at the start of bench/load/the
app (retry_failed_pushes) and by `tokentop push`; the CLI waits for pushes in flight before it exits
(wait_for_pushes, at most TOKENTOP_PUSH_EXIT_WAIT_S, default 30). The app can show what happened with
add_push_listener() or auto_pusher().results.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import unquote, urlparse

from data.travel.bundle import (
    local_tables,
    merge_runs,
    prices_select,
    run_selection,
    run_selects,
    schema_version,
    select_runs,
    sql_literal,
    tokentop_version,
)
from engine.errors import TokentopError
from engine.settings import settings
from engine.terminal_text import one_line

REMOTE_FORMAT = "tokentop-remote-run"
REMOTE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Table -> file name under runs/<run_id>/.
FILES = {
    "runs": "run.parquet",
    "requests": "requests.parquet",
    "chunks": "chunks.parquet",
    "gpu_samples": "gpu_samples.parquet",
    "server_samples": "server_samples.parquet",
    "prices": "prices.parquet",
}


def _bad_run_id(run_id: object) -> str | None:
    """None for an id of the shape the store makes, else why not (one line; data.store.database.check_ids)."""
    from data.store.database import IdError, check_ids

    try:
        check_ids("run", [run_id])
    except IdError as exc:
        return str(exc)
    return None


class RemoteError(TokentopError):
    """The remote is misnamed (code 2), or unreachable / refuses (code 1). The message is one line."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = self.exit_code = code  # this instance's exit status (engine.errors.exit_code)


class RemoteMissing(RemoteError):
    """An object the remote does not have (a run's manifest lists a file that is not there)."""


def default_remote() -> str | None:
    return settings().remote


# -- opening a remote -------------------------------------------------------------
class Remote:
    """An object store plus the name it is remembered under (remote_pushes.remote, runs.origin)."""

    def __init__(self, url: str, *, create: bool = False):
        import obstore.store as obs

        self.url = url
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            bucket = parsed.netloc
            if not bucket:
                raise RemoteError(f"remote {url!r} names no bucket: use s3://BUCKET/PREFIX", 2)
            prefix = parsed.path.strip("/")
            self.name = f"s3://{bucket}/{prefix}".rstrip("/")
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or ""
            try:
                self.store = obs.S3Store(
                    bucket,
                    prefix=prefix or None,
                    client_options={
                        "allow_http": endpoint.startswith("http://"),
                        "connect_timeout": timedelta(seconds=5),
                        "timeout": timedelta(seconds=120),
                    },
                    # Fail within seconds when the store is down: the push is retried later anyway.
                    retry_config={
                        "max_retries": 2,
                        "retry_timeout": timedelta(seconds=10),
                        "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=2),
                                    "base": 2},
                    },
                )
            except Exception as exc:
                raise RemoteError(f"remote {url}: {one_line(exc)}", 2) from None
        elif parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path) if parsed.scheme == "file" else url).expanduser().absolute()
            self.name = str(path)
            if not path.is_dir():
                if create and path.parent.is_dir():
                    path.mkdir()
                else:
                    raise RemoteError(f"remote {path}: no such directory (is the share mounted?)")
            self.store = obs.LocalStore(prefix=path)
        else:
            raise RemoteError(f"remote {url!r}: use a directory, file://PATH or s3://BUCKET/PREFIX", 2)

    def __str__(self) -> str:
        return self.name

    def put(self, key: str, data: bytes | Path) -> None:
        import obstore

        try:
            obstore.put(self.store, key, data)
        except Exception as exc:
            raise RemoteError(f"cannot write to {self.name}: {one_line(exc)}") from None

    def get(self, key: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            raise RemoteMissing(f"{key} is not on {self.name}") from None
        except Exception as exc:
            raise RemoteError(f"cannot read {key} from {self.name}: {one_line(exc)}") from None

    def listed_runs(self) -> dict[str, str]:
        """Folder name -> manifest key, for every runs/<name>/manifest.json listed: the names are the
        remote's word, not yet checked (see complete_runs)."""
        import obstore

        found: dict[str, str] = {}
        try:
            for batch in obstore.list(self.store, "runs/", chunk_size=1000):
                for meta in batch:
                    parts = meta["path"].split("/")
                    if len(parts) == 3 and parts[0] == "runs" and parts[2] == MANIFEST and parts[1]:
                        found[parts[1]] = meta["path"]
        except Exception as exc:
            raise RemoteError(f"cannot list {self.name}: {one_line(exc)}") from None
        return found

    def complete_runs(self) -> dict[str, str]:
        """run_id -> manifest key, for every run whose manifest is there (so it is complete) and whose
        id has the shape tokentop makes (a listing could name anything; it becomes a local path)."""
        return {name: key for name, key in self.listed_runs().items() if _bad_run_id(name) is None}


TRANSFER_THREADS = 16  # objects in flight at once (obstore releases the GIL while it waits)


def _parallel(fn, items: list) -> list:
    """fn over items on a thread pool, results in order; the first error is raised."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    try:
        pool = ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(items)))
        futures = [pool.submit(fn, item) for item in items]
    except RuntimeError:  # the interpreter is shutting down (a push waited for at exit): one at a time
        return [fn(item) for item in items]
    with pool:
        return [f.result() for f in futures]


def remote_name(url: str) -> str:
    """The name a remote is remembered under (remote_pushes.remote), without touching it."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).expanduser().absolute())
    return str(Path(url).expanduser().absolute()) if not parsed.scheme else url


def open_remote(url: str | None, *, create: bool = False) -> Remote:
    url = url or default_remote()
    if not url:
        raise RemoteError("no remote: pass --remote URL or set TOKENTOP_REMOTE (a directory or s3://BUCKET/PREFIX)", 2)
    return Remote(url, create=create)


# -- push -------------------------------------------------------------------------
@dataclass
class PushResult:
    remote: str
    pushed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run_id -> one-line reason
    not_tried: list[str] = field(default_factory=list)  # after a failure, the rest wait for the next try
    refused: dict[str, str] = field(default_factory=dict)  # run_id -> why it may not leave (a misshapen id)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {"remote": self.remote, "pushed": self.pushed, "failed": self.failed, "not_tried": self.not_tried,
                "refused": self.refused}


def _record_pushes(store, remote: str, outcomes: list[tuple[str, str, str | None]]) -> None:
    """(run_id, pushed|failed, error) for each run tried, in one short transaction."""
    if not outcomes:
        return
    now = datetime.now(timezone.utc)
    with store.connection() as con:
        con.execute("BEGIN")
        try:
            for run_id, status, error in outcomes:
                con.execute(
                    """INSERT INTO remote_pushes (run_id, remote, status, attempts, last_error, updated_at)
                       VALUES (?, ?, ?, 1, ?, ?)
                       ON CONFLICT (run_id, remote) DO UPDATE SET status = excluded.status,
                           attempts = remote_pushes.attempts + 1, last_error = excluded.last_error,
                           updated_at = excluded.updated_at""",
                    [run_id, remote, status, error, now],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def pending_runs(store, remote: str, *, failed_only: bool = False) -> list[str]:
    """Finished runs not yet pushed to `remote` (failed_only: just those whose last push failed)."""
    if failed_only:
        sql = """SELECT r.run_id FROM runs r JOIN remote_pushes p ON p.run_id = r.run_id AND p.remote = ?
                 WHERE p.status = 'failed' AND r.status <> 'running' ORDER BY r.started_at"""
    else:
        sql = """SELECT r.run_id FROM runs r
                 WHERE r.status <> 'running' AND NOT EXISTS (SELECT 1 FROM remote_pushes p
                       WHERE p.run_id = r.run_id AND p.remote = ? AND p.status = 'pushed')
                 ORDER BY r.started_at"""
    return [row["run_id"] for row in store.query(sql, [remote])]


PUSH_BATCH = 200  # runs written to Parquet per database read


def _copy_runs(con, selection: str, present: set[str], folder: Path) -> dict[str, dict[str, int]]:
    """Every table of the selected runs, one COPY per table split by run (PARTITION_BY):
    folder/<table>/run_id=<id>/*.parquet. Returns {table: {run_id: rows}}."""
    selects = run_selects(selection, present)
    if "prices" in selects:
        selects["prices"] = prices_select(selection, per_run=True)
    counts: dict[str, dict[str, int]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for table, sql in selects.items():
        target = folder / table
        con.execute(
            f"COPY ({sql}) TO {sql_literal(target)} (FORMAT parquet, COMPRESSION zstd, "
            "PARTITION_BY (run_id), WRITE_PARTITION_COLUMNS true, OVERWRITE_OR_IGNORE true)"
        )
        counts[table] = dict(con.execute(f"SELECT run_id, count(*) FROM ({sql}) GROUP BY ALL").fetchall())
    return counts


def _write_runs(store, run_ids: list[str], folder: Path) -> dict[str, tuple[dict, dict[str, Path]]]:
    """The runs' tables as Parquet under `folder`, in one short read of the database:
    run_id -> (manifest, {file name on the remote: local file})."""
    out: dict[str, tuple[dict, dict[str, Path]]] = {}
    with store.connection() as con:
        present = local_tables(con)
        version = schema_version(con)
        with run_selection(con, run_ids) as selection:
            counts = _copy_runs(con, selection, present, folder / "all")
        for n, run_id in enumerate(run_ids):
            files = {}
            rows = {}
            for table, per_run in counts.items():
                if not per_run.get(run_id):
                    continue
                found = list((folder / "all" / table / f"run_id={run_id}").glob("*.parquet"))
                if len(found) != 1:
                    files = None  # a split file: copy this run on its own
                    break
                files[FILES[table]] = found[0]
                rows[table] = per_run[run_id]
            if files is None:
                alone = folder / f"one-{n}"
                with run_selection(con, [run_id]) as selection:
                    single = _copy_runs(con, selection, present, alone)
                files, rows = {}, {}
                for table, per_run in single.items():
                    if per_run.get(run_id):
                        files[FILES[table]] = next((alone / table).rglob("*.parquet"))
                        rows[table] = per_run[run_id]
            manifest = {
                "format": REMOTE_FORMAT,
                "format_version": REMOTE_FORMAT_VERSION,
                "run_id": run_id,
                "schema_version": version,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "pushed_from": socket.gethostname(),
                "tokentop_version": tokentop_version(),
                "files": {table: FILES[table] for table in rows},
                "row_counts": rows,
            }
            out[run_id] = (manifest, files)
    return out


def push(store, run_ids: Sequence[str] | None, remote: str | Remote | None, *, retry_failed: bool = True) -> PushResult:
    """Push the named finished runs (default: every finished run not yet on that remote). The first
    failure stops the push (the remote is likely down): it is recorded as failed and retried later."""
    target = remote if isinstance(remote, Remote) else open_remote(remote, create=True)
    result = PushResult(remote=target.name)
    if run_ids:
        with store.connection() as con:
            todo = select_runs(con, run_ids, finished_only=True)
        if retry_failed:
            todo += [r for r in pending_runs(store, target.name, failed_only=True) if r not in todo]
    else:
        todo = pending_runs(store, target.name)
    # An id that is not of the store's own shape (stored before ids were checked) would become a path
    # on the remote: it is refused here, said once per push, and never recorded as a failed push.
    for run_id in todo:
        reason = _bad_run_id(run_id)
        if reason is not None:
            result.refused[run_id] = reason
    todo = [r for r in todo if r not in result.refused]
    stop = threading.Event()  # the first failure: the remote is likely down, stop sending

    def send(run_id: str, manifest: dict, files: dict[str, Path]) -> str | None:
        if stop.is_set():
            return None
        try:
            for name, local in files.items():
                target.put(f"runs/{run_id}/{name}", local)
            # Last: until the manifest is there, pull and readers ignore the run.
            target.put(f"runs/{run_id}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        except (RemoteError, OSError) as exc:
            stop.set()
            return one_line(exc)
        return "pushed"

    for start in range(0, len(todo), PUSH_BATCH):
        batch = todo[start : start + PUSH_BATCH]
        outcomes: list[tuple[str, str, str | None]] = []
        try:
            with tempfile.TemporaryDirectory(prefix="tokentop-push-") as tmp:
                written = _write_runs(store, batch, Path(tmp))
                # Runs go in parallel; within a run, its files in order and the manifest last.
                sent = _parallel(lambda run_id, written=written: send(run_id, *written[run_id]), batch)
            for run_id, outcome in zip(batch, sent):
                if outcome == "pushed":
                    outcomes.append((run_id, "pushed", None))
                    result.pushed.append(run_id)
                elif outcome is not None:
                    outcomes.append((run_id, "failed", outcome))
                    result.failed[run_id] = outcome
                else:
                    result.not_tried.append(run_id)
        finally:
            _record_pushes(store, target.name, outcomes)
        if stop.is_set():
            result.not_tried += todo[start + len(batch) :]
            break
    return result


# -- pull -------------------------------------------------------------------------
@dataclass
class PullResult:
    remote: str
    pulled: list[str] = field(default_factory=list)
    already_here: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # run_id -> why (a newer schema, a bad manifest)

    def to_dict(self) -> dict:
        return {"remote": self.remote, "pulled": self.pulled, "already_here": self.already_here,
                "refused": self.refused}


def _check_manifest(raw: bytes, run_id: str, local_version: int) -> tuple[dict[str, int], str | None]:
    """A run's manifest.json (the remote's word): {table: expected rows} for the tables it lists, or
    (_, why it is refused). Only the table names are taken from it; the files read are always
    runs/<run_id>/<FILES[table]>, never a name the manifest gives."""
    try:
        manifest = json.loads(raw)
    except ValueError:
        return {}, "bad manifest: not JSON"
    if not isinstance(manifest, dict) or manifest.get("format") != REMOTE_FORMAT:
        return {}, "bad manifest: not a tokentop run manifest"
    if manifest.get("run_id") != run_id:
        return {}, "bad manifest: it names another run than its folder"
    versions = (manifest.get("format_version", 0), manifest.get("schema_version", 0))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in versions):
        return {}, "bad manifest: its versions are not whole numbers"
    if versions[0] > REMOTE_FORMAT_VERSION or versions[1] > local_version:
        return {}, (f"schema version {versions[1]} is newer than this tokentop's {local_version}: "
                    "upgrade tokentop to pull it")
    files, counts = manifest.get("files"), manifest.get("row_counts") or {}
    if not isinstance(files, dict) or not isinstance(counts, dict) or "runs" not in files:
        return {}, "bad manifest: no list of its files"
    tables = {}
    for table in files:
        if table in FILES:
            rows = counts.get(table)
            tables[table] = rows if isinstance(rows, int) and not isinstance(rows, bool) else -1
    return tables, None


def _check_files(wanted: dict[str, dict[str, int]], root: Path) -> dict[str, str]:
    """The downloaded Parquet of every run (root/<run_id>/<file>): each file holds rows of its own run
    only (a file of run A may not carry rows for run B), price fetch ids have the store's shape, row
    counts are what the manifest says. Returns {run_id: why it is refused} for the runs that fail.
    Read on a connection of its own, not the database's; one query per table for all the runs."""
    import duckdb

    from data.store.database import IdError, check_ids

    def read(con, paths: list[str], table: str) -> tuple[dict[str, list[tuple[object, int]]], dict[str, str]]:
        """{file: [(run_id, rows)]} and {file: a misshapen fetch id's reason} for these files."""
        rel = (f"read_parquet([{', '.join(sql_literal(p) for p in paths)}], filename = 'tt_source_file', "
               "union_by_name = true)")
        found: dict[str, list[tuple[object, int]]] = {}
        for path, run_id, rows in con.execute(
                f"SELECT tt_source_file, run_id, count(*) FROM {rel} GROUP BY ALL").fetchall():
            found.setdefault(path, []).append((run_id, rows))
        bad: dict[str, str] = {}
        if table == "prices":
            for path, fetch_id in con.execute(f"SELECT DISTINCT tt_source_file, fetch_id FROM {rel}").fetchall():
                try:
                    check_ids("price fetch", [fetch_id])
                except IdError as exc:
                    bad.setdefault(path, str(exc))
        return found, bad

    refused: dict[str, str] = {}
    con = duckdb.connect(":memory:")
    try:
        for table, name in FILES.items():
            paths = {str(root / run_id / name): run_id for run_id, tables in wanted.items() if table in tables}
            if not paths:
                continue
            try:
                found, bad_fetch = read(con, list(paths), table)
            except duckdb.Error:  # a damaged or odd file: find it, one file at a time
                found, bad_fetch = {}, {}
                for path, run_id in paths.items():
                    try:
                        one, bad = read(con, [path], table)
                    except duckdb.Error as exc:
                        refused.setdefault(run_id, f"damaged {name}: {one_line(exc)}")
                        continue
                    found.update(one)
                    bad_fetch.update(bad)
            for path, run_id in paths.items():
                if run_id in refused:
                    continue
                groups = found.get(path, [])
                expected = wanted[run_id][table]
                if [r for r, _n in groups] != [run_id]:
                    why = f"its {name} holds rows of another run" if groups else f"its {name} is empty"
                elif path in bad_fetch:
                    why = bad_fetch[path]
                elif expected >= 0 and groups[0][1] != expected:
                    why = f"its {name} has {groups[0][1]} rows, the manifest says {expected}"
                else:
                    continue
                refused[run_id] = why
    finally:
        con.close()
    return refused


def pull(store, remote: str | Remote | None) -> PullResult:
    """Fetch the complete runs the local database lacks and import them in one transaction, with
    origin "pull:<remote>". Everything is downloaded first: an unreachable remote changes nothing.
    The remote is untrusted: a run whose folder name is not a run id of the store's shape, whose
    manifest is not tokentop's, or whose files hold other runs' rows or misshapen ids is refused
    (PullResult.refused, one line each) and nothing of it is written; the others are pulled."""
    target = remote if isinstance(remote, Remote) else open_remote(remote)
    result = PullResult(remote=target.name)
    listed = {}
    for run_id, key in target.listed_runs().items():
        reason = _bad_run_id(run_id)
        if reason is None:
            listed[run_id] = key
        else:
            result.refused[run_id] = reason
    with store.connection() as con:
        local_version = schema_version(con)
        have = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
    missing = sorted(r for r in listed if r not in have)
    result.already_here = len(listed) - len(missing)
    if not missing:
        return result
    with tempfile.TemporaryDirectory(prefix="tokentop-pull-") as tmp:
        manifests = dict(zip(missing, _parallel(lambda r: target.get(listed[r]), missing)))
        downloads: list[tuple[str, Path]] = []
        wanted: dict[str, dict[str, int]] = {}
        for run_id in missing:
            tables, reason = _check_manifest(manifests[run_id], run_id, local_version)
            if reason is not None:
                result.refused[run_id] = reason
                continue
            folder = Path(tmp) / run_id  # a checked id: a plain folder name
            folder.mkdir()
            downloads += [(f"runs/{run_id}/{FILES[table]}", folder / FILES[table]) for table in tables]
            wanted[run_id] = tables
        def download(item: tuple[str, Path]) -> str | None:
            try:
                item[1].write_bytes(target.get(item[0]))
            except RemoteMissing as exc:  # that run is refused; an unreachable remote stops the pull
                return str(exc)
            return None

        for key, why in zip((key for key, _ in downloads), _parallel(download, downloads)):
            run_id = key.split("/")[1]
            if why and run_id in wanted:
                result.refused[run_id] = f"a file its manifest lists is missing ({why})"
                del wanted[run_id]
        for run_id, why in _check_files(wanted, Path(tmp)).items():
            result.refused[run_id] = why
            del wanted[run_id]
        files: dict[str, list[str]] = {}
        for run_id, tables in wanted.items():
            for table in tables:
                files.setdefault(table, []).append(str(Path(tmp) / run_id / FILES[table]))
        if not wanted:
            return result
        sources = {
            table: f"read_parquet([{', '.join(sql_literal(p) for p in paths)}], union_by_name = true)"
            for table, paths in files.items()
        }
        with store.connection() as con:
            con.execute("BEGIN")
            try:
                imported, _, _ = merge_runs(con, sources, origin=f"pull:{target.name}", run_ids=list(wanted))
                # They are on that remote already: never push them back.
                if imported:
                    con.execute(
                        """INSERT INTO remote_pushes (run_id, remote, status, attempts, last_error, updated_at)
                           SELECT unnest(?::VARCHAR[]), ?, 'pushed', 0, NULL, ? ON CONFLICT DO NOTHING""",
                        [imported, target.name, datetime.now(timezone.utc)],
                    )
                con.execute("COMMIT")
            except BaseException as exc:
                con.execute("ROLLBACK")
                import duckdb

                if isinstance(exc, duckdb.Error):
                    raise RemoteError(f"runs pulled from {target.name} are damaged: {one_line(exc)}") from None
                raise
        result.pulled = imported
    return result


# -- auto-push (TOKENTOP_REMOTE) --------------------------------------------------------
Listener = Callable[[PushResult | None, str | None], None]


class AutoPusher:
    """Pushes finished runs on a daemon thread, one at a time, in the order they finished. The thread
    opens the database by path for each push, so the caller's Store may be closed meanwhile."""

    def __init__(self, remote_url: str):
        self.remote_url = remote_url
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.listeners: list[Listener] = []
        self.results: list[PushResult] = []  # what happened, newest last (for the app to show)

    def submit(self, db_path: str | os.PathLike, run_id: str | None) -> None:
        """Queue a finished run; None: retry the runs whose push to this remote failed."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tokentop-auto-push", daemon=True)
                self._thread.start()
                atexit.register(self._wait_at_exit)
        self._queue.put((str(db_path), run_id))

    def wait(self, timeout: float | None = None) -> bool:
        """True when every submitted push has been tried."""
        done = threading.Event()

        def joiner() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=joiner, daemon=True).start()
        return done.wait(timeout)

    def _wait_at_exit(self) -> None:
        self.wait(settings().push_exit_wait_s)

    def _work(self) -> None:
        from data.store.database import Store

        while True:
            db_path, run_id = self._queue.get()
            try:
                store = Store(db_path)
                try:
                    if run_id is None:  # at start: only the runs whose push failed before
                        remote = open_remote(self.remote_url, create=True)
                        failed = pending_runs(store, remote.name, failed_only=True)
                        result = push(store, failed, remote, retry_failed=False) if failed else None
                    else:
                        try:
                            result = push(store, [run_id], self.remote_url, retry_failed=True)
                        except RemoteError as exc:  # cannot even reach it: keep the run as failed
                            name = remote_name(self.remote_url)
                            _record_pushes(store, name, [(run_id, "failed", one_line(exc))])
                            result = PushResult(remote=name, failed={run_id: one_line(exc)})
                finally:
                    store.close()
                if result is not None:
                    self.results.append(result)
                    self._notify(result, None)
            except Exception as exc:  # a bad remote, a vanished database: report, never raise in a thread
                what = f"run {run_id}" if run_id else "retrying failed pushes"
                self._notify(None, f"{what}: {one_line(exc)}")
            finally:
                self._queue.task_done()

    def _notify(self, result: PushResult | None, error: str | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(result, error)
            except Exception:
                pass


_pushers: dict[str, AutoPusher] = {}
_global_listeners: list[Listener] = []


def auto_pusher(remote_url: str | None = None) -> AutoPusher | None:
    """The process's pusher for TOKENTOP_REMOTE (or the given remote); None when none is set."""
    url = remote_url or default_remote()
    if not url:
        return None
    if url not in _pushers:
        pusher = AutoPusher(url)
        pusher.listeners.extend(_global_listeners)
        _pushers[url] = pusher
    return _pushers[url]


def add_push_listener(listener: Listener) -> None:
    """Called (on the push thread) after each background push: (PushResult, None) or (None, error)."""
    _global_listeners.append(listener)
    for pusher in _pushers.values():
        pusher.listeners.append(listener)


def remove_push_listener(listener: Listener) -> None:
    """Undo add_push_listener (an app that closes stops hearing about pushes)."""
    for listeners in (_global_listeners, *(p.listeners for p in _pushers.values())):
        while listener in listeners:
            listeners.remove(listener)


def wait_for_pushes(timeout: float | None = None) -> bool:
    """Wait for the background pushes still in flight (a CLI command calls this before it returns)."""
    if timeout is None:
        timeout = settings().push_exit_wait_s
    return all(pusher.wait(timeout) for pusher in list(_pushers.values()))


def retry_failed_pushes(db_path: str | os.PathLike) -> None:
    """At start (TOKENTOP_REMOTE set): push again, in the background, the runs whose push failed."""
    try:
        pusher = auto_pusher()
        if pusher is not None and Path(db_path).is_file():
            pusher.submit(db_path, None)
    except Exception:
        pass


def run_finished(store, run_id: str) -> None:
    """Hook for RunRecorder.finish: queue the run for the remote when TOKENTOP_REMOTE is set. Never
    raises and never waits: the local run is already stored."""
    try:
        pusher = auto_pusher()
        if pusher is not None and Path(store.path).is_file():
            pusher.submit(store.path, run_id)
    except Exception:
        pass
