"""Driving the installed `tokentop` in tmux as a person would, for the end-to-end tests: start a detached
session, send keys, read the screen, wait for what it shows (written once here instead of a copy in each
tmux test file, issue 22)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.wait import wait_until

# The variables a session's command gets from the test's environment (tmux does not pass the caller's on).
PASSED_ON = ("TOKENTOP_DATA_DIR", "TOKENTOP_CACHE_DIR", "PATH", "HOME", "TERM", "PYTHONPATH")


def tmux(*args: str, check: bool = True) -> str:
    """Run `tmux ARGS...` and return its stdout; CalledProcessError on a failure when `check`."""
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check).stdout


def new_session(name: str, command: str, env: Mapping[str, str], width: int = 100, height: int = 30) -> None:
    """A detached tmux session `name` of width x height cells running the shell line `command`, with env's
    PASSED_ON variables set."""
    passed = [a for k, v in env.items() if k in PASSED_ON for a in ("-e", f"{k}={v}")]
    tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), *passed, command)


def capture(name: str) -> str:
    """The session's screen now, as text (one line a row)."""
    return tmux("capture-pane", "-p", "-t", name, check=False)


def exited(rc_file: Path) -> bool:
    """The shell wrote its exit line (it creates the file before writing it)."""
    return rc_file.exists() and "EXIT=" in rc_file.read_text()


def wait_screen(name: str, predicate: Callable[[str], object], timeout: float, what: str) -> str:
    """Read the screen every 0.3 s until predicate(screen) is true and return that screen; after `timeout`
    seconds AssertionError ("timed out waiting for <what>") with the last screen."""
    last = ""

    def shows() -> bool:
        nonlocal last
        last = capture(name)
        return bool(predicate(last))

    if not wait_until(shows, timeout, step=0.3, quiet=True):
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{last}")
    return last
