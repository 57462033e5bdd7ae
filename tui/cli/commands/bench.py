"""`tokentop bench`: run a suite headless, store it, print a table or one JSON object."""

from __future__ import annotations

import argparse
import json
import threading

from engine.measure.metrics import json_safe
from engine.measure.progress import planned_lengths
from engine.terminal_text import safe_display
from tui.cells import run_to_json
from tui.cli.common import (
    add_db_option,
    add_engine_options,
    engine_kwargs,
    fail,
    open_store,
    positive_int,
    resolve_suite,
    start_engine_or_exit_code,
)
from tui.cli.progress import RequestProgress
from tui.cli.signals import sigterm_as_interrupt, stop_on_signals
from tui.tables import print_case_table, print_roofline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a suite headless and store it", description="Run a suite at batch 1.")
    p.add_argument("--suite", default="seed", help="'seed' (the article's suite) or a TOML suite file")
    p.add_argument("--reps", type=_reps, default=None, help="repetitions per case (default: the suite's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_db_option(p)
    add_engine_options(p, suppress=True)
    p.set_defaults(func=run)


def _reps(text: str) -> int:
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--reps {exc}") from None


def run(args: argparse.Namespace) -> int:
    from data.analysis.roofline import roofline_why_not, roofline_with_share
    from data.jobs.session import Session
    from engine.engines.runtime import QuietNativeOutput

    suite = resolve_suite(args.suite)  # BadRequestError (exit 2) before anything starts
    store = open_store(args)
    options = engine_kwargs(args)
    sigterm_as_interrupt()
    with QuietNativeOutput() as term:
        err = term.stderr
        progress = RequestProgress(err)
        session = Session(store, options, log=progress.note)
        run_id = None
        try:
            code = start_engine_or_exit_code(session, progress.note, term)
            if code is not None:
                return code
            reps = args.reps or suite.reps
            if suite.dataset is not None:  # sampled now, with the engine's tokenizer: bad input is exit 2
                from engine.errors import exit_code
                from engine.load import engine_tokens
                from engine.types import BadRequestError

                try:
                    planned = suite.requests(reps, tokens=engine_tokens(session.host.engine))
                except BadRequestError as exc:
                    return fail(str(exc), exit_code(exc), err)
            else:
                planned = suite.requests(reps)
            progress.begin(planned_lengths(planned))  # the ETA counts tokens where lengths are enforced
            stop = threading.Event()
            interrupted = stop_on_signals(stop)
            run_id, outcome, runner = session.run_suite(
                suite, reps, on_start=progress.on_start, on_record=progress.on_record, stop=stop
            )
            runner.interrupted = runner.interrupted or interrupted.is_set()
            progress.end()
        finally:
            session.shutdown()
        run = store.get_run(run_id)
        requests = store.get_requests(run_id)
        env = run.get("environment") or {}
        roof = roofline_with_share(env, session.describe(), run.get("summary") or {})
        why = None if roof else roofline_why_not(env, session.describe())
        if args.json:
            obj = run_to_json(run, requests)
            obj["roofline"] = roof
            obj["roofline_note"] = why
            print(json.dumps(json_safe(obj), default=str), file=term.stdout)
        else:
            print_case_table(safe_display(run), safe_display(requests), file=term.stdout)
            print_roofline(roof, run, file=term.stdout, why=why)
        store.close()
        if runner.interrupted:
            print(f"tokentop: interrupted: run {run_id} stored as aborted with "
                  f"{sum(1 for m in outcome.metrics if m.success)} finished requests", file=err)
            return 130
        if outcome.status != "completed":
            return fail(f"run {run_id} {outcome.status}: {outcome.error or 'see tokentop show ' + run_id}", 1, err)
        return 0
