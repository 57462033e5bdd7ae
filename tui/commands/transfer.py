"""`tokentop export`, `import`, `push` and `pull`: runs that leave the box they were measured on."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import datetime
from pathlib import Path

from tui.commands.common import add_db_option, fail, open_store


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
    p.add_argument("--remote", metavar="URL", default=None, help="directory or s3://BUCKET/PREFIX (default: TOKENTOP_REMOTE)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_db_option(p)
    p.set_defaults(func=run_push)

    q = sub.add_parser(
        "pull",
        help="fetch the runs a remote has and this database lacks",
        description="Fetch every complete run on the remote that the local database lacks and import it "
        "(origin pull:<remote>). The remote: --remote or TOKENTOP_REMOTE.",
    )
    q.add_argument("--remote", metavar="URL", default=None, help="directory or s3://BUCKET/PREFIX (default: TOKENTOP_REMOTE)")
    q.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_db_option(q)
    q.set_defaults(func=run_pull)


def _default_bundle_name() -> Path:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    return Path(f"tokentop-{host}-{datetime.now():%Y%m%d-%H%M%S}.duckdb")


def run_export(args: argparse.Namespace) -> int:
    from data.bundle import BundleError, export_runs

    path = Path(args.output) if args.output else _default_bundle_name()
    with open_store(args) as store:
        try:
            result = export_runs(store, args.run_ids or None, path, overwrite=args.force)
        except BundleError as exc:
            return fail(str(exc), 2)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        counts = result.row_counts
        print(f"exported {len(result.run_ids)} run(s), {counts.get('requests', 0)} requests, "
              f"{counts.get('chunks', 0)} chunk timestamps to {result.path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from data.bundle import BundleError, import_bundle

    results = []
    code = 0
    with open_store(args) as store:
        for path in args.paths:
            try:
                result = import_bundle(store, path)
            except BundleError as exc:
                fail(str(exc), 2)
                code = 2
                continue
            results.append(result)
            if not args.json:
                print(f"{path}: imported {len(result.imported)} run(s), "
                      f"{len(result.skipped)} already here")
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    return code


def run_push(args: argparse.Namespace) -> int:
    from data.bundle import BundleError
    from data.remote import RemoteError, push

    with open_store(args) as store:
        try:
            result = push(store, args.run_ids or None, args.remote)
        except (RemoteError, BundleError) as exc:
            return fail(str(exc), getattr(exc, "code", 2))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"pushed {len(result.pushed)} run(s) to {result.remote}")
    for run_id, reason in result.failed.items():
        waiting = f"; {len(result.not_tried)} more wait" if result.not_tried else ""
        return fail(f"push of run {run_id} failed ({reason}); kept as failed, retried on the next push{waiting}", 1)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from data.remote import RemoteError, pull

    with open_store(args) as store:
        try:
            result = pull(store, args.remote)
        except RemoteError as exc:
            return fail(str(exc), exc.code)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"pulled {len(result.pulled)} run(s) from {result.remote} ({result.already_here} already here)")
    for run_id, reason in result.refused.items():
        print(f"tokentop: warning: run {run_id} not pulled: {reason}", file=sys.stderr)
    return 0


_reporting = False


def report_background_pushes() -> None:
    """CLI commands (bench, load, ...): one stderr line per background push (TOKENTOP_REMOTE)."""
    global _reporting
    if _reporting:
        return
    _reporting = True
    from data.remote import add_push_listener

    def report(result, error) -> None:
        if error:
            print(f"tokentop: warning: push to the remote failed: {error}", file=sys.stderr)
            return
        if result.pushed:
            print(f"tokentop: pushed run(s) {', '.join(result.pushed)} to {result.remote}", file=sys.stderr)
        for run_id, reason in result.failed.items():
            print(f"tokentop: warning: push of run {run_id} to {result.remote} failed ({reason}); "
                  "it is retried on the next push", file=sys.stderr)

    add_push_listener(report)


def wait_for_background_pushes() -> None:
    """Before a command returns: let the runs it finished reach the remote (TOKENTOP_PUSH_EXIT_WAIT_S)."""
    from data.remote import wait_for_pushes

    wait_for_pushes()


def retry_failed_pushes(args: argparse.Namespace) -> None:
    """TOKENTOP_REMOTE set: at the start of a command that records runs, retry the failed pushes."""
    from data.paths import default_db_path
    from data.remote import default_remote, retry_failed_pushes as retry

    if default_remote():
        retry(getattr(args, "db", None) or default_db_path())
