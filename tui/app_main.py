"""`tokentop` with no subcommand: check the options, open the store, run the app, stop the engine."""

from __future__ import annotations

import argparse
import os
import sys

from tui.cli.common import UsageError, engine_kwargs, fail, open_store


def validate_engine_options(options: dict) -> None:
    """Cheap checks before the first frame, so bad input is one line and exit 2 (the engine
    itself is started later, in a worker): engine.engines.factory.check_engine_options, the same
    rules make_engine applies."""
    from engine.engines.factory import check_engine_options

    check_engine_options(options)


def run_app(args: argparse.Namespace) -> int:
    from engine.errors import exit_code
    from engine.types import BadRequestError

    try:
        options = engine_kwargs(args)
        validate_engine_options(options)
        store = open_store(args)
    except (UsageError, BadRequestError) as exc:
        return fail(str(exc), exit_code(exc))
    # Under `tokentop serve` a Textual driver given by the environment talks to the browser over pipes.
    if not sys.stdout.isatty() and not sys.stdin.isatty() and not os.environ.get("TEXTUAL_DRIVER"):
        store.close()
        return fail("the app needs a terminal; for scripts use `tokentop bench` (see --help)", 2)

    from engine.engines.runtime import QuietNativeOutput
    from tui.app import TokentopApp

    with QuietNativeOutput("app-output.log") as term:
        _stacks_on_sigusr1(term.log_path)
        app = TokentopApp(store=store, engine_options=options, handle_signals=True)
        try:
            app.run()
        finally:
            # However the app ended (a key, a signal, a crash): what runs is stored, the engine goes.
            _ignore_hangups()
            app.shutdown_engine()
            store.close()
        code = app.return_code or 0
        if code and app.engine_error:  # printed after the screen is restored
            fail(app.engine_error, code, term.stderr)
    return code


def _ignore_hangups() -> None:
    """Once the app has exited its terminal may be gone (SSH drop): finish storing regardless."""
    import signal

    for name in ("SIGHUP", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_IGN)
            except ValueError:
                pass


def _stacks_on_sigusr1(log_path) -> None:
    """`kill -USR1 PID` writes every thread's stack to the app's log: a hang can be diagnosed."""
    import faulthandler
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, file=open(log_path, "a"), all_threads=True)
    except (AttributeError, OSError, ValueError):
        pass
