"""`tokentop fleet`: the GPU x provider table from one laptop through SkyPilot (the `fleet` extra).

plan FLEET --out DIR   one SkyPilot task YAML per cell, checked by SkyPilot, with prices and the cap's cost
up FLEET [--yes]       launch every cell, follow, pull the runs, tear every cluster down, show the matrix
down FLEET             tear down whatever of the fleet is still up
status [FLEET]         the fleet's clusters SkyPilot knows of

The domain is data.fleet; this module parses, asks and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.terminal_text import one_line
from tui.cli.common import add_db_option, fail, open_store

EPILOG = """\
the fleet file (TOML):
  model = "meta-llama/Meta-Llama-3-8B-Instruct"
  remote = "s3://BUCKET/PREFIX"   every cell pushes its runs there
  suite = "seed"                  or a [load] table: tokentop load's options
  hours = 1.5                     time cap per cell, launch to teardown
  [[cell]]
  gpu = "H100"                    tokentop's GPU names (H100, A100-80GB, RTX4090)
  provider = "runpod"             runpod, vastai, lambda, coreweave (Kubernetes)
secrets go to the cells by name (AWS keys, HF_TOKEN), read from your
environment at launch; no value is written to a task file.
"""

ROOT = Path(__file__).resolve().parents[3]  # the checkout SkyPilot syncs to every cell (its workdir)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="rent one box per GPU x provider cell through SkyPilot and fill the table",
                       description="Plan, launch, follow and tear down a fleet of rented GPU boxes "
                       "(SkyPilot; pip install 'tokentop[fleet]').", epilog=EPILOG)
    verbs = p.add_subparsers(dest="fleet_command", metavar="VERB", parser_class=type(p))
    verbs.required = True
    plan = verbs.add_parser("plan", help="write one SkyPilot task per cell, with prices",
                            description="Write one SkyPilot task YAML per cell to --out, checked by SkyPilot's "
                            "own code, with each cell's prices and the fleet's cost for its time cap.")
    plan.add_argument("fleet_file", metavar="FLEET.toml")
    plan.add_argument("--out", required=True, metavar="DIR", help="folder for the task files")
    plan.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(plan)
    up = verbs.add_parser("up", help="launch every cell, follow, pull the runs, tear down",
                          description="Show the plan, ask, launch every cell through SkyPilot, follow them, "
                          "pull each cell's runs as they land, tear every cluster down (done, failed, time "
                          "cap, Ctrl-C) and show the matrix.")
    up.add_argument("fleet_file", metavar="FLEET.toml")
    up.add_argument("--yes", action="store_true", help="launch without asking (scripts)")
    up.add_argument("--out", default=None, metavar="DIR", help="keep the task files there (default: a temp dir)")
    up.add_argument("--json", action="store_true", help="print one JSON object on stdout at the end")
    add_db_option(up)
    down = verbs.add_parser("down", help="tear down the fleet's clusters still up")
    down.add_argument("fleet_file", metavar="FLEET.toml")
    status = verbs.add_parser("status", help="the fleet's clusters (all tokentop clusters without FLEET)")
    status.add_argument("fleet_file", metavar="FLEET.toml", nargs="?")
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    for q in (plan, up, down, status):
        q.set_defaults(func=run)


def make_launcher():
    """The real launcher (tests replace this function with their recording fake)."""
    from data.fleet.launcher import SkyLauncher
    from engine.types import BadRequestError

    try:
        return SkyLauncher()
    except ImportError:
        raise BadRequestError("SkyPilot is not installed: pip install 'tokentop[fleet]'") from None


def load_check(argv: list[str]) -> None:
    """Check a fleet's [load] table with `tokentop load`'s own parser and validator (build_spec)."""
    from engine.types import BadRequestError
    from tui.cli import Parser
    from tui.cli.commands import load
    from tui.cli.common import UsageError

    parser = Parser(prog="tokentop")
    load.register(parser.add_subparsers(dest="command", parser_class=Parser))
    try:
        args = parser.parse_args(["load", *argv])
    except UsageError as exc:
        raise BadRequestError(str(exc).split(" (see `")[0]) from None
    args.engine = "openai"  # the cells' engine choice does not change what the workload means
    load.build_spec(args)


def read_fleet(path: str):
    from data.fleet.spec import load_fleet

    return load_fleet(path, load_check=load_check)


def run(args: argparse.Namespace) -> int:
    verb = args.fleet_command
    if verb == "status":
        return _status(args)
    fleet = read_fleet(args.fleet_file)
    if verb == "down":
        return _down(fleet)
    if not (ROOT / "scripts" / "setup.sh").is_file():
        return fail("tokentop fleet sends this checkout to every cell: run it from a git checkout of tokentop "
                    "(scripts/setup.sh is missing here)", 2)
    plan = _plan(args, fleet)
    if verb == "plan":
        from data.fleet.plan import write_plan

        write_plan(plan, Path(args.out))
        if args.json:
            print(json.dumps(plan.to_dict()))
        else:
            print_plan(plan, sys.stdout)
        return 0
    return _up(args, plan)


def _plan(args: argparse.Namespace, fleet):
    from data.fleet.plan import make_plan
    from data.store.prices import price_board

    store = open_store(args)
    try:
        board = price_board(store)
    finally:
        store.close()
    return make_plan(fleet, workdir=ROOT, board=board, env=dict(os.environ))


# -- printing (80 columns) --------------------------------------------------------------------------
def _money(x: float | None, places: int = 2) -> str:
    return "—" if x is None else f"{x:.{places}f}"


def print_plan(plan, out) -> None:
    f = plan.fleet
    what = f"tokentop {f.command} " + (f"--suite {f.suite}" if f.command == "bench" else " ".join(f.load_args))
    lines = [f"fleet {f.name}: {len(plan.cells)} cell(s), {f.model}",
             f"  runs {what}"[:80],
             f"  pushes to {f.remote}/fleet/{f.name}/<cluster>"[:80],
             f"  time cap {f.hours:g} h per cell; SkyPilot downs a box idle {f.idle_minutes} min",
             "",
             f"{'#':>2} {'GPU':<15}{'provider':<10}{'SkyPilot':<17}{'sky $/h':>8}{'tt $/h':>8} "
             f"{'source':<8}{'cap $':>7}"]
    for cp in plan.cells:
        c = cp.cell
        gpu = c.gpu_key + ("*" if c.gpu_assumed else "")
        sky = f"{c.accelerator}:{c.count}"
        lines.append(f"{c.index:>2} {gpu:<15.15}{c.provider:<10}{sky:<17.17}{_money(cp.catalog.usd_per_hour):>8}"
                     f"{_money(cp.tokentop_usd_per_hour):>8} {cp.tokentop_source:<8.8}{_money(cp.estimate_usd):>7}")
    lines.append("")
    total = plan.estimate_usd
    est = f"estimated cost: ${total:.2f} for {f.hours:g} h" if total is not None else "estimated cost: unknown"
    if plan.unpriced:
        est += f" ({plan.unpriced} cell(s) unpriced)"
    lines.append(est + " (the higher of the two prices)")
    notes = sorted({cp.catalog.note for cp in plan.cells if cp.catalog.usd_per_hour is None})
    for n in notes:
        lines.append(f"  sky $/h: {n}")
    if any(cp.cell.gpu_assumed for cp in plan.cells):
        lines.append("  * form factor not given: the GPU's usual one assumed")
    import textwrap

    lines += textwrap.wrap(f"secrets by name (read from your environment at launch): {', '.join(plan.secrets)}",
                           80, subsequent_indent="  ", break_on_hyphens=False)
    files = [cp.file.name for cp in plan.cells if cp.file is not None]
    if files:
        lines.append("task files: " + ", ".join(files) if len(files) == 1 else "task files:")
        lines += [f"  {name}" for name in files] if len(files) > 1 else []
    for line in lines:
        print(line, file=out)


def _cell_line(c) -> str:
    cell = c.plan.cell
    runs = f"{len(c.run_ids)} run(s)" if c.run_ids else ""
    why = f" ({c.ended})" if c.ended and c.down else ""
    text = f"{cell.index:>2} {cell.cluster:<36.36} {c.state + why:<22.22} {runs}"
    return text.rstrip()


# -- up, down, status ----------------------------------------------------------------------------------
def _secrets(plan) -> dict[str, str]:
    from engine.types import BadRequestError

    missing = [n for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(n)]
    if missing:
        raise BadRequestError(f"set {' and '.join(missing)} here: the cells push their runs to "
                              f"{plan.fleet.remote} with them (passed by name, never written)")
    return {n: os.environ.get(n, "") for n in plan.secrets}


def _up(args: argparse.Namespace, plan) -> int:
    import tempfile

    from data.fleet.plan import write_plan
    from data.fleet.runner import follow_fleet
    from tui.tables import say_line

    err = sys.stderr
    secrets = _secrets(plan)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tokentop-fleet-"))
    write_plan(plan, out_dir)
    print_plan(plan, err)
    print(f"  in {out_dir}", file=err)
    if not secrets.get("HF_TOKEN"):
        say_line(err, "tokentop: note: HF_TOKEN is not set: a gated model will fail on the cells")
    if not args.yes:
        if not sys.stdin.isatty():
            return fail("not a terminal to ask on: add --yes to launch", 2)
        total = plan.estimate_usd
        answer = input(f"launch {len(plan.cells)} cell(s)"
                       + (f", at most ${total:.2f}" if total is not None else "") + "? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("tokentop: nothing launched", file=err)
            return 1
    launcher = make_launcher()
    shown: dict[int, str] = {}

    def on_change(cells) -> None:
        for c in cells:
            line = _cell_line(c)
            if shown.get(c.plan.cell.index) != line:
                shown[c.plan.cell.index] = line
                print(line, file=err, flush=True)

    note = lambda m: say_line(err, f"tokentop: {m}")  # noqa: E731
    store = open_store(args)
    outcome = None
    try:
        outcome = follow_fleet(plan, launcher, store, secrets=secrets, on_change=on_change, note=note)
    except KeyboardInterrupt:
        # follow_fleet downed every cluster before re-raising
        print(f"tokentop: interrupted: the fleet's {len(plan.cells)} cluster(s) torn down; runs already "
              "pulled are kept", file=err)
        store.close()
        return 130
    code = _report(args, plan, outcome, store)
    store.close()
    return code


def _report(args, plan, outcome, store) -> int:
    from data.analysis.matrix import build_matrix

    if args.json:
        print(json.dumps({"plan": plan.to_dict(), **outcome.to_dict()}, default=str))
    else:
        from rich.console import Console

        from tui.cli.commands.compare import print_matrix

        console = Console(width=min(80, Console().width), highlight=False)
        print_matrix(console, build_matrix(store, model=plan.fleet.model))
    if outcome.left_up:
        return fail(f"still up: {', '.join(outcome.left_up)}: run `tokentop fleet down {plan.fleet.path}`", 1)
    if outcome.capped:
        return fail(f"time cap ({plan.fleet.hours:g} h) reached: every cluster is down; runs that finished "
                    "are pulled", 1)
    failed = [c for c in outcome.cells if c.ended == "failed"]
    if failed:
        c = failed[0]
        return fail(f"{len(failed)} cell(s) failed; cell {c.plan.cell.index}: {c.detail or 'see sky logs'}", 1)
    return 0


def _down(fleet) -> int:
    launcher = make_launcher()
    names = {c.cluster for c in fleet.cells}
    up = [c.name for c in launcher.clusters() if c.name in names]
    if not up:
        print(f"tokentop: nothing of fleet {fleet.name} is up", file=sys.stderr)
        return 0
    code = 0
    for name in up:
        try:
            launcher.down(name)
            print(f"down: {name}", file=sys.stderr)
        except Exception as exc:
            code = fail(f"teardown of {name} failed: {one_line(exc)} (try `sky down` with it)", 1)
    return code


def _status(args: argparse.Namespace) -> int:
    launcher = make_launcher()
    names = None
    if args.fleet_file:
        names = {c.cluster for c in read_fleet(args.fleet_file).cells}
    rows = [c for c in launcher.clusters() if (c.name in names if names is not None else c.name.startswith("tt-"))]
    if args.json:
        print(json.dumps([{"cluster": c.name, "status": c.status,
                           "instance_type": c.launched.instance_type if c.launched else None,
                           "spot": c.launched.spot if c.launched else None,
                           "usd_per_hour": c.launched.usd_per_hour if c.launched else None} for c in rows]))
        return 0
    if not rows:
        print("no tokentop fleet clusters are up", file=sys.stderr)
        return 0
    print(f"{'cluster':<40} {'status':<8} {'instance':<20} {'$/h':>8}")
    for c in rows:
        inst = ((c.launched.instance_type or "?") + (" spot" if c.launched and c.launched.spot else "")
                if c.launched else "?")
        money = _money(c.launched.usd_per_hour if c.launched else None)
        print(f"{c.name:<40.40} {c.status:<8.8} {inst:<20.20} {money:>8}")
    return 0
