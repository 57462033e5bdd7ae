"""History screen: every stored run in a sortable, filterable table. Enter opens a run; space marks
runs; d shows the marked runs side by side; c opens their costs (the pricing Compare screen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from data.analysis.run_figures import BATCH1, BATCH1_HEADER, PER_USER, PER_USER_HEADER, split_speeds, what_ran
from data.analysis.workload_labels import label_runs
from engine.terminal_text import one_line, safe_display
from tui.cells import fmt_date, model_name, where_short
from tui.widgets.fields import TextField
from tui.widgets.paged_table import PagedTable
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

# (key, header): batch-1 TPS and per-user speed under load are different figures in different columns.
COLUMNS: list[tuple[str, str]] = [
    ("mark", "✓"),
    ("date", "date"),
    ("what", "what"),
    ("b1", BATCH1_HEADER),
    ("user", PER_USER_HEADER),
    ("ttft", "TTFT ms"),
    ("workload", "workload"),  # after the figures: a long label never pushes them off the first page
    ("status", "status"),
    ("model", "model"),
    ("gpu", "GPU"),
    ("host", "host"),
    ("engine", "engine"),
]


def _speed(kind: str):
    """Sort key on one speed column: runs without that figure go last whichever way it sorts."""
    def key(r: dict):
        value = dict(zip((BATCH1, PER_USER), split_speeds(r, r.get("mean_tps"))))[kind]
        return (value is not None, value or 0.0)
    return key


SORTS = [
    ("date", lambda r: r.get("started_at") or datetime.min, True),
    (BATCH1_HEADER, _speed(BATCH1), True),
    (PER_USER_HEADER, _speed(PER_USER), True),
    ("TTFT", lambda r: r.get("mean_ttft_ms") if r.get("mean_ttft_ms") is not None else float("inf"), False),
    ("what", lambda r: what_ran(r), False),
    ("workload", lambda r: (r.get("workload_label") or "").lower(), False),
    ("model", lambda r: (r.get("model") or "").lower(), False),
    ("host", lambda r: (r.get("hostname") or "").lower(), False),
    ("GPU", lambda r: (r.get("gpu_key") or r.get("device") or "").lower(), False),
    ("status", lambda r: r.get("status") or "", False),
]
SORT_BY_COLUMN = {"date": 0, "b1": 1, "user": 2, "ttft": 3, "what": 4, "workload": 5, "model": 6, "host": 7, "gpu": 8,
                  "status": 9}


def search_text(run: dict) -> str:
    fields = ("run_id", "kind", "status", "suite", "engine", "model", "hostname", "device", "gpu_key", "label",
              "provider", "instance_type", "region", "workload_label", "workload_key")
    return " ".join(str(run.get(k) or "") for k in fields).lower() + " " + fmt_date(run.get("started_at"))


STATUS_STYLE = {"completed": "green", "aborted": "yellow", "failed": "red", "running": "cyan"}


class HistoryScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "History"  # Help's title for this screen
    HELP_SCROLL = "move through the runs: Home the first, End the last (↑ ↓ PgUp PgDn one run, a page)"
    AUTO_FOCUS = "#history-table"
    HOME_FOCUS = "#history-table"
    BINDINGS = [
        Binding("space", "mark", "Mark", id="history.mark", tooltip="mark or unmark the run under the cursor"),
        Binding("d", "side_by_side", "Diff", id="history.side_by_side", tooltip="the marked runs side by side"),
        Binding("c", "costs", "Costs", id="history.costs", tooltip="cost per 1M tokens of the marked runs"),
        Binding("s", "cycle_sort", "Sort", id="history.sort", tooltip="sort by the next column"),
        Binding("f", "filter", "Filter", id="history.filter", tooltip="filter by model, host, GPU, suite, date…"),
        Binding("v", "columns", "Columns", id="history.columns", show=False,
                tooltip="the table's other columns (at 80 wide they do not all fit)"),
        Binding("r", "reload", "Reload", id="history.reload", show=False, tooltip="read the runs again"),
        Binding("enter", "open_run", "Open", id="history.open", show=False, tooltip="open the run under the cursor"),
        Binding("escape", "leave_filter", "Table", id="history.table", show=False, tooltip="back to the table"),
    ]

    @dataclass
    class RunsLoaded(Message):
        runs: list[dict]
        error: str | None = None

    def __init__(self) -> None:
        super().__init__(id="history")
        self.runs: list[dict] = []
        self.shown: list[dict] = []
        self.marked: list[str] = []
        self.sort_index = 0
        self.sort_reverse = True

    def compose(self) -> ComposeResult:
        yield StatusBar()
        flt = TextField(placeholder="filter: model, workload, host, GPU, status, date… (f)", id="history-filter")
        flt.border_title = "filter"
        yield flt
        yield PagedTable(id="history-table", fixed=2, cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-info")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(PagedTable)
        table.set_columns([(header, key) for key, header in COLUMNS])
        self.reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()

    # -- data --------------------------------------------------------------------
    def reload(self) -> None:
        """Read the runs in a worker: another process may hold the database for a moment."""
        self._load_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="history-load")
    def _load_runs(self) -> None:
        store = self.app.store
        try:
            # Stored runs may be imported: every field is outside text (engine.terminal_text).
            runs = label_runs(store, store.list_runs()) if store is not None else []  # each with its workload
            self.post_message(self.RunsLoaded(safe_display(runs)))
        except Exception as exc:  # StoreError (locked too long) or a broken file: say so, keep the table
            self.post_message(self.RunsLoaded([], one_line(exc)))

    @on(RunsLoaded)
    def _runs_loaded(self, message: RunsLoaded) -> None:
        if message.error is not None:
            self.notify(f"could not read the runs: {message.error}", severity="error", timeout=10)
            return
        self.runs = message.runs
        known = {r["run_id"] for r in self.runs}
        self.marked = [m for m in self.marked if m in known]
        self.refresh_table()

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        query = self.query_one("#history-filter", Input).value.strip().lower()
        terms = query.split()
        rows = [r for r in self.runs if all(t in search_text(r) for t in terms)]
        name, key, default_reverse = SORTS[self.sort_index]
        rows.sort(key=key, reverse=self.sort_reverse)
        self.shown = rows
        cursor_run = self.cursor_run_id()
        table.set_rows([(run["run_id"], self._cells(run)) for run in rows])
        if cursor_run and cursor_run in {r["run_id"] for r in rows}:
            table.move_cursor(row=table.get_row_index(cursor_run))
        arrow = "↓" if self.sort_reverse else "↑"
        table.border_title = f"runs {len(rows)}/{len(self.runs)} · sort {name} {arrow}"
        self._update_info()

    def _cells(self, run: dict) -> list:
        status = run.get("status") or "?"
        b1, user = split_speeds(run, run.get("mean_tps"))
        ttft = run.get("mean_ttft_ms")
        return [
            Text("✓", style="bold green") if run["run_id"] in self.marked else Text(" "),
            fmt_date(run.get("started_at")),
            Text(what_ran(run)),
            Text("–" if b1 is None else f"{b1:.1f}", justify="right"),
            Text("–" if user is None else f"{user:.1f}", justify="right"),
            Text("–" if ttft is None else f"{ttft:.0f}", justify="right"),
            Text(str(run.get("workload_label") or "")),
            Text(status, style=STATUS_STYLE.get(status, "")),
            # Whole values: columns that do not fit go to the next page (v), none is cut.
            Text(model_name(run)),
            Text(str(run.get("gpu_key") or run.get("device") or "")),
            Text(str(run.get("hostname") or "")),
            Text(str(run.get("engine") or "")),
        ]

    def _update_info(self) -> None:
        if self.marked:
            info = f"marked {len(self.marked)}: " + ", ".join(self.marked) + " · d side by side · c costs"
        elif not self.runs:
            info = "no runs stored yet: generate on the Live screen (F2) or run a suite (F3)"
        else:
            info = f"db {self.app.status_parts()[2]} · enter opens a run · space marks runs"
            if len(self.query_one(PagedTable).pages) > 1:
                info += " · v more columns"
            run = next((r for r in self.shown if r["run_id"] == self.cursor_run_id()), None)
            where = where_short(run) if run else ""
            if where:  # where the highlighted run ran and what its instance cost
                extra = " ".join(str(x) for x in (run.get("instance_type"), run.get("region")) if x)
                info = f"{run['run_id']} ran on {where}" + (f" · {extra}" if extra else "") + " · enter opens it"
        self.query_one("#history-info", Static).update(Text(info))  # wraps onto a second line, never cut

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._update_info()

    def cursor_run_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    # -- events & actions ---------------------------------------------------------
    @on(Input.Changed, "#history-filter")
    def _filter_changed(self) -> None:
        self.refresh_table()

    @on(Input.Submitted, "#history-filter")
    def _filter_done(self) -> None:
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected, "#history-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(event.row_key.value)

    @on(DataTable.HeaderSelected, "#history-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        index = SORT_BY_COLUMN.get(str(event.column_key.value))
        if index is None:
            return
        if index == self.sort_index:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_index, self.sort_reverse = index, SORTS[index][2]
        self.refresh_table()

    def action_mark(self) -> None:
        run_id = self.cursor_run_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        table = self.query_one(PagedTable)
        run = next(r for r in self.runs if r["run_id"] == run_id)
        table.set_cell(run_id, "mark", self._cells(run)[0])
        self._update_info()  # the cursor stays on the run just marked

    def chosen_runs(self) -> list[str]:
        return self._chosen()

    def _chosen(self) -> list[str]:
        if self.marked:
            return list(self.marked)
        current = self.cursor_run_id()
        return [current] if current else []

    def action_side_by_side(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with space, then press d", severity="warning")
            return
        self.app.open_side_by_side(list(self.marked))

    def action_costs(self) -> None:
        chosen = self._chosen()
        if not chosen:
            self.notify("no run to price", severity="warning")
            return
        self.app.open_costs(chosen)

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.sort_reverse = SORTS[self.sort_index][2]
        self.refresh_table()

    def action_filter(self) -> None:
        self.query_one("#history-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(DataTable).focus()

    def action_columns(self) -> None:
        self.query_one(PagedTable).action_next_page()

    def action_open_run(self) -> None:
        run_id = self.cursor_run_id()
        if run_id:
            self.app.open_run(run_id)

    def action_reload(self) -> None:
        self.reload()
