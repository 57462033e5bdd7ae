"""`tokentop export`, `import`, `push` and `pull`: runs that leave the box they were measured on."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import datetime
from pathlib import Path

from engine.errors import exit_code
from tui.cli.common import add_db_option, fail, open_store
from tui.tables import say_line


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export",
        help="write runs to one portable bundle (a DuckDB file)",
        description="Write runs (default: every finished run) with their requests, chunk timestamps, "
        "telemetry and the prices stored when they ran to one bundle: a DuckDB file that `duckdb` opens as is.",
    )
    e.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to export (ids or unique prefixes)")
    e.add_argument("-o", "--output", metavar="PATH", default=None,
                   help="bundle file to write (default: tokentop-<host>-<time>.duckdb here)")
    e.add_argument("--force", action="store_true", help="replace PATH if it exists")
    e.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_db_option(e)
    e.set_defaults(func=run_export)

    i = sub.add_parser(
        "import",
        help="merge bundles into the local database",
        description="Merge bundles written by `tokentop export` into the local database, each in one "
        "transaction. Runs already present are skipped, so importing twice adds nothing.",
    )
    i.add_argument("paths", nargs="+", metavar="PATH", help="bundle files")
    i.add_argument("--json", action="store_true", help="print a JSON list on stdout")
    add_db_option(i)
    i.set_defaults(func=run_import)

    p = sub.add_parser(
        "push",
        help="push finished runs to a remote (directory or s3://)",
        description="Push finished runs (default: every one not yet on that remote, and ones whose push "
        "failed) to a remote as Parquet under runs/<run_id>/. The remote: --remote or TOKENTOP_REMOTE; "
        "a directory, file://PATH or s3://BUCKET/PREFIX (AWS_* variables; AWS_ENDPOINT_URL for non-AWS).",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to push (ids or unique prefixes)")
    _add_remote_options(p)
    p.set_defaults(func=run_push)

    q = sub.add_parser(
        "pull",
        help="fetch the runs a remote has and this database lacks",
        description="Fetch every complete run on the remote that the local database lacks and import it "
        "(origin pull:<remote>). The remote: --remote or TOKENTOP_REMOTE.",
    )
    _add_remote_options(q)
    q.set_defaults(func=run_pull)


def _add_remote_options(parser: argparse.ArgumentParser) -> None:
    """What push and pull both take: --remote, --json and --db."""
    parser.add_argument("--remote", metavar="URL", default=None,
                        help="directory or s3://BUCKET/PREFIX (default: TOKENTOP_REMOTE)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_db_option(parser)


def _default_bundle_name() -> Path:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    return Path(f"tokentop-{host}-{datetime.now():%Y%m%d-%H%M%S}.duckdb")


def _transfer(args: argparse.Namespace, action, errors: tuple[type[Exception], ...], describe) -> tuple[int, object]:
    """Run `action(store)` on the local database: a known error is one line on stderr, exit
    engine.errors.exit_code (2 for a bad bundle or a misnamed remote, 1 for one that refuses);
    otherwise the result is printed as JSON (--json) or as `describe(result)`."""
    with open_store(args) as store:
        try:
            result = action(store)
        except errors as exc:
            return fail(str(exc), exit_code(exc)), None
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        say_line(sys.stdout, describe(result))
    return 0, result


def run_export(args: argparse.Namespace) -> int:
    from data.travel.bundle import BundleError, export_runs

    path = Path(args.output) if args.output else _default_bundle_name()
    code, _ = _transfer(
        args,
        lambda store: export_runs(store, args.run_ids or None, path, overwrite=args.force),
        (BundleError,),
        lambda r: f"exported {len(r.run_ids)} run(s), {r.row_counts.get('requests', 0)} requests, "
        f"{r.row_counts.get('chunks', 0)} chunk timestamps to {r.path}",
    )
    return code


def run_import(args: argparse.Namespace) -> int:
    from data.travel.bundle import BundleError, import_bundle

    results = []
    code = 0
    with open_store(args) as store:
        for path in args.paths:
            try:
                result = import_bundle(store, path)
            except BundleError as exc:
                code = fail(str(exc), exit_code(exc))  # one bad bundle doesn't stop the others
                continue
            results.append(result)
            if not args.json:
                say_line(sys.stdout, f"{path}: imported {len(result.imported)} run(s), "
                                     f"{len(result.skipped)} already here")
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    return code


def run_push(args: argparse.Namespace) -> int:
    from data.travel.bundle import BundleError
    from data.travel.remote import RemoteError, push

    code, result = _transfer(
        args,
        lambda store: push(store, args.run_ids or None, args.remote),
        (RemoteError, BundleError),
        lambda r: f"pushed {len(r.pushed)} run(s) to {r.remote}",
    )
    for reason in (result.refused.values() if result is not None else ()):
        warn(f"not pushed: {reason}")  # the reason names the id
    if result is not None and result.failed:
        run_id, reason = next(iter(result.failed.items()))
        waiting = f"; {len(result.not_tried)} more wait" if result.not_tried else ""
        return fail(f"push of run {run_id} failed ({reason}); kept as failed, retried on the next push{waiting}", 1)
    return code


def run_pull(args: argparse.Namespace) -> int:
    from data.travel.remote import RemoteError, pull

    code, result = _transfer(
        args,
        lambda store: pull(store, args.remote),
        (RemoteError,),
        lambda r: f"pulled {len(r.pulled)} run(s) from {r.remote} ({r.already_here} already here)",
    )
    for run_id, reason in (result.refused.items() if result is not None else ()):
        warn(f"run {run_id} not pulled: {reason}" if _plain(run_id) else f"not pulled: {reason}")
    return code


def warn(message: str) -> None:
    """One `tokentop: warning:` line on stderr; it quotes a remote's words, so it is made terminal-safe."""
    from engine.terminal_text import safe_text

    say_line(sys.stderr, f"tokentop: warning: {safe_text(message)}")


def _plain(run_id: str) -> bool:
    from data.store.database import IdError, check_ids

    try:
        check_ids("run", [run_id])
    except IdError:
        return False
    return True


_reporting = False


def report_background_pushes() -> None:
    """CLI commands (bench, load, ...): one stderr line per background push (TOKENTOP_REMOTE)."""
    global _reporting
    if _reporting:
        return
    _reporting = True
    from data.travel.remote import add_push_listener

    def report(result, error) -> None:
        if error:
            warn(f"push to the remote failed: {error}")
            return
        if result.pushed:
            say_line(sys.stderr, f"tokentop: pushed run(s) {', '.join(result.pushed)} to {result.remote}")
        for run_id, reason in result.failed.items():
            warn(f"push of run {run_id} to {result.remote} failed ({reason}); it is retried on the next push")
        for reason in result.refused.values():
            warn(f"not pushed: {reason}")

    add_push_listener(report)


def wait_for_background_pushes() -> None:
    """Before a command returns: let the runs it finished reach the remote (TOKENTOP_PUSH_EXIT_WAIT_S)."""
    from data.travel.remote import wait_for_pushes

    wait_for_pushes()


def retry_failed_pushes(args: argparse.Namespace) -> None:
    """TOKENTOP_REMOTE set: at the start of a command that records runs, retry the failed pushes."""
    from data.paths import default_db_path
    from data.travel.remote import default_remote
    from data.travel.remote import retry_failed_pushes as retry

    if default_remote():
        retry(getattr(args, "db", None) or default_db_path())
