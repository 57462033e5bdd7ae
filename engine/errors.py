"""The one root of tokentop's failures, and the one mapping from a failure to an exit status.

Every exception class tokentop defines derives from `TokentopError` (engine/ is the bottom layer, so
every other package may import it); a class keeps its builtin base as well where callers catch that
(`SloError(TokentopError, ValueError)`, `ProtocolError(TokentopError, ConnectionError)`). Each class says
its exit status as a class attribute: 2 for bad input (a file, an option, a server's id the user can
fix), 1 for a runtime failure (the engine, a remote that refuses). `exit_code(exc)` is the one place
that turns a failure into the process's status; `engine.terminal_text.one_line` the one place that turns
it into one line for a terminal.

The shape follows Harlequin's single `HarlequinError` root (harlequin/exception.py), with the exit
status on the class as click's `ClickException.exit_code` has it (click/exceptions.py).
"""

from __future__ import annotations

BAD_INPUT = 2  # what the user gave cannot be used: a one-line message says what to do instead
FAILED = 1  # the work failed (engine, network, disk): a one-line message says what happened
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class TokentopError(Exception):
    """The root of every exception tokentop defines. `exit_code` (int, a class attribute; an instance
    may set its own, as data.travel.remote.RemoteError does) is the process's exit status when the
    failure ends a command; ``str(exc)`` is the message, one line for the errors said to a user."""

    exit_code: int = FAILED


def exit_code(exc: BaseException) -> int:
    """The exit status for `exc`: its `exit_code` for a TokentopError, 130 for KeyboardInterrupt,
    1 for anything else (an unexpected error)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, TokentopError):
        return int(exc.exit_code)
    return FAILED
