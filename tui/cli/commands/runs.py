"""`tokentop runs` and `tokentop show RUN_ID`: what is stored."""

from __future__ import annotations

import argparse
import json
import sys

from rich.text import Text

from engine.measure.metrics import json_safe
from engine.terminal_text import safe_display
from tui.cells import run_to_json
from tui.cli.common import add_db_option, fail, open_store
from tui.tables import print_case_table, print_runs_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list stored runs", description="List stored runs, newest first.")
    p.add_argument("--json", action="store_true", help="print a JSON list on stdout")
    p.add_argument("--limit", type=int, default=None, help="show at most N runs")
    add_db_option(p)
    p.set_defaults(func=run_list)

    s = sub.add_parser("show", help="show one stored run", description="Show one stored run.")
    s.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix of one)")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(s)
    s.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from data.analysis.workload_labels import label_runs

    with open_store(args) as store:
        runs = label_runs(store, store.list_runs(limit=args.limit))  # workload_key and workload_label
    if args.json:
        print(json.dumps(json_safe(runs), default=str))
    else:
        print_runs_table(safe_display(runs), sys.stdout)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from data.analysis.workload_labels import workload_labels

    with open_store(args) as store:
        run = store.get_run(args.run_id)
        if run is None:
            return fail(f"no run {args.run_id!r} in {store.path}: see `tokentop runs`", 2)
        requests = store.get_requests(run["run_id"])
        run["workload_label"] = workload_labels(store).get(run.get("workload_key") or "", run.get("workload_label"))
    if args.json:
        print(json.dumps(json_safe(run_to_json(run, requests)), default=str))
    else:
        print_case_table(safe_display(run), safe_display(requests), sys.stdout)
        _print_server_timing(run)
        _print_steady_state(run)
    return 0


def _print_steady_state(run: dict) -> None:
    """A load level's steady state (its plateau, engine.measure.metrics.steady_state) under its table."""
    from engine.measure.metrics import steady_state_lines

    overall = (run.get("summary") or {}).get("overall") or {}
    lines = steady_state_lines(overall) if run.get("kind") == "load" else []
    if lines:
        print("steady state (>= 95 % of the level's concurrency in flight, as vllm-bench):")
        for line in lines:
            print(f"  {line}")


def _print_server_timing(run: dict) -> None:
    """The level's TTFT split by the server's own timing, and spec-decode acceptance, where it has them."""
    from engine.measure.server_timing import SPLIT_NOTE, split_lines
    from engine.terminal_text import safe_text
    from tui.tables import _console

    overall = (run.get("summary") or {}).get("overall") or {}
    lines = split_lines({**overall, "label": safe_text(str(overall.get("label") or run.get("kind") or "run"))})
    if lines:
        console = _console(sys.stdout)
        console.print(Text(SPLIT_NOTE), style="dim")
        for line in lines:
            console.print(Text(line))
