"""Export runs to a portable bundle and import bundles (or a remote's Parquet) into the local store.

A bundle is one DuckDB database file, written by DuckDB:
- one file to hand around (scp, a bucket, an e-mail), queryable as it is: `duckdb bundle.duckdb`;
- its blocks are checksummed, so a truncated or damaged copy is refused instead of half-read;
- columns keep their types (JSON, TIMESTAMPTZ, lists), and import is a plain ATTACH plus
  INSERT ... SELECT inside one transaction.

Tables, with the local schema's columns: runs, requests, chunks, gpu_samples, server_samples
(everything of each run) and prices (for each run and provider, the latest price fetch stored at or
before the run ended: what tokentop would have shown for it), plus `tokentop_bundle`, a one-row
manifest (format, format_version, schema_version, created_at, hostname, run_ids, row_counts).

A bundle is someone else's file: import reads it on a DuckDB connection of its own with external
access switched off, refuses one holding anything but plain tables in its main schema (views, macros,
other schemas, generated columns...) or ids of shapes tokentop does not make, and copies its tables
out before the local database's transaction reads them (see _copy_out).

Importing keeps where each run came from: hostname and provider stay as measured, runs.origin says
"import:<file>" (or "pull:<remote>") and runs.imported_at when. A run already present is skipped,
so importing twice adds nothing. Imported prices go into the price history only (price_fetches is
not touched), so they never replace this machine's current prices.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb

from data.store.database import BUNDLE_MANIFEST_TABLE
from engine.errors import TokentopError
from engine.terminal_text import one_line

FORMAT = "tokentop-bundle"
FORMAT_VERSION = 1
MANIFEST_TABLE = BUNDLE_MANIFEST_TABLE
# Tables holding one run's rows (keyed by run_id), then the prices stored when the runs ran.
RUN_TABLES = ("runs", "requests", "chunks", "gpu_samples", "server_samples")
TABLES = RUN_TABLES + ("prices",)
_ORDER = {
    "runs": "started_at, run_id",
    "requests": "run_id, request_index",
    "chunks": "run_id, request_index, chunk_index",
    "gpu_samples": "run_id, t_s, gpu_index",
    "server_samples": "run_id, t_s",
}


class BundleError(TokentopError):
    """A bundle (or a remote run) that cannot be written or read; the message is one line."""

    exit_code = 2  # bad input (engine.errors)


@dataclass
class ExportResult:
    path: Path
    run_ids: list[str]
    row_counts: dict[str, int]

    def to_dict(self) -> dict:
        return {"path": str(self.path), "runs": self.run_ids, "row_counts": self.row_counts}


@dataclass
class ImportResult:
    source: str
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the local database
    prices: int = 0

    def to_dict(self) -> dict:
        return {"source": self.source, "imported": self.imported, "skipped": self.skipped, "prices": self.prices}


def sql_literal(text: str | os.PathLike) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def tokentop_version() -> str:
    try:
        from importlib.metadata import version

        return version("tokentop")
    except Exception:
        return "unknown"


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def table_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """Column names of a table or any FROM-able expression (read_parquet(...), an attached table)."""
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def local_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary"
    ).fetchall()
    return {r[0] for r in rows}


# -- choosing runs --------------------------------------------------------------
def select_runs(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None, *, finished_only: bool = False
) -> list[str]:
    """Run ids to send: the named ones (exact or a unique prefix), else every run that is not still
    running. Unknown names raise BundleError."""
    if not run_ids:
        rows = con.execute("SELECT run_id FROM runs WHERE status <> 'running' ORDER BY started_at").fetchall()
        return [r[0] for r in rows]
    chosen: list[str] = []
    for name in run_ids:
        rows = con.execute("SELECT run_id, status FROM runs WHERE run_id = ?", [name]).fetchall()
        if not rows:
            rows = con.execute(
                "SELECT run_id, status FROM runs WHERE starts_with(run_id, ?) ORDER BY started_at", [name]
            ).fetchall()
        if len(rows) != 1:
            what = "no run" if not rows else f"{len(rows)} runs match"
            raise BundleError(f"{what} {name!r} in the local database: see `tokentop runs`")
        run_id, status = rows[0]
        if finished_only and status == "running":
            raise BundleError(f"run {run_id} is still running: push it once it has finished")
        if run_id not in chosen:
            chosen.append(run_id)
    return chosen


@contextmanager
def run_selection(con: duckdb.DuckDBPyConnection, run_ids: Iterable[str]) -> Iterator[str]:
    """A temporary table of run ids (COPY cannot take parameters; a table can)."""
    name = "tt_sel_" + uuid.uuid4().hex[:8]
    con.execute(f"CREATE TEMP TABLE {name} (run_id VARCHAR PRIMARY KEY)")
    try:
        ids = list(dict.fromkeys(run_ids))
        if ids:
            con.execute(f"INSERT INTO {name} SELECT unnest(?::VARCHAR[])", [ids])
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def run_selects(selection: str, tables: Iterable[str]) -> dict[str, str]:
    """SELECTs giving every row of the selected runs, per table present in the local database."""
    out = {}
    for table in RUN_TABLES:
        if table in tables:
            out[table] = (
                f"SELECT * FROM {table} WHERE run_id IN (SELECT run_id FROM {selection}) ORDER BY {_ORDER[table]}"
            )
    if "prices" in tables:
        out["prices"] = prices_select(selection)
    return out


def prices_select(selection: str, *, per_run: bool = False) -> str:
    """Per run and provider, the latest price fetch stored at or before the run ended (what tokentop
    showed for it). per_run: one copy per run, with its run_id (the remote's runs/<id>/prices.parquet)."""
    return f"""
            WITH fetches AS (
                SELECT fetch_id, provider, max(fetched_at) AS fetched_at FROM prices GROUP BY ALL
            ), chosen AS (
                SELECT r.run_id, f.fetch_id, f.provider,
                       row_number() OVER (PARTITION BY r.run_id, f.provider ORDER BY f.fetched_at DESC) AS n
                FROM runs r JOIN fetches f ON f.fetched_at <= coalesce(r.finished_at, r.started_at)
                WHERE r.run_id IN (SELECT run_id FROM {selection})
            )
            SELECT {"c.run_id, p.*" if per_run else "p.*"} FROM prices p
            JOIN {"chosen" if per_run else "(SELECT DISTINCT fetch_id, provider FROM chosen WHERE n = 1)"} c
              ON c.fetch_id = p.fetch_id AND c.provider = p.provider {"AND c.n = 1" if per_run else ""}
            ORDER BY p.provider, p.fetched_at"""


# -- export ---------------------------------------------------------------------
def check_export_ids(run_ids: Iterable[str], what: str) -> None:
    """Runs leaving the box must carry ids of the shape the store makes (they become keys and remote
    paths elsewhere); one that does not (stored before ids were checked) refuses with one line."""
    from data.store.database import IdError, check_ids

    try:
        check_ids("run", run_ids)
    except IdError as exc:
        raise BundleError(f"{exc}: refused ({what} the other runs by id)") from None


def export_runs(store, run_ids: Sequence[str] | None, path: str | os.PathLike, *,
                overwrite: bool = False) -> ExportResult:
    """Write one bundle with everything of the given runs (default: every run not still running).
    Written to PATH.partial and renamed, so a crash never leaves a half bundle under PATH."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} already exists: choose another path (or --force to replace it)")
    if path.exists() and Path(store.path).exists() and path.resolve() == Path(store.path).resolve():
        raise BundleError(f"{path} is the database itself: choose another path")
    if not path.parent.exists():
        raise BundleError(f"folder {path.parent} does not exist")
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    alias = "tt_export_" + uuid.uuid4().hex[:8]
    counts: dict[str, int] = {}
    with store.connection() as con:
        ids = select_runs(con, run_ids)
        if not ids:
            raise BundleError("no finished runs to export: see `tokentop runs`")
        check_export_ids(ids, "export")
        version = schema_version(con)
        present = local_tables(con)
        try:
            con.execute(f"ATTACH {sql_literal(partial)} AS {alias}")
        except duckdb.Error as exc:
            raise BundleError(f"cannot write {path}: {one_line(exc)}") from None
        try:
            with run_selection(con, ids) as selection:
                for table, sql in run_selects(selection, present).items():
                    con.execute(f"CREATE TABLE {alias}.{table} AS {sql}")
                    counts[table] = con.execute(f"SELECT count(*) FROM {alias}.{table}").fetchone()[0]
            con.execute(
                f"""CREATE TABLE {alias}.{MANIFEST_TABLE} AS SELECT
                    ?::VARCHAR AS format, ?::INTEGER AS format_version, ?::INTEGER AS schema_version,
                    ?::TIMESTAMPTZ AS created_at, ?::VARCHAR AS hostname, ?::VARCHAR AS tokentop_version,
                    ?::VARCHAR[] AS run_ids, ?::JSON AS row_counts""",
                [FORMAT, FORMAT_VERSION, version, datetime.now(timezone.utc), socket.gethostname(),
                 tokentop_version(), ids, json.dumps(counts)],
            )
        finally:
            con.execute(f"DETACH {alias}")
    os.replace(partial, path)
    return ExportResult(path, ids, counts)


# -- import ---------------------------------------------------------------------
def check_schema(bundle_version: int, local_version: int, what: str) -> None:
    if bundle_version > local_version:
        raise BundleError(
            f"{what} has schema version {bundle_version}, newer than this tokentop's {local_version}: "
            "upgrade tokentop to import it"
        )


def merge_runs(
    con: duckdb.DuckDBPyConnection,
    sources: dict[str, str],
    *,
    origin: str,
    run_ids: Sequence[str] | None = None,
) -> tuple[list[str], list[str], int]:
    """Insert the runs found in `sources` ({table: FROM-able relation}) that the local database lacks,
    with all their rows and the prices that came with them. Runs only what the caller's transaction
    holds; returns (imported, skipped, new price rows). Columns are matched by name: ones the source
    lacks (an older schema) become NULL."""
    if "runs" not in sources:
        raise BundleError("no runs table")
    present = local_tables(con)
    source_ids = [r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {sources['runs']}").fetchall()]
    if run_ids is not None:
        source_ids = [r for r in source_ids if r in set(run_ids)]
    have = {
        r[0]
        for r in con.execute("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                             [source_ids or [""]]).fetchall()
    }
    new = [r for r in source_ids if r not in have]
    skipped = [r for r in source_ids if r in have]
    prices = 0
    with run_selection(con, new) as selection:
        if new:
            for table in RUN_TABLES:
                if table not in sources or table not in present:
                    continue
                local = table_columns(con, table)
                theirs = set(table_columns(con, sources[table]))
                cols = ", ".join(f'"{c}"' for c in local if c in theirs)
                con.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {sources[table]} "
                    f"WHERE run_id IN (SELECT run_id FROM {selection})"
                )
            con.execute(
                f"UPDATE runs SET origin = ?, imported_at = ? WHERE run_id IN (SELECT run_id FROM {selection})",
                [origin, datetime.now(timezone.utc)],
            )
        if "prices" in sources and "prices" in present:
            local = table_columns(con, "prices")
            theirs = set(table_columns(con, sources["prices"]))
            cols = ", ".join(f'"{c}"' for c in local if c in theirs)
            # A fetch (fetch_id, provider) already stored is not stored twice.
            before = con.execute("SELECT count(*) FROM prices").fetchone()[0]
            con.execute(
                f"""INSERT INTO prices ({cols}) SELECT DISTINCT {cols} FROM {sources['prices']} s
                    WHERE NOT EXISTS (SELECT 1 FROM prices p WHERE p.fetch_id = s.fetch_id
                                      AND p.provider = s.provider)"""
            )
            prices = con.execute("SELECT count(*) FROM prices").fetchone()[0] - before
    return new, skipped, prices


def _read_manifest(con: duckdb.DuckDBPyConnection, alias: str, name: str) -> dict:
    """The bundle's one-row manifest, from a plain table in its main schema (checked by _refuse_objects)."""
    if MANIFEST_TABLE not in _main_tables(con, alias) or "runs" not in _main_tables(con, alias):
        raise BundleError(f"{name} is a DuckDB file but not a tokentop bundle (no {MANIFEST_TABLE} table)")
    rows = con.execute(f"SELECT * FROM {alias}.main.{MANIFEST_TABLE}").fetchall()
    cols = [d[0] for d in con.description]
    if len(rows) != 1:
        raise BundleError(f"{name}: the bundle's manifest is damaged")
    manifest = dict(zip(cols, rows[0]))
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{name} is not a tokentop bundle (format {ascii(manifest.get('format'))[:40]})")
    try:
        format_version = int(manifest.get("format_version") or 0)
        manifest["schema_version"] = int(manifest.get("schema_version") or 0)
        counts = manifest.get("row_counts")
        counts = json.loads(counts) if isinstance(counts, str) else (counts or {})
        manifest["row_counts"] = {str(k): int(v) for k, v in dict(counts).items()}
    except (TypeError, ValueError):
        raise BundleError(f"{name}: the bundle's manifest is damaged") from None
    if format_version > FORMAT_VERSION:
        raise BundleError(
            f"{name} is bundle format {format_version}, newer than this tokentop's {FORMAT_VERSION}: "
            "upgrade tokentop to import it"
        )
    return manifest


def _main_tables(con: duckdb.DuckDBPyConnection, alias: str) -> set[str]:
    """Base tables in the attached database's main schema (views are not tables)."""
    return {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main'", [alias]
        ).fetchall()
    }


def _refuse_objects(con: duckdb.DuckDBPyConnection, alias: str, name: str) -> None:
    """A bundle holds plain tables in its main schema and nothing else (an export writes only those).
    A view or macro can run any DuckDB function when read (read_text, read_csv, network readers), a
    generated column computes on read, and another schema can hide a real table behind a view of the
    expected name: any of them refuses the whole bundle."""
    checks = [
        ("a schema", "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? AND NOT internal"),
        ("a view",
         "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal"),
        ("a macro", "SELECT schema_name || '.' || function_name FROM duckdb_functions() WHERE database_name = ? "
                    "AND NOT internal"),
        ("a sequence", "SELECT schema_name || '.' || sequence_name FROM duckdb_sequences() WHERE database_name = ?"),
        ("a type",
         "SELECT schema_name || '.' || type_name FROM duckdb_types() WHERE database_name = ? AND NOT internal"),
        ("a generated column", "SELECT table_name || '.' || column_name FROM duckdb_columns() "
                               "WHERE database_name = ? AND is_generated"),
        ("a table outside its main schema", "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
                                            "WHERE database_name = ? AND schema_name <> 'main'"),
    ]
    for what, sql in checks:
        found = con.execute(sql + " LIMIT 1", [alias]).fetchall()
        if found:
            raise BundleError(
                f"{name} holds {what} ({ascii(found[0][0])[:60]}); a tokentop bundle holds plain tables only: "
                "refused, nothing imported"
            )


def _check_bundle_ids(con: duckdb.DuckDBPyConnection, alias: str, tables: set[str], manifest: dict, name: str) -> None:
    """Every run id (in any table and in the manifest) and price fetch id has a shape the store makes."""
    from data.store.database import IdError, check_ids

    try:
        check_ids("run", manifest.get("run_ids") or [], name)
        for table in RUN_TABLES:
            if table in tables:
                ids = con.execute(f"SELECT DISTINCT run_id FROM {alias}.main.{table}").fetchall()
                check_ids("run", (r[0] for r in ids), name)
        if "prices" in tables:
            ids = con.execute(f"SELECT DISTINCT fetch_id FROM {alias}.main.prices").fetchall()
            check_ids("price fetch", (r[0] for r in ids), name)
    except IdError as exc:
        raise BundleError(f"{exc}: refused, nothing imported") from None
    except duckdb.PermissionException:
        raise
    except duckdb.Error as exc:  # no run_id / fetch_id column: not what an export writes
        raise BundleError(f"{name} is not a tokentop bundle: {one_line(exc)}") from None


def _copy_out(path: Path, name: str, local_version: int, scratch: Path, have: Sequence[str] = ()) -> dict:
    """Read the untrusted bundle on a DuckDB connection of its own (in memory) with external access
    switched off, check what it holds, and copy its plain tables into `scratch`, a DuckDB file this
    process made: the store's connection then reads only that copy, never the bundle itself. The
    rows of runs in `have` (already in the local database) are not copied, only their runs row.
    Returns the manifest; raises BundleError with one line."""
    src = duckdb.connect(":memory:")
    try:
        # No extension may be fetched or loaded on a view's behalf, and no file or URL read once attached.
        src.execute("SET autoinstall_known_extensions = false")
        src.execute("SET autoload_known_extensions = false")
        try:
            src.execute(f"ATTACH {sql_literal(path)} AS untrusted (READ_ONLY)")
        except duckdb.Error as exc:
            raise BundleError(f"{name} is damaged or truncated: {one_line(exc)}") from None
        src.execute(f"ATTACH {sql_literal(scratch)} AS scratch")
        src.execute("SET enable_external_access = false")
        src.execute("SET lock_configuration = true")
        try:
            _refuse_objects(src, "untrusted", name)
            manifest = _read_manifest(src, "untrusted", name)
            check_schema(manifest["schema_version"], local_version, name)
            tables = _main_tables(src, "untrusted") & set(TABLES)
            _check_bundle_ids(src, "untrusted", tables, manifest, name)
            # The counts must match what the exporter wrote; a damaged block fails the copy below
            # (DuckDB checksums every block).
            for table, expected in manifest["row_counts"].items():
                if table in tables:
                    got = src.execute(f"SELECT count(*) FROM untrusted.main.{table}").fetchone()[0]
                    if got != expected:
                        raise BundleError(f"{name} is damaged: {table} has {got} rows, the manifest says {expected}")
            src.execute("CREATE TEMP TABLE tt_have AS SELECT unnest(?::VARCHAR[]) AS run_id", [list(have)])
            for table in sorted(tables):
                skip = ("WHERE run_id NOT IN (SELECT run_id FROM tt_have)"
                        if table in RUN_TABLES and table != "runs" and have else "")
                src.execute(f"CREATE TABLE scratch.main.{table} AS SELECT * FROM untrusted.main.{table} {skip}")
        except duckdb.PermissionException as exc:  # reached a file or URL: external access is off
            raise BundleError(f"{name} tries to read files or the network when read ({one_line(exc)}): "
                              "refused, nothing imported") from None
        except duckdb.Error as exc:
            raise BundleError(f"{name} is damaged or truncated: {one_line(exc)}") from None
        return manifest
    finally:
        src.close()


def import_bundle(store, path: str | os.PathLike) -> ImportResult:
    """Merge one bundle into the local database in one transaction (all or nothing). The bundle is
    untrusted input: it is read with DuckDB's external access off and must hold plain tables only, with
    ids of the shapes tokentop makes (see _copy_out); anything else refuses it with BundleError before
    anything is written."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise BundleError(f"{name}: no such file")
    if Path(store.path).exists() and path.resolve() == Path(store.path).resolve():
        raise BundleError(f"{name} is the database itself, not a bundle")
    with open(path, "rb") as f:
        head = f.read(16)
    # A DuckDB file carries the magic "DUCK" at offset 8; say plainly what anything else is.
    if len(head) < 12 or head[8:12] != b"DUCK":
        raise BundleError(f"{name} is not a tokentop bundle (not a DuckDB file)")
    with store.reading() as con:
        local_version = schema_version(con)
        have = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
    result = ImportResult(source=name)
    with tempfile.TemporaryDirectory(prefix="tokentop-import-") as tmp:
        scratch = Path(tmp) / "bundle-copy.duckdb"
        _copy_out(path, name, local_version, scratch, have)
        alias = "tt_import_" + uuid.uuid4().hex[:8]
        with store.connection() as con:
            con.execute(f"ATTACH {sql_literal(scratch)} AS {alias} (READ_ONLY)")
            try:
                sources = {t: f"{alias}.main.{t}" for t in TABLES if t in _main_tables(con, alias)}
                con.execute("BEGIN")
                try:
                    result.imported, result.skipped, result.prices = merge_runs(
                        con, sources, origin=f"import:{path.name}")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except duckdb.Error as exc:
                raise BundleError(f"{name} is damaged or truncated: {one_line(exc)}") from None
            finally:
                try:
                    con.execute(f"DETACH {alias}")
                except duckdb.Error:
                    pass
    return result


def import_bundles(store, paths: Iterable[str | os.PathLike]) -> list[ImportResult]:
    """Each bundle in its own transaction; the first bad one raises BundleError (earlier ones stay)."""
    return [import_bundle(store, p) for p in paths]
