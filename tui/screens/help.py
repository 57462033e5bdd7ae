"""Help (? or F1): every key of the screen underneath and what it does, and the keys that work
everywhere. Generated from the bindings themselves, so it cannot drift from what the keys do."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

# (title, [(keys, what it does)])
SCROLL_KEYS = "↑ / ↓ / PgUp / PgDn / Home / End"
KEYS_MAX_WIDTH = 12  # a screen's own keys column: SCROLL_KEYS folds onto lines this wide
Section = tuple[str, list[tuple[str, str]]]


def binding_rows(app: Any, bindings: list[Any], skip_actions: set[str] = frozenset()) -> list[tuple[str, str]]:
    """One row per action: its keys joined ("F2 / 1"), its description and tooltip."""
    rows: dict[str, tuple[list[str], str]] = {}
    for binding in bindings:
        if not isinstance(binding, Binding) or not binding.description or binding.action in skip_actions:
            continue
        for key in binding.key.split(","):
            display = app.get_key_display(Binding(key.strip(), binding.action, key_display=binding.key_display))
            keys, text = rows.setdefault(binding.action, ([], binding.tooltip or binding.description))
            if display not in keys:
                keys.append(display)
    return [(" / ".join(keys), text) for keys, text in rows.values()]


def screen_title(screen: Screen) -> str:
    """The screen's name as a user reads it ("Run detail"), never a class name ("RunDetail")."""
    import re

    title = getattr(screen, "HELP_TITLE", None)
    if title:
        return title
    words = re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", type(screen).__name__.removesuffix("Screen"))
    return " ".join(words).capitalize() or "this screen"


class HelpScreen(ModalScreen[None]):
    HELP_TITLE = "Help"
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help-box { width: 78; max-width: 100%; height: auto; max-height: 100%;
                border: round $accent; background: $surface; padding: 0 1; }
    #help-title { height: 1; text-style: bold; }
    #help-scroll { height: auto; scrollbar-size-vertical: 1; }
    #help-columns { height: auto; }
    #help-columns > Static { width: 1fr; height: auto; }
    #help-hint { height: auto; color: $text-muted; }
    """
    # A modal screen does not see the app's bindings: the screen keys are repeated here so they
    # work from Help too (they close it on the way).
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Close", id="help.close"),
        Binding("q,f1,question_mark", "app.pop_screen", "Close", id="help.close_keys", show=False),
        *[Binding(key, f"app.{action}", show=False, id=f"help.{action}")
          for key, action in (("f2", "show_live"), ("f3", "show_suite"), ("f4", "show_history"),
                              ("f5", "prices"), ("f6", "load"), ("f7", "compare"), ("f10", "quit_app"))],
    ]

    def __init__(self, title: str, sections: list[Section]) -> None:
        super().__init__(id="help")
        self.title_text = title
        self.sections = sections

    @classmethod
    def for_screen(cls, app: Any, screen: Screen) -> "HelpScreen":
        own = binding_rows(app, list(getattr(type(screen), "BINDINGS", [])))
        scroll = getattr(type(screen), "HELP_SCROLL", None)  # a screen whose content can exceed 80x24
        if scroll:
            own.append((SCROLL_KEYS, scroll))
        everywhere = binding_rows(app, list(getattr(type(app), "BINDINGS", [])))
        palette = getattr(app, "COMMAND_PALETTE_BINDING", None)
        if palette:
            everywhere.append((app.get_key_display(Binding(palette, "command_palette")),
                               "command palette: every screen and action by name"))
        return cls(screen_title(screen), [(f"{screen_title(screen)} keys", own or [("", "no keys of its own")]),
                                          ("everywhere", everywhere)])

    def compose(self) -> ComposeResult:
        # The keys scroll when they do not fit (80x24 and smaller): nothing is cut off at the bottom.
        with Vertical(id="help-box"):
            yield Static(Text(f"Help — {self.title_text}"), id="help-title")
            with VerticalScroll(id="help-scroll"):
                with Horizontal(id="help-columns"):
                    for n, (title, rows) in enumerate(self.sections):
                        # The screen's own keys: the scroll keys' long list folds at its spaces
                        # instead of taking the descriptions' width (80x24).
                        yield Static(self._table(title, rows, fold_keys=n == 0), classes="help-section")
            yield Static(
                Text("↑↓ PgUp PgDn scroll · Esc closes · F1 opens this anywhere (? too, outside a text field)"),
                id="help-hint")

    def on_mount(self) -> None:
        self._fit()
        self.query_one("#help-scroll", VerticalScroll).focus()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        # Title, hint and border take 4-5 rows; the keys get the rest and scroll inside it.
        self.query_one("#help-scroll", VerticalScroll).styles.max_height = max(3, self.app.size.height - 6)

    @staticmethod
    def _table(title: str, rows: list[tuple[str, str]], fold_keys: bool = False) -> Table:
        table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None,
                      padding=(0, 1, 0, 0), expand=True)
        if fold_keys:
            table.add_column(style="bold", max_width=KEYS_MAX_WIDTH)
        else:
            table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1, overflow="fold")
        for keys, text in rows:
            table.add_row(Text(keys), Text(text))
        return table

    def rows(self) -> list[tuple[str, str]]:
        """Every (keys, description) shown, for tests."""
        return [row for _title, rows in self.sections for row in rows]
