"""The Prices screen: current GPU offers by GPU, each provider's status (ok / stale / failed, source, age).

All work happens in workers that post typed messages; the screen only displays. Provider text is
untrusted: every cell is a plain ``Text``, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from data.store.prices import PriceBoard, age_text, price_board, refresh_async, refresh_summary, source_age
from engine.terminal_text import one_line, safe_display
from pricing.gpus import gpu_label
from pricing.models import provider_label
from tui.widgets.paged_table import PagedTable
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

STATE_STYLE = {"ok": "green", "stale": "yellow", "failed": "bold red"}


class PricesScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Prices"  # Help's title for this screen
    CSS_PATH = "prices.tcss"
    STATUS_KEY = "prices"  # underlined in the status bar
    BINDINGS = [
        Binding("r", "refresh_prices", "Refresh", id="prices.refresh"),
        Binding("v", "columns", "Columns", id="prices.columns",
                tooltip="the tables' other columns (reason, detail) when they do not fit"),
        Binding("escape", "app.pop_screen", "Back", id="prices.back", tooltip="back to the previous screen"),
    ]

    @dataclass
    class BoardLoaded(Message):
        board: PriceBoard

    @dataclass
    class RefreshFailed(Message):
        reason: str

    def __init__(self, store, *, now: datetime | None = None, env: Mapping[str, str] | None = None,
                 name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.store = store
        self.fixed_now = now  # tests and snapshots: a fixed "now" for ages
        self.env = env
        self.board: PriceBoard | None = None
        self.refreshing = False
        self.refresh_text = ""

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static(Text("GPU prices — r: refresh live"), id="prices-title")
        yield PagedTable(id="prices-status", fixed=1, cursor_type="none", zebra_stripes=False)
        yield PagedTable(id="prices-table", fixed=1, cursor_type="row", zebra_stripes=True)
        yield Static(Text(""), id="prices-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prices-status", PagedTable).set_columns(
            [(c, c) for c in ("provider", "status", "source", "reason")])
        self.query_one("#prices-table", PagedTable).set_columns(
            [(c, c) for c in ("GPU", "provider", "type", "n", "$/GPU-h", "$/h", "source", "detail")])
        self.load_board()

    @work(thread=True, exclusive=True, exit_on_error=False, group="prices-load")
    def load_board(self) -> None:
        try:
            board = price_board(self.store, now=self.fixed_now)
        except Exception as exc:  # the database stayed locked by another process, or is broken
            self.post_message(self.RefreshFailed(f"could not read stored prices: {one_line(exc)}"))
            return
        self.post_message(self.BoardLoaded(safe_display(board)))  # price-API replies: outside text

    def action_columns(self) -> None:
        for table in self.query(PagedTable):
            table.action_next_page()

    def action_refresh_prices(self) -> None:
        if self.refreshing:
            return
        self.refreshing = True
        self.refresh_text = ""
        self._message("Fetching live prices…")
        self.fetch_live()

    @work(exclusive=True, exit_on_error=False, group="prices-fetch")
    async def fetch_live(self) -> None:
        try:
            results = await refresh_async(self.store, env=self.env, now=self.fixed_now)
        except Exception as exc:  # the board still shows what is stored
            self.post_message(self.RefreshFailed(safe_display(f"{type(exc).__name__}: {exc}")))
            return
        self.refresh_text = safe_display(refresh_summary(results))  # quotes price-API replies
        self.load_board()

    @on(BoardLoaded)
    def show_board(self, message: BoardLoaded) -> None:
        self.board = board = message.board
        if self.refreshing and self.refresh_text:
            self.refreshing = False
            self._message(self.refresh_text)  # counted from the fetches, not from the fallbacks shown
        self.query_one("#prices-status", PagedTable).set_rows([(None, [
            Text(provider_label(s.provider)),
            Text(s.state, style=STATE_STYLE.get(s.state, "")),
            Text(source_age(s, board.now) if s.as_of else "—"),
            Text(s.reason or ""),
        ]) for s in board.statuses.values()])
        rows = []
        for r in board.rows:
            name = gpu_label(r.gpu_key) if r.gpu_key else f"? {r.gpu_raw_name}"
            if r.approximate and r.gpu_key:
                name += " ~"
            detail = " ".join(x for x in (f"{r.stat} of {r.offers}" if r.stat else None, r.note,
                                          r.instance_type) if x)
            rows.append((None, [
                Text(name, style="" if r.gpu_key else "italic"), Text(provider_label(r.provider)),
                Text(r.pricing_type), Text(str(r.gpu_count)), Text(f"{r.usd_per_gpu_hour:.2f}", justify="right"),
                Text(f"{r.usd_per_hour:.2f}", justify="right"), Text(source_age(r, board.now)), Text(detail),
            ]))
        self.query_one("#prices-table", PagedTable).set_rows(rows)

    @on(RefreshFailed)
    def show_failure(self, message: RefreshFailed) -> None:
        self.refreshing = False
        self._message(f"Refresh failed: {message.reason}")
        self.notify(Text(message.reason).plain, title="Prices", severity="error")

    def _message(self, text: str) -> None:
        self.query_one("#prices-message", Static).update(Text(text))


__all__ = ["PricesScreen", "age_text"]
