"""`tokentop compare [RUN_ID ...]`: what each stored run's throughput costs per provider.

`--matrix`: the article's GPU x provider table from every run in the database; `--slo ttft=..,tpot=..`:
the cheapest tokens that still answer in time; `--frontier`: the priced throughput-latency frontier."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.text import Text

from data.analysis.run_figures import LOAD_FIGURES, LOAD_FIGURES_NOTE
from engine.terminal_text import safe_display
from tui.cli.common import add_db_option, fail, open_store
from tui.tables import Col, _console, print_table


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
    view = p.add_mutually_exclusive_group()
    view.add_argument("--matrix", action="store_true",
                      help="one row per GPU x provider from every run in the database (the article's table)")
    view.add_argument("--slo", metavar="NAME=MS,...",
                      help="the highest load level whose requests meet these SLOs (ttft, tpot, e2el in ms) "
                      "and its $/1M per provider")
    view.add_argument("--frontier", action="store_true",
                      help="throughput per GPU vs per-user tok/s and TTFT of every load level, priced, "
                      "Pareto-optimal points marked")
    p.add_argument("--percentile", default="99", metavar="P",
                   help="percentile the SLOs (and the frontier's TTFT) are read at (default: 99)")
    p.add_argument("--model", default=None, help="only runs of this model (--matrix/--slo/--frontier)")
    add_db_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.matrix or args.slo is not None or args.frontier:
        if args.run_ids:
            return fail("--matrix, --slo and --frontier use every run in the database: give no RUN_ID", 2)
        return run_views(args)
    from data.analysis.compare import CompareError, compare_runs, latest_completed_run_id, workloads_differ
    from data.store.prices import price_board
    from engine.errors import exit_code

    with open_store(args) as store:
        run_ids = list(args.run_ids)
        if not run_ids:
            latest = latest_completed_run_id(store)
            if latest is None:
                return fail(f"no completed run in {store.path} to compare: run `tokentop bench` first, or name a "
                            "run (see `tokentop runs`)", 2)
            run_ids = [latest]
        board = price_board(store)
        try:
            results = compare_runs(store, run_ids, board=board)
        except CompareError as exc:
            return fail(str(exc), exit_code(exc))
    if args.json:
        print(json.dumps({
            "now": board.now.isoformat(),
            "workloads_differ": workloads_differ(results),
            "runs": [r.to_dict() for r in results],
            "providers": [s.to_dict() for s in board.statuses.values()],
        }))
        return 0
    console = _console(sys.stdout)
    results = safe_display(results)
    if workloads_differ(results):
        console.print(Text("≠ these runs ran different workloads: " + "; ".join(
            f"{rc.run_id}: {rc.workload}" for rc in results) + " — their figures do not compare one to one",
            style="bold yellow"))
        console.print()
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
    count = f" ×{rc.gpu_count}" if rc.gpu_key else ""
    console.print(Text(f"run {rc.run_id} · {rc.model or '?'} · {device}{count} · {tps}{ttft}", style="bold"))
    where = where_text(rc)
    if where:
        console.print(Text(where))
    if rc.workload:
        console.print(Text(f"workload {rc.workload}"))
    if rc.per_user_tps:
        console.print(Text(f"per-user speed {rc.per_user_tps:.1f} {rc.per_user_label} (each request's tokens / E2EL "
                           "while others ran beside it): a latency figure, not a cost basis"))
    if rc.note:
        console.print(Text(rc.note))
    if rc.costs:
        # A reasoning run: what the tokens a user reads cost, beside what every output token costs.
        answers = any(c.usd_per_million_answer is not None for c in rc.costs)
        cols = [Col("provider"), Col("$/h", "right"), Col("TPS", "right"), Col("TPS basis", wrap=True, min_width=9),
                Col("$/1M tok", "right"), *([Col("$/1M answer", "right")] if answers else []), Col(""),
                Col("type"), Col("source", wrap=True, min_width=10), Col("detail", wrap=True, min_width=12)]
        rows = []
        for c in rc.costs:
            style = "bold green" if c.cheapest else ""
            answer = [Text("–" if c.usd_per_million_answer is None else f"{c.usd_per_million_answer:.2f}")]
            rows.append([
                Text(provider_label(c.provider) + (" ~" if c.approximate else ""), style=style),
                f"{c.usd_per_hour:.2f}", f"{c.tps:.1f}", Text(c.tps_basis),
                Text(f"{c.usd_per_million:.2f}", style=style), *(answer if answers else []),
                Text(("◀ cheapest" + (f" ({c.tps_basis})" if len(speeds) > 1 else "")) if c.cheapest else "",
                     style=style),
                Text(c.pricing_type), Text(c.source), Text(c.detail),
            ])
        print_table(console, cols, rows, layout="pages", fixed=1)
        bases = " or ".join(s["tps_basis"] for s in speeds) or rc.tps_basis
        console.print(Text(f"$/1M tokens = $/h / (TPS × 3600) × 1e6, TPS = {bases} (named on each row)."))
        if rc.throughput_figures:  # which span of the level the throughput under load is (data.analysis.run_figures)
            console.print(Text(f"throughput under load: the level's {LOAD_FIGURES} (ramp-up and drain included)"))
        if answers:
            console.print(Text(
                "$/1M answer = $/1M tok × output tokens / answer tokens (the reasoning is paid for too)."))
    if rc.reference:
        console.print(Text(f"Reference ({rc.reference[0].label}, Llama 3 8B FP16, {rc.reference[0].tps_basis}):"))
        cols = [Col("GPU", wrap=True, min_width=10), Col("provider"), Col("type"), Col("TPS", "right"),
                Col("$/h", "right"), Col("$/1M tok", "right")]
        rows = [[Text(r.gpu), Text(provider_label(r.provider)), Text(r.pricing_type), f"{r.tps:.0f}",
                 f"{r.usd_per_hour:.2f}", f"{r.usd_per_million:.2f}"] for r in rc.reference]
        print_table(console, cols, rows, layout="pages", fixed=1)
    console.print()


def where_text(rc) -> str:
    """Where the run ran, the GPUs it is costed for, and the price paid, in one line ("" when nothing is known)."""
    from pricing.models import provider_label

    parts = []
    if rc.provider:
        parts.append(f"ran on {provider_label(rc.provider)}" + (f" {rc.instance_type}" if rc.instance_type else ""))
    if rc.gpu_key:  # a run on a GPU nobody rents, or on no GPU, is costed for no GPU
        of = f" of {rc.instance_gpus}" if rc.instance_gpus and rc.instance_gpus > rc.gpu_count else ""
        parts.append(f"costed for {rc.gpu_count}{of} GPU(s) ({rc.gpus_used_note})" if rc.gpus_used_note
                     else f"costed for {rc.gpu_count}{of} GPU(s)")
    if rc.price_per_hour_usd:
        parts.append(f"paid ${rc.price_per_hour_usd:.2f}/h for the instance")
    return " · ".join(parts)


# -- the matrix, cost at an SLO, the frontier ------------------------------------------------------------
def run_views(args: argparse.Namespace) -> int:
    from data.analysis.frontier import SloError, build_frontier, cost_at_slo, parse_percentile
    from data.analysis.matrix import build_matrix
    from engine.load import parse_slo
    from engine.measure.metrics import json_safe

    try:
        percentile = parse_percentile(args.percentile)
        slo = parse_slo(args.slo) if args.slo is not None else None
        if args.slo is not None and not slo:
            raise SloError("--slo needs at least one limit, e.g. ttft=500,tpot=50")
    except (SloError, ValueError) as exc:
        return fail(str(exc), 2)
    with open_store(args) as store:
        if args.matrix:
            result = build_matrix(store, model=args.model)
        elif slo is not None:
            result = cost_at_slo(store, slo, percentile, model=args.model)
        else:
            result = build_frontier(store, percentile, model=args.model)
    if args.json:
        print(json.dumps(json_safe(result.to_dict()), default=str))
        return 0
    console = _console(sys.stdout)
    result = safe_display(result)  # stored runs and price replies: outside text, shown on a terminal
    if args.matrix:
        print_matrix(console, result)
    elif slo is not None:
        print_slo(console, result)
    else:
        print_frontier(console, result)
    return 0


def _table(headers, justify=None) -> list:
    """Col specs for print_table: numbers right-aligned, names may wrap, nothing is ever cut."""
    justify = justify or {}
    return [Col(h, justify.get(i, "left"), wrap=justify.get(i, "left") == "left" and i > 0, min_width=10)
            for i, h in enumerate(headers)]


def print_matrix(console: Console, matrix) -> None:
    from tui.matrix_format import MATRIX_COLUMNS, MEASURED_LEGEND, SOURCE_LEGEND, matrix_cells

    for note in matrix.notes:
        console.print(Text(note))
    for model, workload in matrix.groups():
        heading = Text(model, style="bold")
        heading.append(f" · workload {workload}", style="bold cyan")
        console.print(heading)
        cols = _table([h for h, _w, _j in MATRIX_COLUMNS], {i: j for i, (_h, _w, j) in enumerate(MATRIX_COLUMNS)})
        rows = [matrix_cells(row) for row in matrix.rows if row.model == model and row.workload == workload]
        # GPU and provider on every page; the columns past the terminal's width follow in a second table.
        print_table(console, cols, rows, layout="pages", fixed=2)
    if matrix.rows:
        console.print(Text("$/1M output tokens = $/h / (TPS × 3600) × 1e6; ◀ cheapest per basis and workload"))
        console.print(Text("runs on different workloads are never averaged: one table per workload"))
        console.print(Text("b1: batch-1 TPS; ld: throughput under load (mean±std ·runs)"))
        console.print(Text(SOURCE_LEGEND))
        console.print(Text(MEASURED_LEGEND))
    else:
        from data.analysis.matrix import reference_matrix
        from pricing.models import provider_label

        ref = matrix.reference
        console.print(Text(f"{ref.get('label')}: {ref.get('model')}, {ref.get('tps_basis')}", style="bold"))
        cols = _table(["GPU", "provider", "TPS", "$/h", "$/1M"], {2: "right", 3: "right", 4: "right"})
        rows = [[r["gpu_key"], provider_label(r["provider"]), f"{r['tps']:.0f}", f"{r['usd_per_hour']:.2f}",
                 f"{r['usd_per_million']:.2f}"] for r in reference_matrix()]
        print_table(console, cols, rows, layout="pages", fixed=1)


def print_slo(console: Console, result) -> None:
    from pricing.models import provider_label
    from tui.matrix_format import LEVEL_HEADERS, SOURCE_MARK, level_cells

    slo = ", ".join(f"{k.upper()} ≤ {v:g} ms" for k, v in result.slo_ms.items())
    console.print(Text(f"SLO: p{result.percentile:g} {slo}", style="bold"))
    console.print(Text("(a level meets it: no request failed, each named pXX within its limit)"))
    console.print(Text(LOAD_FIGURES_NOTE))
    if not result.answers:
        console.print(Text("No load levels stored yet: run `tokentop load` first."))
    for a in result.answers:
        count = f" ×{a.gpus_used}" if a.gpus_used > 1 else ""
        heading = Text(f"{a.model} · {a.gpu}{count}", style="bold")
        heading.append(f" · workload {a.workload}", style="bold cyan")
        console.print(heading)
        head = Text("  ")
        head.append(Text(a.message, style="" if a.best else "bold red"))
        if a.cheapest_overall:
            head.append(Text("  ◀ cheapest in time", style="bold green"))
        console.print(head)
        if a.costs:
            cols = _table(["provider", "$/h", "$/1M at the SLO", ""], {1: "right", 2: "right"})
            rows = []
            for c in a.costs:
                style = "bold green" if c.cheapest else ""
                rows.append([Text(provider_label(c.provider) + ("*" if c.measured_here else ""), style=style),
                             f"{c.usd_per_hour:.2f} {SOURCE_MARK.get(c.price_source, '?')}",
                             Text(f"{c.usd_per_million:.2f}", style=style),
                             Text("◀" if c.cheapest else "", style=style)])
            print_table(console, cols, rows, layout="pages", fixed=1)
        headers = list(LEVEL_HEADERS)
        headers[3], headers[4] = f"p{result.percentile:g} TTFT", f"p{result.percentile:g} TPOT"
        cols = _table(headers, {i: "right" for i in range(1, 6)})
        rows = [[Text(c, style="bold green" if a.best is s else "") for c in level_cells(s, result.percentile)]
                for s in a.levels]
        tags = a.sweep_tags()  # several sweeps of this workload: which one each level came from
        if tags:
            cols.insert(0, Col("sweep", min_width=5))
            rows = [[Text(tags[s.sweep_id], style="bold green" if a.best is s else ""), *row]
                    for s, row in zip(a.levels, rows)]
        print_table(console, cols, rows, layout="pages", fixed=2 if tags else 1)
        for sweep_id, tag in tags.items():
            console.print(Text(f"sweep {tag}: its first level is run {sweep_id}", style="dim"))
        console.print()


def print_frontier(console: Console, frontier) -> None:
    from tui.matrix_format import FRONTIER_HEADERS, frontier_cells

    for note in frontier.notes:
        console.print(Text(note))
    if not frontier.points:
        return
    headers = list(FRONTIER_HEADERS)
    headers[4] = f"p{frontier.percentile:g} TTFT"
    for workload in frontier.workloads():  # each workload has its own fronts: never one table
        console.print(Text(f"workload {workload}", style="bold cyan"))
        cols = _table(headers, {2: "right", 3: "right", 4: "right", 5: "right"})
        cols[0] = Col(headers[0], wrap=True, min_width=12)
        print_table(console, cols, [frontier_cells(p) for p in frontier.points if p.level.workload == workload],
                    layout="pages", fixed=1)
    console.print(Text("GPU tok/s: output throughput per GPU; user tok/s: mean output tokens / E2EL"))
    console.print(Text(LOAD_FIGURES_NOTE))
    console.print(Text("$/1M: at the cheapest provider for that GPU (every provider in --json)"))
    console.print(Text("pareto: U on the GPU tok/s vs user tok/s front, T on the GPU tok/s vs TTFT front "
                       "(per model and workload)"))
