"""`tokentop serve` without an engine: options, refusals, one shared app process, clean stops.

The server is the real one (textual-serve + aiohttp on loopback) serving a small Textual app that
starts a child it never stops; browsers are stood in for by websocket clients speaking textual.js's
protocol. The real app in a real browser is tests/e2e/test_serve_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.support.serve_support import ServerProcess, alive, descendants, session_members, session_of, wait_until_gone
from tui.cli import build_parser
from tui.cli.commands.serve import app_command, is_loopback

TINY_APP = ROOT / "tests" / "fixtures" / "tiny_served_app.py"
SERVE_TINY = (
    "import asyncio, sys\n"
    "from tui.cli.serve_server import SharedAppServer as server\n"
    "sys.exit(asyncio.run(server([sys.executable, sys.argv[1]], '127.0.0.1', 0).run()))\n"
)
ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]")


def test_serve_defaults_to_loopback_port_8000():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.allow_remote) == ("127.0.0.1", 8000, False)


def test_engine_and_database_options_reach_the_served_app(tmp_path):
    args = build_parser().parse_args([
        "serve", "--port", "9000", "--db", str(tmp_path / "x.duckdb"), "--engine", "openai",
        "--endpoint", "http://127.0.0.1:1234", "--api", "completions", "--model", "m1", "--dtype", "float32",
        "-tp", "2", "-pp", "3", "--engine-arg", "max_num_seqs=8", "--engine-arg", "seed=1",
    ])
    argv = app_command(args)
    assert argv[:3] == [sys.executable, "-m", "tui.cli"]
    reparsed = build_parser().parse_args(argv[3:])
    assert reparsed.command is None  # the app itself, not another serve
    assert (reparsed.db, reparsed.engine, reparsed.endpoint, reparsed.api, reparsed.model, reparsed.dtype) == (
        str(tmp_path / "x.duckdb"), "openai", "http://127.0.0.1:1234", "completions", "m1", "float32")
    assert (reparsed.tensor_parallel_size, reparsed.pipeline_parallel_size) == (2, 3)
    assert reparsed.engine_arg == ["max_num_seqs=8", "seed=1"]


def test_options_before_the_subcommand_reach_the_app_too(tmp_path):
    argv = app_command(build_parser().parse_args(["--db", str(tmp_path / "y.duckdb"), "--model", "m2", "serve"]))
    reparsed = build_parser().parse_args(argv[3:])
    assert (reparsed.db, reparsed.model) == (str(tmp_path / "y.duckdb"), "m2")


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False),
])
def test_loopback_hosts(host, expected):
    assert is_loopback(host) is expected


def _tokentop(*args: str, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_a_non_loopback_host_needs_allow_remote(cli_env):
    out = _tokentop("serve", "--host", "0.0.0.0", env=cli_env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("tokentop: error: --host 0.0.0.0")
    assert "--allow-remote" in out.stderr and "SSH" in out.stderr


def test_bad_engine_options_are_refused_before_serving(cli_env, tmp_path):
    out = _tokentop("serve", "--model", str(tmp_path / "no-such-model"), env=cli_env)
    assert out.returncode == 2 and out.stderr.startswith("tokentop: error:") and out.stderr.count("\n") == 1
    out = _tokentop("serve", "--engine", "openai", env=cli_env)
    assert out.returncode == 2 and "--endpoint" in out.stderr


def test_a_port_in_use_is_one_line_and_exit_2(cli_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _tokentop("serve", "--port", str(port), env=cli_env)
    assert out.returncode == 2
    assert out.stderr.startswith(f"tokentop: error: cannot listen on 127.0.0.1:{port}") and "--port" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


# --- the shared app process -------------------------------------------------------------------------


async def _screen_until(ws, needle: bytes, timeout: float = 20) -> bytes:
    """Read the app's output on one websocket until `needle` shows (escape sequences removed)."""
    import aiohttp

    seen = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            message = await ws.receive(timeout=max(0.1, end - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.BINARY:
            seen += message.data
            if needle in ESCAPES.sub(b"", seen):
                return seen
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            break
    raise AssertionError(f"{needle!r} never showed; the browser got {ESCAPES.sub(b'', seen)[-400:]!r}")


def _type(text: str) -> str:
    return json.dumps(["stdin", text])


async def _ws_url(http, url: str) -> str:
    """The websocket URL the page gives a browser (it carries the token), as textual.js uses it."""
    page = await (await http.get(url)).text()
    return re.search(r'data-session-websocket-url="([^"]+)"', page).group(1)


@pytest.fixture
def tiny_server(cli_env):
    server = ServerProcess([sys.executable, "-c", SERVE_TINY, str(TINY_APP)], env=cli_env, cwd=str(ROOT))
    yield server
    server.kill()


def _app_processes(server: ServerProcess) -> tuple[set[int], set[int]]:
    """The served app's processes (app, its child) and their session ids."""
    pids = descendants(server.proc.pid)
    return pids, {sid for pid in pids if (sid := session_of(pid)) is not None}


def test_every_browser_shares_one_app_that_outlives_a_reload(tiny_server):
    import aiohttp

    url = tiny_server.url()
    assert "ssh -L" in tiny_server.output and "loopback only" in tiny_server.output

    async def browsers() -> None:
        async with aiohttp.ClientSession() as http:
            ws_url = await _ws_url(http, url)
            host, token = re.fullmatch(r"http://([^/]+)/\?token=(\S+)", url).groups()
            assert ws_url == f"ws://{host}/ws/{token}"
            ws_url += "?width=80&height=24"  # as textual.js appends it
            async with http.ws_connect(ws_url) as first:
                await _screen_until(first, b"engine=")
                processes.append(_app_processes(tiny_server)[0])
                await first.send_str(_type("hello"))
                await first.send_str(_type("\r"))
                await _screen_until(first, b"GOT hello")
                async with http.ws_connect(ws_url) as second:
                    # the newcomer gets the whole screen as it is now, and a word that it is shared
                    await _screen_until(second, b"GOT hello")
                    await _screen_until(second, b"2 browsers share this app")
                    await second.send_str(_type("from two"))
                    await second.send_str(_type("\r"))
                    await _screen_until(first, b"GOT from two")
            # everyone left: the app keeps running; a reload finds it as it was
            async with http.ws_connect(ws_url) as reloaded:
                await _screen_until(reloaded, b"GOT from two")
                processes.append(_app_processes(tiny_server)[0])

    processes: list[set[int]] = []
    asyncio.run(browsers())
    before, after = processes
    assert len(before) == 2 and after == before  # one app and its child, never a second app
    assert "2 watching" in tiny_server.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "sigterm", "sighup"])
def test_stopping_serve_leaves_no_process(tiny_server, sig):
    import aiohttp

    url = tiny_server.url()

    async def watch() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(await _ws_url(http, url)) as ws:
                await _screen_until(ws, b"engine=")  # the app has started its child

    asyncio.run(watch())
    pids, sids = _app_processes(tiny_server)
    assert len(pids) == 2
    assert tiny_server.stop(sig) == 0
    assert wait_until_gone(pids, 10) == set()
    assert session_members(sids) == set()
    assert "stopped" in tiny_server.output


def test_quitting_the_app_closes_the_browsers_and_the_next_one_starts_it_again(tiny_server):
    import aiohttp

    url = tiny_server.url()

    async def quit_and_return() -> None:
        async with aiohttp.ClientSession() as http:
            ws_url = await _ws_url(http, url)
            async with http.ws_connect(ws_url) as ws:
                await _screen_until(ws, b"engine=")
                first, _ = _app_processes(tiny_server)
                await ws.send_str(_type("\x11"))  # Ctrl+Q
                message = await ws.receive(timeout=20)
                while message.type == aiohttp.WSMsgType.BINARY:
                    message = await ws.receive(timeout=20)
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert wait_until_gone(first, 15) == set()  # its child too
            async with http.ws_connect(ws_url) as ws:
                await _screen_until(ws, b"engine=")
            assert alive(_app_processes(tiny_server)[0]) and not (_app_processes(tiny_server)[0] & first)

    asyncio.run(quit_and_return())
    tiny_server.wait_for_output(r"the app exited", 5)


def test_allow_remote_serves_on_every_address_with_a_warning(cli_env, tmp_path):
    # --engine openai at a closed port: the app starts and stops at once, no engine is loaded
    server = ServerProcess([sys.executable, "-m", "tui.cli", "serve", "--host", "0.0.0.0", "--allow-remote",
                            "--port", "0", "--db", str(tmp_path / "r.duckdb"), "--engine", "openai",
                            "--endpoint", "http://127.0.0.1:9"], env=cli_env, cwd=str(ROOT))
    try:
        assert server.url().startswith("http://0.0.0.0:")
        server.wait_for_output(r"warning: listening on 0\.0\.0\.0: anyone who can reach port \d+ and has the URL "
                               r"can drive the app", 10)
        assert re.search(r"serving the app on http://0\.0\.0\.0:\d+/\?token=[\w-]{40,}", server.output)
        assert "ssh -L" not in server.output
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()


def test_the_app_still_refuses_pipes_unless_a_textual_driver_is_given(cli_env, tmp_path):
    env = {k: v for k, v in cli_env.items() if k != "TEXTUAL_DRIVER"}
    out = subprocess.run([sys.executable, "-m", "tui.cli", "--db", str(tmp_path / "p.duckdb")], capture_output=True,
                         text=True, env=env, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "the app needs a terminal" in out.stderr
