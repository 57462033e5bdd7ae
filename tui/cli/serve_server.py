"""`tokentop serve`'s server: textual-serve's Server and AppService made to keep ONE app process that every
browser shares, with the URL's token checked (see tui.cli.commands.serve for why). This module imports aiohttp,
jinja2 and textual-serve, which are slow to import: only `tokentop serve` imports it, when it starts serving."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import sys
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

from engine.errors import TokentopError
from tui.cli.commands.serve import is_loopback

# How long the app gets to stop its run, store it and shut its engine down before it is killed.
QUIT_GRACE_S = 30.0
KILL_GRACE_S = 5.0


class CannotListen(TokentopError):
    """The address cannot be listened on (taken, or not this machine's): exit 2."""

    exit_code = 2  # bad input (engine.errors)


class SharedApp(AppService):
    """The one app process: its own process group (so stopping it takes its engine too),
    its output copied to every browser watching."""

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        super().__init__(shlex.join(argv), **kwargs)
        self.argv = argv

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        env = super()._build_environment(width, height)
        env["TEXTUAL_DRIVER"] = "tui.serve_driver:SharedWebDriver"
        return env

    async def _open_app_process(self, width: int = 80, height: int = 24):
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width, height),
            start_new_session=True,  # Ctrl+C reaches serve only; serve stops the app in order
            preexec_fn=_die_with_parent,
        )
        self._stdin = process.stdin
        return process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def wait_exit(self) -> int:
        process = self._process
        assert process is not None
        await _poll(lambda: process.returncode is not None, float("inf"))
        return process.returncode

    async def stop(self) -> None:
        """Ask the app to quit (it stops its run, stores it, shuts the engine down); kill the
        whole process group if it has not finished in time, and whatever it left behind."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            await self.send_meta({"type": "quit"})
            if not await _poll(lambda: process.returncode is not None, QUIT_GRACE_S):
                print(f"tokentop serve: the app did not quit within {QUIT_GRACE_S:.0f} s; killing it",
                      file=sys.stderr, flush=True)
        await _kill_group(process)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

class SharedAppServer(Server):
    """require_token: the page and the websocket need the random token printed in the URL."""

    def __init__(self, argv: list[str], host: str, port: int, *, require_token: bool = True) -> None:
        super().__init__(shlex.join(argv), host=host, port=port, title="tokentop")
        self.argv = argv
        # In memory only: printed once in the URL, never stored, logged or passed to the app.
        self._token: str | None = secrets.token_urlsafe(32) if require_token else None
        self.app: SharedApp | None = None
        self.viewers: set[web.WebSocketResponse] = set()
        self._size = (80, 24)
        self._lock = asyncio.Lock()
        self._stopping = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(await self._make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise CannotListen(exc.strerror or str(exc)) from None
        try:
            self._announce(_bound_port(site) or self.port)
            async with self._lock:
                await self._start_app()
            await stop.wait()
        finally:
            self._stopping = True
            print("tokentop serve: stopping: the app stores its run and shuts its engine down…", flush=True)
            async with self._lock:
                if self.app is not None:
                    await self.app.stop()
            for ws in list(self.viewers):
                await ws.close()
            await runner.cleanup()
        print("tokentop serve: stopped", flush=True)
        return 0

    def _announce(self, port: int) -> None:
        from tui.tables import say_line

        def say(text: str, file=None) -> None:  # on a terminal, wrapped at spaces to its width: a URL
            say_line(file or sys.stdout, text)  # goes whole onto a line of its own

        query = f"/?token={self._token}" if self._token else ""
        url = f"http://{_url_host(self.host)}:{port}{query}"
        say(f"tokentop serve: serving the app on {url}")
        say(f"  app: {shlex.join(['tokentop', *self.argv[3:]])}")
        if is_loopback(self.host):
            say("  loopback only. From your laptop, forward the port over SSH:")
            say(f"    ssh -L {port}:127.0.0.1:{port} user@this-box")
            say(f"  then open http://127.0.0.1:{port}{query}")
        else:
            say(f"  open http://<this machine's address>:{port}{query} from another machine")
            say(f"tokentop serve: warning: listening on {self.host}: anyone who can reach port {port} "
                "and has the URL can drive the app (no TLS: the token crosses the network in clear)",
                file=sys.stderr)
        if self._token:
            say("  the URL's token is the password: share it only with who may drive the app")
        else:
            say("tokentop serve: warning: --no-token: anyone who can reach the port (any user of this "
                "machine) can drive the app", file=sys.stderr)
        say("  every browser shares one app and one engine (it is loading now). Ctrl+C stops.")

    async def _make_app(self) -> web.Application:
        """textual-serve's routes, less its file downloads (tokentop delivers none), with the token
        checked on the page and the websocket; the static assets (textual.js, fonts) are public."""
        app = web.Application()
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.get("/ws/{token}", self.handle_websocket, name="websocket_token"),
            web.static("/static", self.statics_path, show_index=False, name="static"),
        ])
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    def _refused(self, given: str | None) -> web.Response | None:
        """403 and one line unless `given` is the token (compared in constant time)."""
        if self._token is None:
            return None
        if given and secrets.compare_digest(given.encode(), self._token.encode()):
            return None
        return web.Response(status=403, text="tokentop serve: forbidden: open the URL serve printed, "
                                             "with its ?token=\n")

    async def on_startup(self, app: web.Application) -> None:
        pass  # textual-serve prints a logo here; run() says what matters instead

    async def _start_app(self) -> None:
        width, height = self._size
        self.app = SharedApp(
            self.argv,
            write_bytes=self._broadcast_bytes,
            write_str=self._broadcast_str,
            close=self._on_app_exit,
            download_manager=self.download_manager,
        )
        await self.app.start(width, height)
        asyncio.create_task(self._watch(self.app))

    async def _watch(self, app: SharedApp) -> None:
        code = await app.wait_exit()
        if not self._stopping:
            await _kill_group(app._process)  # anything the app left behind
            print(f"tokentop serve: the app exited (code {code}); the next browser starts it again",
                  flush=True)
            await self._on_app_exit()

    async def _broadcast_bytes(self, data: bytes) -> None:
        for ws in list(self.viewers):
            try:
                await ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                self.viewers.discard(ws)

    async def _broadcast_str(self, data: str) -> None:
        for ws in list(self.viewers):
            try:
                await ws.send_str(data)
            except (ConnectionError, RuntimeError):
                self.viewers.discard(ws)

    async def _on_app_exit(self) -> None:
        for ws in list(self.viewers):
            await ws.close()
        self.viewers.clear()

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request.query.get("token"))
        if refused is not None:
            return refused
        # URLs from the Host the browser used, so a port forward to any local port works.
        base = f"{request.scheme}://{request.host}"
        ws_scheme = "wss" if request.scheme == "https" else "ws"
        # textual.js appends "?width=..&height=.." to this URL, so the token goes in its path.
        path = f"/ws/{self._token}" if self._token else "/ws"
        response = aiohttp_jinja2.render_template("app_index.html", request, {
            "font_size": _to_int(request.query.get("fontsize"), 16),
            "app_websocket_url": f"{ws_scheme}://{request.host}{path}",
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": "tokentop"},
        })
        # The page carries the token: never cached, never sent on as a Referer to anywhere else.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request.match_info.get("token"))
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(heartbeat=15)
        await ws.prepare(request)
        if self._stopping:
            await ws.close()
            return ws
        size = (_to_int(request.query.get("width"), 80), _to_int(request.query.get("height"), 24))
        async with self._lock:
            self._size = size
            if self.app is None or not self.app.running:
                await self._start_app()
            self.viewers.add(ws)
            print(f"tokentop serve: a browser joined from {request.remote} "
                  f"({len(self.viewers)} watching)", flush=True)
            app = self.app
            await app.set_terminal_size(*size)
            await app.send_meta({"type": "repaint", "viewers": len(self.viewers)})
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    envelope = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(envelope, list) and envelope:
                    await self._on_browser_message(app, ws, envelope)
        finally:
            self.viewers.discard(ws)
            if not self._stopping and app.running:
                print(f"tokentop serve: a browser left ({len(self.viewers)} watching; the app keeps running)",
                      flush=True)
        return ws

    async def _on_browser_message(self, app: SharedApp, ws: web.WebSocketResponse, envelope: list) -> None:
        kind = envelope[0]
        if not app.running:
            return
        if kind == "stdin":
            await app.send_bytes(envelope[1].encode("utf-8"))
        elif kind == "resize":
            # One screen for everyone: the browser that last joined or resized sets its size.
            size = envelope[1]
            self._size = (_to_int(size.get("width"), 80), _to_int(size.get("height"), 24))
            await app.set_terminal_size(*self._size)
        elif kind == "ping":
            await ws.send_json(["pong", envelope[1]])
        elif kind == "focus":
            await app.focus()
        elif kind == "blur" and len(self.viewers) == 1:
            await app.blur()  # with several browsers, one looking away does not blur the app


async def _kill_group(process) -> None:
    """SIGTERM, then SIGKILL, whatever is left in the app's process group (vLLM's engine core runs
    there too, and holds the app's pipes open while it lives)."""
    pgid = process.pid  # the app leads its own session and group
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        await _poll(lambda: not _group_alive(pgid), KILL_GRACE_S)
        if not _group_alive(pgid):
            return


async def _poll(done, timeout: float) -> bool:
    """Wait for done() (checked every 0.1 s); asyncio's Process.wait() also waits for the pipes,
    which a leftover grandchild can hold open for ever."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not done():
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.1)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _die_with_parent() -> None:
    """In the app child before exec: SIGTERM it if serve itself is killed (Linux)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def _bound_port(site) -> int | None:
    server = getattr(site, "_server", None)
    for sock in getattr(server, "sockets", None) or []:
        return sock.getsockname()[1]
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _to_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
