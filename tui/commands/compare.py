"""`tokentop compare [RUN_ID ...]`: what each stored run's throughput costs per provider."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tui.commands.common import add_db_option, fail, open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="$/h and $/1M output tokens per provider for stored runs",
        description="For each run (default: the latest completed run), the cost per 1M output tokens on every "
        "provider that rents that run's GPU, from the stored prices (refresh them with `tokentop prices "
        "--refresh`). cost = $/h / (tokens/s x 3600) x 1e6; the tokens/s figure used is named.",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="run ids or unique prefixes")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data.compare import CompareError, compare_runs, latest_completed_run_id
    from data.prices import price_board

    with open_store(args) as store:
        run_ids = list(args.run_ids)
        if not run_ids:
            latest = latest_completed_run_id(store)
            if latest is None:
                return fail(f"no completed run in {store.path}: run `tokentop bench` first", 1)
            run_ids = [latest]
        board = price_board(store)
        try:
            results = compare_runs(store, run_ids, board=board)
        except CompareError as exc:
            return fail(str(exc), 2)
    if args.json:
        print(json.dumps({
            "now": board.now.isoformat(),
            "runs": [r.to_dict() for r in results],
            "providers": [s.to_dict() for s in board.statuses.values()],
        }))
        return 0
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False, width=max(110, Console(file=sys.stdout).width))
    for rc in results:
        print_run(console, rc)
    return 0


def print_run(console: Console, rc) -> None:
    from pricing.gpus import gpu_label
    from pricing.models import provider_label

    device = gpu_label(rc.gpu_key) if rc.gpu_key else (rc.device or "CPU")
    speeds = rc.speeds or ([{"tps": rc.tps, "tps_basis": rc.tps_basis}] if rc.tps else [])
    tps = "; ".join(f"{s['tps']:.1f} tok/s ({s['tps_basis']})" for s in speeds) or "no TPS"
    ttft = f", TTFT {rc.ttft_ms:.0f} ms" if rc.ttft_ms is not None else ""
    console.print(Text(f"run {rc.run_id} · {rc.model or '?'} · {device} ×{rc.gpu_count} · {tps}{ttft}", style="bold"))
    where = where_text(rc)
    if where:
        console.print(Text(where))
    if rc.per_user_tps:
        console.print(Text(f"per-user speed {rc.per_user_tps:.1f} {rc.per_user_label} (each request's tokens / E2EL "
                           "while others ran beside it): a latency figure, not a cost basis"))
    if rc.note:
        console.print(Text(rc.note))
    if rc.costs:
        table = Table(show_edge=False, pad_edge=False)
        for col, justify in (("provider", "left"), ("type", "left"), ("detail", "left"), ("$/h", "right"),
                             ("TPS", "right"), ("TPS basis", "left"), ("$/1M tok", "right"), ("source", "left"), ("", "left")):
            table.add_column(col, justify=justify)
        for c in rc.costs:
            style = "bold green" if c.cheapest else ""
            table.add_row(
                Text(provider_label(c.provider) + (" ~" if c.approximate else ""), style=style),
                Text(c.pricing_type), Text(c.detail), f"{c.usd_per_hour:.2f}", f"{c.tps:.1f}",
                Text(c.tps_basis), Text(f"{c.usd_per_million:.2f}", style=style), Text(c.source),
                Text(("◀ cheapest" + (f" ({c.tps_basis})" if len(speeds) > 1 else "")) if c.cheapest else "", style=style),
            )
        console.print(table)
        bases = " or ".join(s["tps_basis"] for s in speeds) or rc.tps_basis
        console.print(Text(f"$/1M tokens = $/h / (TPS × 3600) × 1e6, TPS = {bases} (named on each row)."))
    if rc.reference:
        console.print(Text(f"Reference ({rc.reference[0].label}, Llama 3 8B FP16, {rc.reference[0].tps_basis}):"))
        ref = Table(show_edge=False, pad_edge=False)
        for col, justify in (("GPU", "left"), ("provider", "left"), ("TPS", "right"), ("$/h", "right"),
                             ("$/1M tok", "right")):
            ref.add_column(col, justify=justify)
        for r in rc.reference:
            ref.add_row(Text(r.gpu), Text(provider_label(r.provider)), f"{r.tps:.0f}", f"{r.usd_per_hour:.2f}",
                        f"{r.usd_per_million:.2f}")
        console.print(ref)
    console.print()


def where_text(rc) -> str:
    """Where the run ran, the GPUs it is costed for, and the price paid, in one line ("" when nothing is known)."""
    from pricing.models import provider_label

    parts = []
    if rc.provider:
        parts.append(f"ran on {provider_label(rc.provider)}" + (f" {rc.instance_type}" if rc.instance_type else ""))
    if rc.gpu_key or rc.instance_gpus:
        of = f" of {rc.instance_gpus}" if rc.instance_gpus and rc.instance_gpus > rc.gpu_count else ""
        parts.append(f"costed for {rc.gpu_count}{of} GPU(s) ({rc.gpus_used_note})" if rc.gpus_used_note
                     else f"costed for {rc.gpu_count}{of} GPU(s)")
    if rc.price_per_hour_usd:
        parts.append(f"paid ${rc.price_per_hour_usd:.2f}/h for the instance")
    return " · ".join(parts)
