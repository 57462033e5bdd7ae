"""`tokentop prices`: current GPU offers per provider, with each price's source and age."""

from __future__ import annotations

import argparse
import json
import sys

from rich.text import Text

from engine.terminal_text import safe_display
from tui.cli.common import UsageError, add_db_option, open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prices",
        help="GPU prices per provider (stored; --refresh fetches live)",
        description="GPU prices per provider: RunPod, Vast.ai, Lambda, Vultr (live APIs), CoreWeave (dated "
        "table). Without --refresh, shows the last stored prices (or the bundled dated snapshot). "
        "Base URLs: TOKENTOP_RUNPOD_URL, TOKENTOP_VASTAI_URL, TOKENTOP_VULTR_URL, TOKENTOP_LAMBDA_URL; "
        "keys: LAMBDA_API_KEY (optional RUNPOD_API_KEY, VASTAI_API_KEY).",
    )
    p.add_argument("--refresh", action="store_true", help="fetch live prices now and store them")
    p.add_argument("--gpu", metavar="KEY", help="only this GPU (canonical key like H100-SXM-80, or a name)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(p)
    p.set_defaults(func=run)


def resolve_gpu(text: str) -> str:
    from pricing.gpus import GPUS, canonical_gpu

    if text.upper() in GPUS:
        return text.upper()
    match = canonical_gpu(text)
    if match.key is None:
        raise UsageError(f"unknown GPU {text!r} (known keys: {', '.join(GPUS)})")
    return match.key


def run(args: argparse.Namespace) -> int:
    from data.store.prices import price_board, refresh, refresh_summary

    gpu = resolve_gpu(args.gpu) if args.gpu else None
    with open_store(args) as store:
        if args.refresh:
            from engine.terminal_text import safe_text

            print(f"tokentop: {safe_text(refresh_summary(refresh(store)))}", file=sys.stderr)  # quotes API replies
        board = price_board(store)
    rows = board.rows if gpu is None else board.for_gpu(gpu)
    if args.json:
        out = board.to_dict()
        out["gpu"] = gpu
        out["prices"] = [r.to_dict() for r in rows]
        print(json.dumps(out))
        return 0
    print_board(safe_display(board), safe_display(rows), gpu, sys.stdout)
    return 0


def print_board(board, rows, gpu, file) -> None:
    """Each provider's status, then the prices: tables that fit the terminal (at least 80 columns), a
    second table for the columns that do not, never a cut value."""
    from data.store.prices import source_age
    from pricing.gpus import gpu_label
    from pricing.models import provider_label
    from tui.tables import Col, _console, print_table

    console = _console(file)
    status_cols = [Col("provider"), Col("status"), Col("source", wrap=True, min_width=12),
                   Col("fetched", wrap=True, min_width=8), Col("reason", wrap=True, min_width=20)]
    status_rows = []
    for s in board.statuses.values():
        style = {"ok": "green", "stale": "yellow", "failed": "red"}.get(s.state, "")
        status_rows.append([Text(provider_label(s.provider)), Text(s.state, style=style), Text(s.source or "—"),
                            Text(source_age(s, board.now) if s.as_of else "—"), Text(s.reason or "")])
    print_table(console, status_cols, status_rows, layout="pages", fixed=1)
    console.print()
    if not rows:
        console.print(Text(f"No provider lists a {gpu_label(gpu)} right now." if gpu else "No prices."))
        return
    cols = [Col("GPU", wrap=True, min_width=13), Col("provider"), Col("type"), Col("GPUs", "right"),
            Col("$/GPU-h", "right"), Col("$/h", "right"), Col("source", wrap=True, min_width=10),
            Col("detail", wrap=True, min_width=14)]
    table = []
    for r in rows:
        name = gpu_label(r.gpu_key) if r.gpu_key else f"unmatched: {r.gpu_raw_name}"
        if r.approximate and r.gpu_key:
            name += " ~"
        detail = " ".join(x for x in (f"{r.stat} of {r.offers}" if r.stat else None, r.note, r.instance_type,
                                      r.region) if x)
        table.append([Text(name), Text(provider_label(r.provider)), Text(r.pricing_type), str(r.gpu_count),
                      f"{r.usd_per_gpu_hour:.2f}", f"{r.usd_per_hour:.2f}", Text(source_age(r, board.now)),
                      Text(detail)])
    print_table(console, cols, table, layout="pages", fixed=2)
    console.print(Text("~ = the provider does not name the form factor (SXM/PCIe); matched approximately."))
