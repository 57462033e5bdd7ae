"""Small host apps for Pilot tests: one screen of tokentop on a bare Textual App, and the Load screen
started against a loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from textual.app import App


class LoadHost(App):
    """An App that opens tui.screens.load.LoadScreen on `session` (a data.jobs.session.Session) at mount."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def on_mount(self):
        from tui.screens.load import LoadScreen

        self.push_screen(LoadScreen(self.session))


@asynccontextmanager
async def load_screen_started(server, store, fields: dict[str, str]) -> AsyncIterator[tuple]:
    """The Load screen at 80x24 on a LoadHost whose data.jobs.session.Session drives `server` (an
    OpenAI-compatible server on loopback: its `url`; engine "openai", no model) and records to `store`:
    each input `#load-<key>` set to its value, then the sweep started (screen.action_start()). Yields
    (app, pilot, screen); the session is shut down after."""
    from textual.widgets import Input

    from data.jobs.session import Session

    session = Session(store, dict(engine="openai", endpoint=server.url, model=None))
    session.start_engine()
    try:
        app = LoadHost(session)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            for key, value in fields.items():
                screen.query_one(f"#load-{key}", Input).value = value
            screen.action_start()
            yield app, pilot, screen
    finally:
        session.shutdown()
