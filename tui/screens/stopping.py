"""What the app shows while it quits: which run it is stopping and storing, then the engine going."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class StoppingScreen(ModalScreen):
    DEFAULT_CSS = """
    StoppingScreen { align: center middle; }
    #stopping-box { width: 60; height: auto; border: round $warning; padding: 1 2; background: $panel; }
    """
    BINDINGS = []  # every key is swallowed: quitting is already under way

    def __init__(self, text: str) -> None:
        super().__init__(id="stopping")
        self.text = text
        self.said = [text]  # everything it said, in order

    def compose(self) -> ComposeResult:
        with Vertical(id="stopping-box"):
            yield Static(Text(self.text), id="stopping-text")

    def say(self, text: str) -> None:
        self.text = text
        self.said.append(text)
        self.query_one("#stopping-text", Static).update(Text(text))
