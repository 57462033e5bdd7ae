"""`tokentop serve` asks for the random token printed in its URL (issue 17): the page and the websocket
refuse a client without it (403, one line) on loopback too, serve one with it, `--no-token` turns it
off and is refused with `--allow-remote`, and the token is never written anywhere tokentop writes.
The real server (textual-serve + aiohttp on loopback) serving the tiny app, or the real app with an
OpenAI engine at a closed port (it starts at once and loads nothing). The browser: test_serve_browser.py."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.test_serve import SERVE_TINY, TINY_APP, _screen_until, _ws_url
from tests.support.serve_support import ServerProcess, descendants

SERVE_TINY_NO_TOKEN = SERVE_TINY.replace("'127.0.0.1', 0)", "'127.0.0.1', 0, require_token=False)")
URL = re.compile(r"http://(?P<host>[^/\s]+)/\?token=(?P<token>[\w-]+)")


@pytest.fixture
def tiny(cli_env):
    server = ServerProcess([sys.executable, "-c", SERVE_TINY, str(TINY_APP)], env=cli_env, cwd=str(ROOT))
    yield server
    server.kill()


async def _get(url: str) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, await response.text()


async def _ws_status(url: str) -> int | None:
    """None when the websocket opens (and shows the app), else the HTTP status that refused it."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url) as ws:
                await _screen_until(ws, b"TINY READY")
                return None
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def _one_line_403(status: int, body: str) -> None:
    assert status == 403
    assert body.count("\n") == 1 and body.startswith("tokentop serve: forbidden") and "token" in body


def test_page_and_websocket_refuse_without_the_token_and_serve_with_it(tiny):
    url = tiny.url()
    match = URL.fullmatch(url)
    assert match, url  # the printed URL carries the token
    host, token = match["host"], match["token"]
    assert len(token) >= 40  # secrets.token_urlsafe(32)
    assert f"then open http://127.0.0.1:{host.split(':')[1]}/?token={token}" in tiny.output

    async def probe() -> None:
        # The page: no token, a wrong one, a truncated one — each 403 with one line, on loopback.
        for bad in (f"http://{host}/", f"http://{host}/?token=wrong", f"http://{host}/?token={token[:-1]}",
                    f"http://{host}/?token="):
            _one_line_403(*await _get(bad))
        status, page = await _get(url)
        assert status == 200 and "textual.js" in page
        import aiohttp

        async with aiohttp.ClientSession() as http:
            ws_url = await _ws_url(http, url)
        assert ws_url == f"ws://{host}/ws/{token}"
        # The websocket: refused without the token (plain /ws, a wrong one), served with it.
        for bad in (f"ws://{host}/ws", f"ws://{host}/ws/wrong", f"ws://{host}/ws?token={token}"):
            assert await _ws_status(bad + ("&" if "?" in bad else "?") + "width=80&height=24") == 403, bad
        assert await _ws_status(ws_url + "?width=80&height=24") is None

    asyncio.run(probe())
    assert "watching" in tiny.output  # only the browser with the token joined
    assert tiny.output.count("a browser joined") == 1


def test_no_token_serves_anyone_on_loopback_with_a_warning(cli_env):
    server = ServerProcess([sys.executable, "-c", SERVE_TINY_NO_TOKEN, str(TINY_APP)], env=cli_env, cwd=str(ROOT))
    try:
        url = server.url()
        assert "token" not in url.split("//", 1)[1]
        server.wait_for_output(r"warning: --no-token: anyone who can reach the port", 10)

        async def probe() -> None:
            status, _ = await _get(url)
            assert status == 200
            assert await _ws_status(url.replace("http://", "ws://").rstrip("/") + "/ws?width=80&height=24") is None

        asyncio.run(probe())
    finally:
        server.kill()


def test_no_token_is_refused_with_allow_remote(cli_env):
    out = subprocess.run([sys.executable, "-m", "tui.cli", "serve", "--no-token", "--allow-remote", "--host", "0.0.0.0"],
                         capture_output=True, text=True, env=cli_env, timeout=60, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("tokentop: error: --no-token and --allow-remote")


def test_the_token_is_never_stored_logged_or_given_to_the_app(cli_env, tmp_path):
    env = {**cli_env, "TOKENTOP_CACHE_DIR": str(tmp_path / "cache"), "TOKENTOP_DATA_DIR": str(tmp_path / "data")}
    server = ServerProcess([sys.executable, "-m", "tui.cli", "serve", "--port", "0", "--db", str(tmp_path / "s.duckdb"),
                            "--engine", "openai", "--endpoint", "http://127.0.0.1:9"], env=env, cwd=str(ROOT))
    try:
        url = server.url(60)
        token = URL.fullmatch(url)["token"]

        async def visit() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(await _ws_url(http, url) + "?width=80&height=24") as ws:
                    await _screen_until(ws, b"F4History", 60)  # the real app (its 80-column top bar), in the "browser"

        asyncio.run(visit())
        app_pids = descendants(server.proc.pid)
        assert app_pids
        for pid in app_pids:  # not in the app's command line nor its environment
            for what in ("cmdline", "environ"):
                try:
                    assert token.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), (pid, what)
                except (FileNotFoundError, ProcessLookupError):
                    pass
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    # Printed once, in the URL lines on serve's own stdout; never in a file tokentop wrote.
    assert server.output.count(token) == 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written), written  # the app's logs are among them
    for path in written:
        assert token.encode() not in path.read_bytes(), path
