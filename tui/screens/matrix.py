"""The Compare matrix: the article's GPU x provider table from every run in the database, with a chart of
$/1M by GPU x provider; the cheapest tokens that still answer in time (cost at an SLO); and the priced
throughput–latency frontier.

At 80 columns the table shows GPU, provider, speeds, $/h and $/1M on both cost bases; `w` shows the rest
(TTFT, the article's 2024 figures, runs). Runs of different workloads are never mixed: every tab shows one
workload at a time, named in the title, and `k` moves to the next. Everything is computed in thread workers
(data.analysis.matrix, data.analysis.frontier) that post typed messages back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from engine.terminal_text import one_line, safe_display
from tui.matrix_format import (
    B1,
    LOAD,
    MATRIX_COLUMNS,
    NARROW,
    SOURCE_MARK,
    chart_label,
    frontier_cells,
    matrix_cells,
    short_level,
)
from tui.widgets.bar_chart import Bar, BarChart
from tui.widgets.fields import TextField, type_into
from tui.widgets.frontier_chart import draw_frontier
from tui.widgets.paged_table import cell_width
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

DEFAULT_SLO = "ttft=500,tpot=50"
WIDE = 118  # from this width every matrix column fits at once
# Widths None: sized to their values (a DataTable scrolls sideways rather than cut one); "meets" wraps.
SLO_COLUMNS = (("GPU", None), ("best", None), ("tok/s", None), ("TTFT ms", None), ("TPOT ms", None),
               ("$/1M", None), ("provider", None))
LEVEL_COLUMNS = (("GPU", None), ("level", None), ("ok", None), ("tok/s", None), ("TTFT ms", None),
                 ("TPOT ms", None), ("goodput", None), ("meets the SLO?", 20))
FRONTIER_TABLE_HEADERS = ("curve", "level", "GPU tok/s", "user tok/s", "TTFT ms", "$/1M", "pareto")


def fill_sized(table: DataTable, headers: list[str], rows: list[list]) -> None:
    """Columns as wide as their widest value (header included), set before the rows go in: a value is
    never cut, whatever order the rows arrive in (a table wider than the screen scrolls sideways)."""
    widths = [max([cell_width(h)] + [cell_width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    cursor = table.cursor_row
    table.clear(columns=True)
    for header, width in zip(headers, widths):
        table.add_column(header, width=width)
    for row in rows:
        table.add_row(*row)
    if rows and cursor:
        table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)


class CompareMatrixScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Compare: GPU × provider"  # Help's title for this screen
    CSS_PATH = "matrix.tcss"
    BINDINGS = [
        Binding("m", "tab('tab-matrix')", "Matrix", id="matrix.matrix"),
        Binding("o", "tab('tab-slo')", "SLO", id="matrix.slo"),
        Binding("f", "tab('tab-frontier')", "Frontier", id="matrix.frontier"),
        Binding("w", "more_columns", "Columns", id="matrix.more",
                tooltip="the matrix's other columns (below 118 wide)"),
        Binding("b", "basis", "Basis", id="matrix.basis", tooltip="the cost chart's basis: under load or batch-1"),
        Binding("x", "axis", "Axis", id="matrix.axis", tooltip="the frontier's x axis: per-user tok/s or TTFT"),
        Binding("k", "next_workload", "Workload", id="matrix.workload",
                tooltip="the next workload: runs on different workloads are never averaged or ranked together"),
        Binding("r", "reload", "Reload", id="matrix.reload", show=False),
        Binding("escape", "back", "Back", id="matrix.back"),
    ]

    @dataclass
    class MatrixLoaded(Message):
        matrix: Any

    @dataclass
    class SloLoaded(Message):
        result: Any

    @dataclass
    class FrontierLoaded(Message):
        frontier: Any

    @dataclass
    class Failed(Message):
        what: str
        reason: str

    def __init__(self, store, *, now: datetime | None = None, slo: str = DEFAULT_SLO, percentile: float = 99.0,
                 name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.store = store
        self.fixed_now = now
        self.slo_text = slo
        self.percentile = percentile
        self.matrix = None
        self.slo = None
        self.frontier = None
        self.page = 0  # 0: the cost columns; 1: the rest (only below WIDE columns)
        self.basis = LOAD
        self.axis = "user"
        self.workload: str | None = None  # the workload every tab shows (None: the first there is)

    def compose(self) -> ComposeResult:
        yield StatusBar()  # every screen key, the engine and the database, as on every other screen
        yield Static(Text("Compare — your runs by GPU × provider, one workload at a time · loading…"),
                     id="matrix-title")
        with TabbedContent(id="matrix-tabs", initial="tab-matrix"):
            with TabPane("Matrix", id="tab-matrix"):
                yield DataTable(id="matrix-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="matrix-legend")
                yield BarChart(id="matrix-chart")
            with TabPane("SLO", id="tab-slo"):
                with Horizontal(id="slo-form"):
                    slo = TextField(self.slo_text, placeholder="ttft=500,tpot=50", id="slo-input")
                    slo.border_title = "SLO ms"
                    yield slo
                    pct = TextField(f"{self.percentile:g}", placeholder="99", id="slo-percentile", max_length=5)
                    pct.border_title = "pct"
                    yield pct
                yield Static("", id="slo-note")
                yield DataTable(id="slo-table", cursor_type="row")
                yield DataTable(id="slo-levels", cursor_type="row", zebra_stripes=True)
            with TabPane("Frontier", id="tab-frontier"):
                yield PlotextPlot(id="frontier-chart")
                yield DataTable(id="frontier-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for table_id, columns in (("#slo-table", SLO_COLUMNS), ("#slo-levels", LEVEL_COLUMNS)):
            table = self.query_one(table_id, DataTable)
            for label, width in columns:
                table.add_column(label, width=width)
        table = self.query_one("#frontier-table", DataTable)
        for label in FRONTIER_TABLE_HEADERS:
            table.add_column(label)
        self._set_matrix_columns()
        self.load_matrix()
        self.load_slo(self.slo_text, self.percentile)
        self.load_frontier(self.percentile)
        self.query_one("#matrix-table", DataTable).focus()

    # -- workers: the database is read off the UI thread ---------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="matrix-load")
    def load_matrix(self) -> None:
        from data.analysis.matrix import build_matrix

        try:
            self.post_message(self.MatrixLoaded(safe_display(build_matrix(self.store, now=self.fixed_now))))
        except Exception as exc:
            self.post_message(self.Failed("matrix", one_line(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="matrix-slo")
    def load_slo(self, text: str, percentile: float) -> None:
        from data.analysis.frontier import cost_at_slo
        from engine.load import parse_slo

        try:
            self.post_message(self.SloLoaded(safe_display(cost_at_slo(self.store, parse_slo(text), percentile,
                                                                      now=self.fixed_now))))
        except Exception as exc:
            self.post_message(self.Failed("slo", one_line(exc)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="matrix-frontier")
    def load_frontier(self, percentile: float) -> None:
        from data.analysis.frontier import build_frontier

        try:
            frontier = build_frontier(self.store, percentile, now=self.fixed_now)
            self.post_message(self.FrontierLoaded(safe_display(frontier)))
        except Exception as exc:
            self.post_message(self.Failed("frontier", one_line(exc)))

    # -- workloads: one at a time ---------------------------------------------------------------
    def workloads(self) -> list[str]:
        """Every workload the loaded views hold, in table order."""
        names: list[str] = []
        if self.matrix is not None:
            names += [w for _m, w in self.matrix.groups()]
        if self.slo is not None:
            names += [a.workload for a in self.slo.answers]
        if self.frontier is not None:
            names += self.frontier.workloads()
        return list(dict.fromkeys(names))

    def current_workload(self) -> str | None:
        names = self.workloads()
        if self.workload not in names:
            self.workload = names[0] if names else None
        return self.workload

    def action_next_workload(self) -> None:
        names = self.workloads()
        if len(names) < 2:
            self.notify("every run here ran one workload" if names else "no runs yet", severity="information")
            return
        current = self.current_workload()
        self.workload = names[(names.index(current) + 1) % len(names)]
        self._refill()

    def _refill(self) -> None:
        if self.matrix is not None:
            self.fill_matrix()
            self.draw_cost_chart()
        if self.slo is not None:
            self.fill_slo()
        if self.frontier is not None:
            self.fill_frontier()

    def _workload_text(self) -> Text:
        names = self.workloads()
        current = self.current_workload()
        text = Text()
        if current is None:
            return text
        text.append(" · workload ", style="")
        text.append(current, style="bold cyan")
        if len(names) > 1:
            text.append(f" ({names.index(current) + 1}/{len(names)} k)", style="dim")
        return text

    # -- messages -> state ------------------------------------------------------------------------
    @on(MatrixLoaded)
    def _matrix_loaded(self, message: MatrixLoaded) -> None:
        self.matrix = message.matrix
        self._refill()

    @on(SloLoaded)
    def _slo_loaded(self, message: SloLoaded) -> None:
        self.slo = message.result
        self._refill()

    @on(FrontierLoaded)
    def _frontier_loaded(self, message: FrontierLoaded) -> None:
        self.frontier = message.frontier
        self._refill()

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        target = {"matrix": "#matrix-legend", "slo": "#slo-note", "frontier": "#matrix-legend"}[message.what]
        self.query_one(target, Static).update(Text(f"Cannot show the {message.what}: {safe_display(message.reason)}"))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Each tab's own keys only on that tab (the footer fits 80 columns and shows what works here)."""
        tab = self.query_one(TabbedContent).active if self.is_mounted else "tab-matrix"
        if action == "tab" and parameters and parameters[0] == tab:
            return False  # the key of the tab already shown
        if action in ("basis", "more_columns"):
            return tab == "tab-matrix"
        if action == "axis":
            return tab == "tab-frontier"
        return True

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        if event.pane.id == "tab-slo":
            self.query_one("#slo-input", Input).focus()  # a text tab: typing goes into its field

    def on_key(self, event) -> None:
        # On the SLO tab this screen is for typing: letters go into the SLO field, not to shortcuts.
        if self.query_one(TabbedContent).active == "tab-slo":
            type_into(self, event, self.query_one("#slo-input", Input))

    @on(Input.Submitted)
    def _slo_submitted(self) -> None:
        from data.analysis.frontier import SloError, parse_percentile

        text = self.query_one("#slo-input", Input).value.strip()
        try:
            percentile = parse_percentile(self.query_one("#slo-percentile", Input).value.strip() or "99")
        except SloError as exc:
            self.notify(str(exc), severity="error", title="SLO")
            return
        self.slo_text, self.percentile = text, percentile
        kept = getattr(self.app, "form_values", None)
        if kept is not None:  # F7 again opens with this SLO (the app keeps what was typed)
            kept["compare"] = {"slo": text, "percentile": percentile}
        self.query_one("#slo-note", Static).update(Text("computing…"))
        self.load_slo(text, percentile)
        self.load_frontier(percentile)  # focus stays in the field: the next SLO is typed straight away

    # -- the matrix ---------------------------------------------------------------------------------
    def _visible_columns(self) -> list[int]:
        if self.size.width >= WIDE:
            return list(range(len(MATRIX_COLUMNS)))
        if self.page == 0:
            return list(range(NARROW))
        return [0, 1, 7, 8, 9, 10, 4]  # GPU, provider, TTFT, article $/1M and TPS, runs, $/h

    def _set_matrix_columns(self) -> None:
        table = self.query_one("#matrix-table", DataTable)
        table.clear(columns=True)
        for i in self._visible_columns():
            label, _width, _justify = MATRIX_COLUMNS[i]
            table.add_column(label)  # sized to its values: a wide one scrolls sideways, never loses digits

    def fill_matrix(self) -> None:
        table = self.query_one("#matrix-table", DataTable)
        columns = self._visible_columns()
        workload = self.current_workload()
        rows = [r for r in (self.matrix.rows if self.matrix else []) if r.workload == workload]
        models = list(dict.fromkeys(r.model for r in rows))
        cells = [matrix_cells(row) for row in rows]
        fill_sized(table, [MATRIX_COLUMNS[i][0] for i in columns], [[c[i] for i in columns] for c in cells])
        # The workload first: at 80 columns a long model name may be cut, the workload never is.
        title = Text("Compare", style="bold")
        title.append_text(self._workload_text())
        if len(models) == 1:
            title.append(f" · {models[0].rsplit('/', 1)[-1]}", style="")
        elif len(models) > 1:
            title.append(f" · {len(models)} models (see GPU rows)", style="")
        self.query_one("#matrix-title", Static).update(title)
        legend = [*(self.matrix.notes if self.matrix else [])]
        if rows:
            more = "" if self.size.width >= WIDE else (" · w: more" if self.page == 0 else " · w: costs")
            legend.append(f"b1 batch-1 TPS · ld under load (mean±std ·runs) · ◀ cheapest{more}")
            legend.append("* measured on that provider · $/h: P paid, L live, C catalog, S snapshot")
        self.query_one("#matrix-legend", Static).update(Text("\n".join(legend)))

    def draw_cost_chart(self) -> None:
        """$/1M by GPU × provider, cheapest first: every bar labelled, the ones that do not fit named."""
        chart = self.query_one("#matrix-chart", BarChart)
        name = "throughput under load" if self.basis == LOAD else "batch-1 TPS"
        workload = self.current_workload()
        rows = [r for r in (self.matrix.rows if self.matrix else [])
                if self.basis in r.costs and r.workload == workload]
        if rows:
            rows = sorted(rows, key=lambda r: r.costs[self.basis])
            bars = [Bar(chart_label(r) + (" ◀" if self.basis in r.cheapest else ""), r.costs[self.basis],
                        "bold green" if self.basis in r.cheapest else "") for r in rows]
            chart.show(f"$/1M output tokens on {name} (b: basis)", bars, digits=2, order="the cheapest")
        elif self.matrix is not None and not self.matrix.rows:
            from data.analysis.matrix import reference_matrix

            ref = sorted(reference_matrix(), key=lambda r: r["usd_per_million"])
            bars = [Bar(f"{r['gpu_key']} {r['provider']}", r["usd_per_million"]) for r in ref]
            chart.show("$/1M output tokens, the article's 2024 figures (no GPU runs yet)", bars, digits=2,
                       order="the cheapest")
        else:
            chart.show(f"$/1M output tokens on {name} (b: basis): no run has a cost on this basis yet", [])

    # -- the SLO answer -----------------------------------------------------------------------------
    def fill_slo(self) -> None:
        from pricing.models import provider_label

        result = self.slo
        pct = f"p{result.percentile:g}"
        limits = ", ".join(f"{k.upper()} ≤ {v:g} ms" for k, v in result.slo_ms.items())
        workload = self.current_workload()
        answers = [a for a in result.answers if a.workload == workload]
        note = Text(f"{pct} {limits}; a level with a failed request misses it. ")
        if not result.answers:
            note.append("No load levels stored yet: run a sweep on the Load screen (l).")
        elif not answers:
            note.append(f"No load levels of this workload ({workload}): k shows the next.")
        elif not any(a.best for a in answers):
            note.append("No level meets the SLO.", style="bold red")
        else:
            cheapest = next((a for a in answers if a.cheapest_overall), None)
            if cheapest is not None:
                c = cheapest.costs[0]
                note.append(f"Cheapest in time: {cheapest.gpu_key} on {provider_label(c.provider)}, "
                            f"${c.usd_per_million:.2f}/1M.", style="bold green")
        self.query_one("#slo-note", Static).update(note)
        table_rows: list[list] = []
        for a in answers:
            gpu = a.gpu_key or "CPU"
            gpu += f" ×{a.gpus_used}" if a.gpus_used > 1 else ""
            b = a.best
            if b is None:
                table_rows.append([Text(gpu), Text("none meets", style="bold red"), "–", "–", "–", "–", ""])
            elif not a.costs:
                table_rows.append([Text(gpu), Text(short_level(b.label)),
                                   Text(f"{b.output_throughput:.1f}", justify="right"),
                                   Text(f"{b.ttft_ms:.0f}", justify="right"), Text(f"{b.tpot_ms:.1f}", justify="right"),
                                   "–", Text("nobody rents it")])
            for i, c in enumerate(a.costs if b is not None else []):
                # One row per provider: the same level's throughput at each provider's $/h.
                style = "bold green" if c.cheapest and a.cheapest_overall else ""
                first = i == 0
                table_rows.append([
                    Text(gpu if first else "", style=style), Text(short_level(b.label) if first else "", style=style),
                    Text(f"{b.output_throughput:.1f}" if first else "", justify="right"),
                    Text(f"{b.ttft_ms:.0f}" if first else "", justify="right"),
                    Text(f"{b.tpot_ms:.1f}" if first else "", justify="right"),
                    Text(f"{c.usd_per_million:.2f}" + ("◀" if c.cheapest else " "), style=style, justify="right"),
                    Text(f"{provider_label(c.provider)}{'*' if c.measured_here else ''} "
                         f"{SOURCE_MARK.get(c.price_source, '')}")])
        fill_sized(self.query_one("#slo-table", DataTable), [label for label, _w in SLO_COLUMNS], table_rows)
        self._fill_levels(answers)

    def _fill_levels(self, answers) -> None:
        """Every level of every sweep; the last column (why a level misses the SLO) gets the width the
        others leave at this screen's width and wraps inside it, so no reason runs past the edge."""
        levels = self.query_one("#slo-levels", DataTable)
        rows = []
        for a in answers:
            gpu = (a.gpu_key or "CPU") + (f" ×{a.gpus_used}" if a.gpus_used > 1 else "")
            tags = a.sweep_tags()  # two sweeps of one workload: "#1 c=1", "#2 c=1" (in the order they started)
            for s in a.levels:
                meets = Text("yes", style="green") if s.meets else Text(f"no: {s.why_not}", style="red")
                level = f"{tags[s.sweep_id]} {short_level(s.label)}" if tags else short_level(s.label)
                rows.append([Text(gpu), Text(level), Text(f"{s.completed}/{s.completed + s.failed}"),
                             Text(f"{s.output_throughput:.1f}", justify="right"),
                             Text(f"{s.ttft_ms:.0f}", justify="right"), Text(f"{s.tpot_ms:.1f}", justify="right"),
                             Text("–" if s.goodput is None else f"{s.goodput:.2f}", justify="right"), meets])
        widths = [max([len(label)] + [r[i].cell_len for r in rows]) for i, (label, _w) in enumerate(LEVEL_COLUMNS)]
        room = (self.size.width or self.app.size.width) - 2 - sum(w + 2 * levels.cell_padding for w in widths[:-1])
        levels.clear(columns=True)
        for i, (label, _w) in enumerate(LEVEL_COLUMNS):
            last = i == len(LEVEL_COLUMNS) - 1
            width = max(12, min(widths[i], room - 2 * levels.cell_padding)) if last else widths[i]
            levels.add_column(label, width=width)
        for row in rows:
            levels.add_row(*row, height=None)  # the reason wraps onto as many lines as it needs

    # -- the frontier -------------------------------------------------------------------------------
    def fill_frontier(self) -> None:
        from dataclasses import replace

        chart = self.query_one("#frontier-chart", PlotextPlot)
        workload = self.current_workload()
        mine = replace(self.frontier, points=[p for p in self.frontier.points if p.level.workload == workload])
        draw_frontier(chart.plt, mine, self.axis)
        chart.refresh()
        fill_sized(self.query_one("#frontier-table", DataTable), list(FRONTIER_TABLE_HEADERS),
                   [frontier_cells(p) for p in self.frontier.points if p.level.workload == self.current_workload()])

    # -- actions ------------------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        focus = {"tab-matrix": "#matrix-table", "tab-slo": "#slo-input", "tab-frontier": "#frontier-table"}[tab]
        self.query_one(focus).focus()
        self.refresh_bindings()

    def action_more_columns(self) -> None:
        self.page = 1 - self.page
        self._set_matrix_columns()
        self.fill_matrix()

    def action_basis(self) -> None:
        self.basis = B1 if self.basis == LOAD else LOAD
        self.draw_cost_chart()

    def action_axis(self) -> None:
        self.axis = "ttft" if self.axis == "user" else "user"
        if self.frontier is not None:
            self.fill_frontier()

    def action_reload(self) -> None:
        self.load_matrix()
        self.load_slo(self.slo_text, self.percentile)
        self.load_frontier(self.percentile)

    def action_back(self) -> None:
        if isinstance(self.focused, Input):  # leave the SLO field first, so Esc never loses the screen by accident
            self.query_one("#slo-table", DataTable).focus()
            return
        self.app.pop_screen()

