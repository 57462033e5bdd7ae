"""`tokentop` — the command line entry point (the console script `tui.cli:main`; also `python -m tui.cli`).
No subcommand opens the app. The commands are tui.cli.commands.*, their shared options tui.cli.common."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from engine.errors import TokentopError, exit_code
from tui.cli.common import UsageError, add_engine_options, fail
from tui.cli.signals import exit_now

# Each module exposes register(subparsers) and run(args) -> int.
COMMAND_MODULES = [
    "tui.cli.commands.bench",
    "tui.cli.commands.runs",
    "tui.cli.commands.prices",
    "tui.cli.commands.compare",
    "tui.cli.commands.load",
    "tui.cli.commands.transfer",
    "tui.cli.commands.serve",
    "tui.cli.commands.fleet",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one message (and exit 2), not a usage dump, and a misspelt option or
    command gets a "did you mean" from the options of the command in use (Python 3.12+ has
    suggest_on_error; this is the one place for 3.11). Help is laid out by common.HelpFormatter: the
    terminal's width, at most 80, every line wrapped with an indent."""

    def __init__(self, *args, **kwargs) -> None:
        from tui.cli.common import HelpFormatter

        kwargs["formatter_class"] = HelpFormatter  # keeps raw epilogs' own lines (RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        # A command's unknown options are reported by the top parser: answer for the command in use.
        command = command_in_use(self, self._argv) if message.startswith("unrecognized arguments:") else None
        hint = did_you_mean(command or self, message)
        prog = command.prog if command is not None else self.prog
        raise UsageError(f"{message}{hint} (see `{prog} --help`)")


def command_in_use(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser | None:
    """The subcommand's parser named in `argv` (the first word that is a command), or None."""
    commands = {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for name, sub in action.choices.items()}
    return next((commands[word] for word in argv if word in commands), None)


def did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """'; did you mean --concurrency?' for an unknown option close to one of `parser`'s own (the command in
    use: `load --percentile` is not told about compare's --percentile), or a command close to a known
    one, else ''."""
    import difflib
    import re

    if message.startswith("unrecognized arguments:"):
        words = message.split(":", 1)[1].split()
        known = [o for action in parser._actions for o in action.option_strings]
        for word in words:
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=", 1)[0], sorted(set(known)), n=1, cutoff=0.7)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
        close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]}?"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tokentop",
        description="Live LLM inference benchmarks: vLLM engine, TPS/TTFT gauges, DuckDB history, "
        "GPU cloud cost per million tokens. With no command, opens the app.",
    )
    parser.add_argument("--db", help="DuckDB file (default: TOKENTOP_DB or the user data dir)")
    add_engine_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit status (0 ok, 1 engine or unexpected error, 2 bad input,
    130 interrupted). Called with no argv (a real process), it ends the process itself once the command is
    done (tui.cli.signals.exit_now): everything is stored and the engine is down by then, and the interpreter's own
    teardown of torch, vLLM and DuckDB, with their daemon threads still parked in C++, costs ~2 s and can
    abort the process ("terminate called ... exception not rethrown") after a run that succeeded."""
    code = _main(argv)
    if argv is None:
        exit_now(code)
    return code


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        from tui.cli.commands.transfer import report_background_pushes, retry_failed_pushes, wait_for_background_pushes

        try:
            if getattr(args, "func", None) is not None:
                report_background_pushes()  # one stderr line per push (never inside the app's screen)
            if args.command in (None, "bench", "load"):  # commands that record runs
                retry_failed_pushes(args)
            if getattr(args, "func", None) is None:
                from tui.app_main import run_app

                return run_app(args)
            return int(args.func(args) or 0)
        finally:
            wait_for_background_pushes()  # runs finished with TOKENTOP_REMOTE set reach the remote
    except KeyboardInterrupt as exc:
        print("tokentop: interrupted", file=sys.stderr)
        return exit_code(exc)
    except TokentopError as exc:  # ours (UsageError, BadRequestError, StoreError, ...): said as they are
        return fail(str(exc), exit_code(exc))
    except Exception as exc:
        return fail(f"{type(exc).__name__}: {exc} (details: {_log_traceback()})".replace("\n", " "), exit_code(exc))


def _log_traceback() -> str:
    """Unexpected errors go to a log file, not the user's screen."""
    import traceback

    from engine.engines.runtime import log_dir

    path = log_dir() / "tokentop-errors.log"
    with open(path, "a", encoding="utf-8") as f:
        traceback.print_exc(file=f)
    return str(path)
