"""How the CLI's commands meet signals: the first Ctrl-C, SIGTERM or SIGHUP stops a run cleanly (what finished is
stored), a second interrupts at once; while the engine starts, SIGTERM and SIGHUP interrupt like Ctrl-C; and a
finished command leaves the process at once (`exit_now`), without the interpreter's teardown."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def stop_on_signals(stop: threading.Event) -> threading.Event:
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


def sigterm_as_interrupt() -> None:
    """While the engine starts, SIGTERM and SIGHUP interrupt like Ctrl-C (nothing to store yet)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        for sig in STOP_SIGNALS[1:]:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread (tests calling main() from a worker)
        pass


def exit_now(code: int) -> None:
    """Run the exit handlers (the store writer's last flush, pushes in flight, vLLM's temp folder), flush
    what is printed and leave: every run is stored and the engine's processes are gone, so nothing is
    left for the interpreter's teardown to do."""
    try:
        atexit._run_exitfuncs()
    except Exception:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
