"""One line at the top of every screen: engine, model, device, database — or start-up progress."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CLASSES = "status-bar"

    def on_mount(self) -> None:
        self.refresh_status()
        self.set_interval(0.5, self.refresh_status)

    def refresh_status(self) -> None:
        describe = getattr(self.app, "status_parts", None)
        if describe is None:
            return
        state, engine, db = describe()
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" tokentop ", style="bold reverse")
        current = getattr(self.app, "current_mode", "")
        for key, mode, label in (("1", "live", "Live"), ("2", "suite", "Suite"), ("3", "history", "History")):
            line.append(" ")
            line.append(key, style="bold")
            line.append(f" {label}", style="bold underline" if mode == current else "dim")
        line.append("  │ ", style="dim")
        line.append(engine, style="bold" if state == "ready" else ("italic" if state == "starting" else "bold red"))
        line.append("  │  db ", style="dim")
        line.append(db)
        self.update(line)
