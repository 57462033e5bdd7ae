"""`tokentop serve`: the app in a browser (textual-serve), for a room watching a demo.

textual-serve starts one app process per browser connection. tokentop's app owns the engine, so
that would start one engine per browser tab (minutes and gigabytes each on a GPU box) and lose the
running app on every page reload. Instead this server keeps exactly ONE app process: it is started
with the server (so the engine warms up before anyone opens the page), every browser attaches to
it (same screen, same keyboard), a browser that leaves or reloads does not stop it, and it stops
only when the server stops or someone quits the app (`q`); the next browser then starts a fresh one.

Whoever reaches the port can drive the app (start loads, quit it), so the page and its websocket ask
for a random token, as Jupyter does: `secrets.token_urlsafe(32)` made at start, printed in the URL
(`/?token=...`), kept in this process's memory only (never stored, never in a log or the app's
environment). The page hands it on in its websocket URL (`/ws/<token>`); a request without it gets
403 and one line, on loopback too. `--no-token` turns it off, and is refused with `--allow-remote`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys

from tui.cli.common import UsageError, add_db_option, add_engine_options, engine_kwargs, fail

DEFAULT_PORT = 8000



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the app to web browsers (textual-serve), for demos",
        description="Serve the app to web browsers, for a room watching a demo. Every browser shares "
        "one app and one engine. Listens on loopback only unless --allow-remote: reach it from your "
        "laptop with an SSH port forward (ssh -L 8000:127.0.0.1:8000 user@box).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback: anyone who reaches it with the token can drive "
                        "the app (no TLS: the token crosses the network in clear)")
    p.add_argument("--no-token", action="store_true",
                   help="serve without the URL's random token: anyone who reaches the port (any user of this "
                        "machine) can drive the app; refused with --allow-remote")
    add_db_option(p)
    add_engine_options(p, suppress=True)
    p.set_defaults(func=run_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (got {value})")
    return value


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address (a name is resolved)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        raise UsageError(f"--host {host!r} is not an address or a name this machine can resolve") from None
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def app_command(args: argparse.Namespace) -> list[str]:
    """The `tokentop` command line (same interpreter) that runs the app with serve's options."""
    argv = [sys.executable, "-m", "tui.cli"]
    if getattr(args, "db", None):
        argv += ["--db", os.path.abspath(args.db)]
    argv += ["--engine", args.engine, "--api", args.api, "--dtype", args.dtype,
             "--tensor-parallel-size", str(args.tensor_parallel_size),
             "--pipeline-parallel-size", str(args.pipeline_parallel_size)]
    if args.model:
        argv += ["--model", args.model]
    if args.endpoint:
        argv += ["--endpoint", args.endpoint]
    if getattr(args, "tokenizer", None):
        argv += ["--tokenizer", args.tokenizer]
    for pair in args.engine_arg or []:
        argv += ["--engine-arg", pair]
    return argv


def run_serve(args: argparse.Namespace) -> int:
    from engine.errors import exit_code
    from engine.types import BadRequestError
    from tui.app_main import validate_engine_options
    from tui.cli.common import open_store

    try:
        validate_engine_options(engine_kwargs(args))
        open_store(args).close()  # a bad or unwritable --db is reported here, not in the browser
        if args.no_token and args.allow_remote:
            raise UsageError("--no-token and --allow-remote together would let anyone on the network drive "
                             "the app: drop --no-token (the printed URL carries the token)")
        if not args.allow_remote and not is_loopback(args.host):
            raise UsageError(
                f"--host {args.host} is reachable from other machines and the app has no TLS; "
                "use an SSH port forward instead (see `tokentop serve --help`), or add --allow-remote"
            )
    except (UsageError, BadRequestError) as exc:
        return fail(str(exc), exit_code(exc))

    from tui.cli.serve_server import CannotListen, SharedAppServer  # aiohttp is slow to import: only now

    server = SharedAppServer(app_command(args), host=args.host, port=args.port, require_token=not args.no_token)
    try:
        return asyncio.run(server.run())
    except CannotListen as exc:  # the port is taken, or the address is not this machine's
        return fail(f"cannot listen on {args.host}:{args.port}: {exc}; pick another --port", exit_code(exc))
