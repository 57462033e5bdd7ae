"""`tokentop bench`: run a suite headless, store it, print a table or one JSON object."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from engine.measure.metrics import json_safe
from engine.measure.progress import TokenProgress, planned_lengths
from engine.terminal_text import safe_display, safe_text
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
from tui.format import print_case_table, print_roofline, run_to_json


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
    from data.load_runs import roofline_why_not, roofline_with_share
    from data.session import Session
    from engine.engines.runtime import QuietNativeOutput

    suite = resolve_suite(args.suite)  # BadRequestError (exit 2) before anything starts
    store = open_store(args)
    options = engine_kwargs(args)
    _sigterm_as_interrupt()
    with QuietNativeOutput() as term:
        err = term.stderr
        progress = _Progress(err)
        session = Session(store, options, log=progress.note)
        run_id = None
        try:
            code = start_engine_or_exit_code(session, progress.note, term)
            if code is not None:
                return code
            reps = args.reps or suite.reps
            if suite.dataset is not None:  # sampled now, with the engine's tokenizer: bad input is exit 2
                from engine.load import engine_tokens
                from engine.types import BadRequestError

                try:
                    planned = suite.requests(reps, tokens=engine_tokens(session.host.engine))
                except BadRequestError as exc:
                    return fail(str(exc), 2, err)
            else:
                planned = suite.requests(reps)
            progress.begin(planned_lengths(planned))  # the ETA counts tokens where lengths are enforced
            stop = threading.Event()
            interrupted = _stop_on_signals(stop)
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


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop_on_signals(stop: threading.Event) -> threading.Event:
    """First Ctrl-C, SIGTERM or SIGHUP (the SSH session dropping) stops the run cleanly, keeping
    what finished; a second one interrupts at once."""
    interrupted = threading.Event()

    def handler(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        stop.set()

    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    return interrupted


def _sigterm_as_interrupt() -> None:
    """While the engine starts, SIGTERM and SIGHUP interrupt like Ctrl-C (nothing to store yet)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        for sig in STOP_SIGNALS[1:]:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread (tests calling main() from a worker)
        pass


class _Progress:
    """One progress line on stderr: rewritten in place on a terminal, a line per request otherwise.
    The ETA counts output tokens (engine.measure.progress): a 500-token case takes ten times a 50-token one."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.total = 0
        self.done = 0
        self.tokens = TokenProgress([])
        self.current = ""

    def note(self, message: str) -> None:
        from tui.format import say_line

        self._clear()
        say_line(self.stream, f"tokentop: {safe_text(str(message))}")

    def begin(self, lengths: list[int | None]) -> None:
        self.total, self.done = len(lengths), 0
        self.tokens = TokenProgress(lengths)

    def on_start(self, index: int, total: int, request) -> None:
        self.current = f"{request.case_id} rep {request.rep + 1}"
        if self.tty:
            self._line(f"[{index + 1}/{total}] {self.current} …")

    def on_record(self, index: int, record, metrics) -> None:
        self.done = index + 1
        self.tokens.finish(index)
        if metrics.success:
            detail = (f"{metrics.output_tokens} tok, TTFT {metrics.ttft_s * 1000:.0f} ms, "
                      f"TPS {metrics.tps:.1f} tok/s")
        else:
            detail = f"failed: {record.error}"
        self._line(f"[{self.done}/{self.total}] {self.current}: {detail} ({self.tokens.text()})", final=not self.tty)

    def end(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)

    def _line(self, text: str, final: bool = False) -> None:
        from rich.cells import cell_len

        from tui.format import line_width, say_line

        text = safe_text(text)  # carries a server's error text
        width = line_width(self.stream)
        if self.tty and (width is None or cell_len(text) < width):
            self.stream.write("\r\x1b[2K" + text)  # rewritten in place: it must fit one row
            self.stream.flush()
        else:  # a line too wide to rewrite in place is kept, wrapped, rather than cut
            self._clear()
            say_line(self.stream, text)

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
