"""Options and helpers shared by the commands (and the app's start-up)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from engine.errors import TokentopError
from tui.validators import positive_int  # noqa: F401  (the commands import it from here)


class UsageError(TokentopError):
    """Bad command-line input: one line on stderr, exit 2."""

    exit_code = 2  # bad input (engine.errors)


HELP_MAX_WIDTH = 80  # help reads best at this width even on a wide terminal


def help_width() -> int:
    """The width `--help` is laid out for: $COLUMNS or the terminal's width, at most HELP_MAX_WIDTH
    (and 40 at the least, where a line still holds an option and some words)."""
    import shutil

    return max(40, min(HELP_MAX_WIDTH, shutil.get_terminal_size((HELP_MAX_WIDTH, 24)).columns))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help at `help_width()`: option help wrapped as argparse does; descriptions and epilogs
    keep their own lines (a list of patterns stays a list) and a line too wide is wrapped at spaces with
    its further lines indented to its second column ('  --concurrency 1,2,4   N users, ...' continues
    under 'N'); an option whose names and metavars pass the width lists them one per line."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import re

        from tui.tables import wrap_spans

        entries: list[list] = []  # [line, hang]: a line of its own, its raw continuation lines joined to it
        column = 0  # where the last two-column line's second column starts
        for raw in text.splitlines():
            line = indent + raw.rstrip()
            lead = len(line) - len(line.lstrip(" "))
            if entries and column and lead == column and line.strip():  # the raw text's own continuation
                entries[-1][0] += " " + line.strip()
                continue
            second = re.match(r"(\s*\S.*?\s{2,})\S", line)
            if second:
                column = len(second.group(1))
            elif not (column and len(line) > column and line[column - 1] == " " and line[column] != " "
                      and lead < column):
                column = 0
            entries.append([line, column - lead if column else 2 if lead else 0])  # prose: flush left
        out = []
        for line, hang in entries:
            out += [" " * pad + line[a:b] for a, b, pad in wrap_spans(line, width, hang)]
        return "\n".join(out) + "\n"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        text = super()._format_action_invocation(action)
        if len(text) + self._current_indent <= self._width or ", " not in text:
            return text
        return (",\n" + " " * (self._current_indent + 2)).join(text.split(", "))


def fail(message: str, code: int = 1, stream=None) -> int:
    """One line on stderr, `tokentop: error: ...`; the message may quote outside text (a server's
    reply, a bundle's content), so it passes engine.terminal_text.safe_text first."""
    from engine.terminal_text import safe_text
    from tui.tables import say_line

    say_line(stream or sys.stderr, f"tokentop: error: {safe_text(str(message))}")
    return code


def add_db_option(parser: argparse.ArgumentParser, suppress: bool = True) -> None:
    parser.add_argument(
        "--db",
        default=argparse.SUPPRESS if suppress else None,
        help="DuckDB file (default: TOKENTOP_DB or the user data dir)",
    )


def add_engine_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """On the top-level parser with defaults; on subcommands suppressed, so either place works."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=["vllm", "openai"], default=d("vllm"),
                   help="vllm: in-process engine (default); openai: an OpenAI-compatible server")
    g.add_argument("--model", default=d(None),
                   help="model folder or id (default: the embedded SmolLM2-135M-Instruct)")
    g.add_argument("--endpoint", default=d(None), help="server URL for --engine openai, e.g. http://127.0.0.1:8000")
    g.add_argument("--api", choices=["chat", "completions"], default=d("chat"),
                   help="OpenAI API to call with --engine openai (default: chat)")
    g.add_argument("--tokenizer", default=d(None), metavar="NAME_OR_PATH",
                   help="the model's tokenizer (a local folder, or a hub id: downloaded when not in the "
                        "local Hugging Face cache), to count tokens when a server sends no per-event usage; "
                        "default: the served model id when it is one")
    g.add_argument("--dtype", default=d("auto"), help="vLLM dtype (default: auto)")
    g.add_argument("--tensor-parallel-size", "-tp", type=positive_int, default=d(1), help="vLLM tensor parallel size")
    g.add_argument("--pipeline-parallel-size", "-pp", type=positive_int, default=d(1),
                   help="vLLM pipeline parallel size")
    g.add_argument("--engine-arg", action="append", default=d([]), metavar="KEY=VALUE",
                   help="extra vLLM engine argument (repeatable), e.g. --engine-arg max_num_seqs=8")
    w = parser.add_argument_group("where the run runs")
    w.add_argument("--provider", default=d(None), metavar="NAME",
                   help="GPU cloud this machine is rented from (runpod, vastai, lambda, vultr, coreweave, ...); "
                        "default: TOKENTOP_PROVIDER, else detected from the provider's variables and files")
    w.add_argument("--price-per-hour", default=d(None), metavar="USD",
                   help="what you pay for this instance, US dollars per hour (default: TOKENTOP_PRICE_PER_HOUR); "
                        "a run using some of its GPUs is costed for that share")


def parse_engine_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--engine-arg {pair!r} must be KEY=VALUE")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = _coerce(value.strip())
    return out


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        engine=args.engine,
        model=args.model,
        endpoint=args.endpoint,
        api=args.api,
        tokenizer=getattr(args, "tokenizer", None),
        dtype=args.dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        extra_args=parse_engine_args(args.engine_arg),
        where=where_options(args),
    )


def where_options(args: argparse.Namespace) -> dict[str, Any]:
    """--provider / --price-per-hour, checked now (and their variables) so bad input is one line, exit 2."""
    from engine.telemetry.environment import LocationError, location

    where = {"provider": getattr(args, "provider", None), "price_per_hour": getattr(args, "price_per_hour", None)}
    try:
        location(env={k: v for k, v in os.environ.items() if k.startswith("TOKENTOP_")}, root="/nonexistent",
                 fqdn="", **where)
    except LocationError as exc:
        raise UsageError(str(exc)) from None
    return where


def resolve_suite(name_or_path: str):
    """'seed' (or another bundled name) or a TOML file."""
    from data.paths import resolve_suite as resolve

    return resolve(name_or_path)


def open_store(args: argparse.Namespace):
    from data.store.database import Store, StoreError

    try:
        return Store(getattr(args, "db", None))
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def start_engine_or_exit_code(session, note, term) -> int | None:
    """Start the session's engine for a headless command. None when it is up; otherwise the exit code,
    the reason printed as one line: bad input 2, the engine failing 1 (with its log), Ctrl-C 130."""
    import time

    from engine.errors import BAD_INPUT, exit_code
    from engine.types import EngineError

    err = term.stderr
    t0 = time.monotonic()
    try:
        session.start_engine(note)
    except EngineError as exc:  # bad settings are said as they are; an engine failure points at its log
        code = exit_code(exc)
        return fail(str(exc) if code == BAD_INPUT else f"{exc} (log: {term.log_path})", code, err)
    except KeyboardInterrupt as exc:
        print("tokentop: interrupted while starting the engine", file=err)
        return exit_code(exc)
    note(f"engine {session.engine_options['engine']}, model {session.describe().get('model_label')}, "
         f"device {session.device}, db {session.store.path} (started in {time.monotonic() - t0:.0f} s)")
    return None
