"""Small host apps for Pilot tests: one screen of tokentop on a bare Textual App."""

from __future__ import annotations

from textual.app import App


class LoadHost(App):
    """An App that opens tui.screens.load.LoadScreen on `session` (a data.jobs.session.Session) at mount."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def on_mount(self):
        from tui.screens.load import LoadScreen

        self.push_screen(LoadScreen(self.session))
