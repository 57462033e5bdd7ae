"""One stored run: its environment, per-case aggregates, and plotext charts (TPS of each request,
ITL distribution, tokens over time for one request)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from data.analysis.roofline import roofline_text, stored_run_roofline
from data.analysis.run_figures import BATCH1, counts, speed_kind
from engine.measure.metrics import itl_gaps_s
from engine.terminal_text import one_line, safe_display
from tui.cells import (
    case_columns,
    case_rows,
    client_health_lines,
    client_health_of,
    failures_line,
    fmt_date,
    model_name,
    plain_value,
    reasoning_line,
    stream_lines,
    where_line,
)
from tui.widgets.paged_table import PagedTable
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

ENV_KEYS = ("hostname", "device", "cpu", "cpu_count", "memory_gb", "os", "python", "vllm", "torch",
            "transformers", "cuda", "driver", "model_path")


_value = plain_value


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 up to `top` (steps of 1, 2 or 5 × 10^k), for an axis that starts at 0."""
    import math

    if top <= 0:
        return [0.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [round(i * step, 10) for i in range(int(top / step) + 1)]


TABS = ("tab-summary", "tab-tps", "tab-itl", "tab-tokens", "tab-frontier")


# The Summary scrolls from the keyboard, whatever has focus (its container takes these keys itself when
# focused; these screen bindings catch them when the tabs have focus). No description: Help shows one
# line for them (HELP_SCROLL), not six.
SCROLL_KEYS = (("up", "scroll_up"), ("down", "scroll_down"), ("pageup", "page_up"), ("pagedown", "page_down"),
               ("home", "scroll_home"), ("end", "scroll_end"))


class RunDetailScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Run detail"  # Help's title for this screen
    HELP_SCROLL = "scroll the Summary (everything below the cases: device, roofline, client check, versions)"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="detail.back"),
        Binding("tab", "next_tab", "Next tab", id="detail.next_tab", priority=True, key_display="⇥",
                tooltip="the next tab: Summary, TPS, ITL, Tokens/time (Frontier for a load level)"),
        Binding("shift+tab", "next_tab(-1)", "Prev tab", id="detail.prev_tab", priority=True, show=False,
                tooltip="the previous tab"),
        Binding("left_square_bracket", "request(-1)", "Prev req", id="detail.prev"),
        Binding("right_square_bracket", "request(1)", "Next req", id="detail.next"),
        Binding("c", "costs", "Costs", id="detail.costs", tooltip="cost per 1M tokens of this run"),
        Binding("v", "more_columns", "Columns", id="detail.columns",
                tooltip="the summary's other columns (at 80 wide they do not all fit)"),
        *[Binding(key, f"scroll_summary('{how}')", show=False, id=f"detail.{how}") for key, how in SCROLL_KEYS],
    ]

    @dataclass
    class RunLoaded(Message):
        run: dict | None
        requests: list[dict]
        chunks: list[dict]
        error: str | None = None
        roofline: list[str] = field(default_factory=list)

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict = {}
        self.requests: list[dict] = []
        self.offsets: dict[int, list[tuple[int, int]]] = {}
        self.request_pick = 0
        self.roofline: list[str] = []

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static("", id="detail-title")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Summary", id="tab-summary"):
                with VerticalScroll(id="detail-summary"):
                    cases = PagedTable(id="detail-cases", fixed=2, cursor_type="row", show_cursor=False)
                    cases.can_focus = False  # no cursor: ↑↓ PgDn End scroll the whole summary instead
                    yield cases
                    yield Static("", id="detail-env")
            with TabPane("TPS", id="tab-tps"):
                yield PlotextPlot(id="chart-tps")
            with TabPane("ITL", id="tab-itl"):
                yield PlotextPlot(id="chart-itl")
            with TabPane("Tokens/time", id="tab-tokens"):
                yield PlotextPlot(id="chart-tokens")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#detail-summary", VerticalScroll).focus()
        self._load_run()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-summary":
            self.query_one("#detail-summary", VerticalScroll).focus()

    def action_scroll_summary(self, how: str) -> None:
        """↑ ↓ PgUp PgDn Home End on the Summary tab, whatever has focus."""
        if self.query_one(TabbedContent).active == "tab-summary":
            summary = self.query_one("#detail-summary", VerticalScroll)
            getattr(summary, f"action_{how}")()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail-load")
    def _load_run(self) -> None:
        """The database is read in a worker: another process may hold it for a moment."""
        store = self.app.store
        try:
            with store.reading():  # one open of the file for the three queries
                run = store.get_run(self.run_id)
                requests = store.get_requests(run["run_id"]) if run else []
                chunks = store.get_chunks(run["run_id"]) if run else []
        except Exception as exc:
            self.post_message(self.RunLoaded(None, [], [], one_line(exc)))
            return
        roofline: list[str] = []
        if run:  # reads the model's config and weight sizes from disk: here, not on the UI thread
            roof, why_not = stored_run_roofline(run)
            roofline = roofline_text(roof, run.get("device"), why_not)
        # Stored runs may be imported: every field is outside text (engine.terminal_text).
        self.post_message(self.RunLoaded(*safe_display((run, requests, chunks)), roofline=safe_display(roofline)))

    @on(RunLoaded)
    def _run_loaded(self, message: RunLoaded) -> None:
        run = message.run
        if run is None:
            self.notify(message.error or f"run {self.run_id} not found", severity="error")
            self.app.pop_screen()
            return
        self.run = run
        self.requests = message.requests
        self.roofline = message.roofline
        for c in message.chunks:
            self.offsets.setdefault(c["request_index"], []).append((c["t_ns"], c["tokens"]))
        ok = [r["request_index"] for r in self.requests if counts(run.get("kind"), r)]
        self.request_pick = ok[-1] if ok else 0
        self._title()
        self._summary()
        self._chart_tps()
        self._chart_itl()
        self._chart_tokens()
        if run.get("kind") == "load":
            self.load_frontier()

    # -- a load level: the priced frontier of its sweep, in its own tab -------------------------------
    @dataclass
    class FrontierReady(Message):
        frontier: Any

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail-frontier")
    def load_frontier(self) -> None:
        from data.analysis.frontier import build_frontier

        # A failure is a notice (SaysWorkerFailures); the other tabs stand, Compare (m) shows the frontier too.
        self.post_message(self.FrontierReady(build_frontier(self.app.store, run_ids=[self.run["run_id"]])))

    @on(FrontierReady)
    async def _frontier_ready(self, msg: FrontierReady) -> None:
        from tui.widgets.frontier_chart import draw_frontier

        tabs = self.query_one(TabbedContent)
        if not self.query("#chart-frontier"):
            await tabs.add_pane(TabPane("Frontier", PlotextPlot(id="chart-frontier"), id="tab-frontier"))
        plot = self.query_one("#chart-frontier", PlotextPlot)
        draw_frontier(plot.plt, msg.frontier, title="this sweep: tok/s/GPU vs user tok/s, $/1M at each point")
        plot.refresh()

    def _title(self) -> None:
        r = self.run
        t = Text()  # wraps at " · " rather than cutting a word
        t.append(f"{r['run_id']} ", style="bold")
        t.append(f"{r.get('kind')} · {r.get('status')} · {fmt_date(r.get('started_at'))} · ")
        t.append(f"{r.get('engine')} · {model_name(r)} · {r.get('device')}")
        self.query_one("#detail-title", Static).update(t)

    def _summary(self) -> None:
        self._fill_cases()
        r = self.run
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        rows = [
            ("run", r["run_id"]), ("kind", r.get("kind")), ("status", r.get("status")),
            ("error", r.get("error")), ("started", fmt_date(r.get("started_at"))),
            ("duration", None if r.get("duration_s") is None else f"{r['duration_s']:.2f} s"),
            ("suite", r.get("suite")), ("reps", r.get("reps")), ("workload", _workload_line(r)),
            ("engine", r.get("engine")),
            ("model", r.get("model")), ("dtype", r.get("dtype")), ("engine args", r.get("engine_args")),
            ("host", r.get("hostname")), ("device", r.get("device")), ("GPU key", r.get("gpu_key")),
            ("where", where_line(r).removeprefix("where: ")), ("label", r.get("label")),
        ]
        env = r.get("environment") or {}
        rows.append(("roofline", "; ".join(self.roofline)))
        overall = (r.get("summary") or {}).get("overall") or {}
        rows.append(("reasoning", reasoning_line(overall)))
        failed = [q for q in self.requests if not q.get("success")]
        if failed:
            rows.append(("failures", failures_line(overall, len(self.requests), len(failed), failed[0].get("error"))))
        rows += [("stream", text) for text in stream_lines(overall, self.requests)]
        from engine.measure.metrics import steady_state_lines  # a load level's plateau (vllm-bench's rule)

        rows += [("steady state", text.strip()) for text in steady_state_lines(overall)]
        from engine.measure.server_timing import split_lines  # the server's own timing: TTFT split, spec decode

        rows += [("server timing", text.split(": ", 1)[-1]) for text in split_lines(overall, width=10_000)]
        health_lines = client_health_lines(client_health_of(r))
        rows += [("client check", text) for text, style in health_lines if style == "dim"]
        rows += [(f"env {k}", env.get(k)) for k in ENV_KEYS if env.get(k) not in (None, "", [], {})]
        rows += [(f"env {k}", v) for k, v in env.items() if k not in ENV_KEYS and v not in (None, "", [], {})]
        for k, v in rows:
            if v not in (None, "", {}, []):
                grid.add_row(k, Text(_value(v)))
        for text, style in health_lines:
            if style != "dim":  # the client self-check's warnings stand out
                grid.add_row(Text("warning", style="yellow"), Text(text.removeprefix("warning: "), style="yellow"))
        self.query_one("#detail-env", Static).update(grid)

    def _case_cells(self) -> tuple[list[list[Text]], list[list[Text]]]:
        fixed, figures = [], []
        for case_id, agg in case_rows(self.run):
            fixed.append([Text(str(case_id)), Text("–" if agg.get("target_tokens") is None
                                                   else f"{agg['target_tokens']:.0f}", justify="right")])
            figures.append([Text("–" if agg.get(key) is None else pattern.format(agg[key]), justify="right")
                            for _h, key, pattern in case_columns(self.run)])
        return fixed, figures

    def _fill_cases(self) -> None:
        """The per-case table (the same columns as `tokentop show`) with as many whole columns as fit;
        v shows the others."""
        table = self.query_one("#detail-cases", PagedTable)
        fixed, figures = self._case_cells()
        table.set_columns([("case", "case"), ("target", "target"), *[(h, k) for h, k, _p in case_columns(self.run)]])
        table.set_rows([(None, [*head, *row]) for head, row in zip(fixed, figures)])
        table.border_subtitle = (table.border_subtitle + " · " if table.border_subtitle else "") + "ms"

    def action_more_columns(self) -> None:
        self.query_one("#detail-cases", PagedTable).action_next_page()
        self.query_one(TabbedContent).active = "tab-summary"

    def _counted(self) -> list[dict]:
        """The requests the run's figures count (data.analysis.run_figures): the charts show what the summary does."""
        kind = self.run.get("kind")
        return [q for q in self.requests if counts(kind, q)]

    def _chart_tps(self) -> None:
        plot = self.query_one("#chart-tps", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        by_case: dict[str, tuple[list[int], list[float]]] = {}
        for q in self._counted():
            if q["tps"] is not None:
                xs, ys = by_case.setdefault(q["case_id"] or "?", ([], []))
                xs.append(q["request_index"] + 1)
                ys.append(q["tps"])
        # Points, not bars: thirty requests are more than an 80-column chart can label one by one.
        for case_id, (xs, ys) in by_case.items():
            plt.scatter(xs, ys, label=case_id, marker="dot")
        top = max((y for _xs, ys in by_case.values() for y in ys), default=0)
        plt.ylim(0, top * 1.15 or 1)  # speeds start at 0
        if by_case:
            plt.xlim(0, max(x for xs, _ys in by_case.values() for x in xs) + 1)
        name = "batch-1 TPS" if speed_kind(self.run) == BATCH1 else "per-user tok/s"
        left = len(self.requests) - sum(len(xs) for xs, _ys in by_case.values())
        plt.title(f"{name} of each request (tokens / E2EL)" + (f"; {left} failed/stopped not shown" if left else ""))
        plt.xlabel("request")
        plt.ylabel("tok/s")
        plot.refresh()

    def _chart_itl(self) -> None:
        import numpy as np

        plot = self.query_one("#chart-itl", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        itl = []
        counted = {q["request_index"] for q in self._counted()}
        for idx, chunks in self.offsets.items():
            if idx in counted:  # pooled over the requests the summary counts, as vLLM does
                itl += [gap * 1e3 for gap in itl_gaps_s([t for t, _n in chunks])]
        if itl:
            # Bins from 0 ms: a gap is never negative, and the axis says so.
            top = max(itl) or 1.0
            counts_, edges = np.histogram(itl, bins=30, range=(0.0, top))
            width = edges[1] - edges[0]
            plt.bar([float(e + width / 2) for e in edges[:-1]], [int(c) for c in counts_], width=1.0)
            plt.xlim(0, top)
            ticks = nice_ticks(top)
            plt.xticks(ticks, [f"{t:g}" for t in ticks])
            plt.ylim(0, int(counts_.max()) * 1.1 or 1)
        plt.title(f"ITL distribution, {len(itl)} gaps (ms)")
        plt.xlabel("ms")
        plt.ylabel("count")
        plot.refresh()

    def _chart_tokens(self) -> None:
        plot = self.query_one("#chart-tokens", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        chunks = self.offsets.get(self.request_pick, [])
        req = next((q for q in self.requests if q["request_index"] == self.request_pick), None)
        if chunks:
            xs = [t / 1e9 for t, _n in chunks]
            ys = list(accumulate(n for _t, n in chunks))
            plt.plot(xs, ys, marker="braille")
            plt.xlim(0, max(xs) * 1.05 or 1)
            plt.ylim(0, max(ys) * 1.05 or 1)
        label = f"request {self.request_pick + 1}/{len(self.requests)}"
        if req is not None:
            label += f" ({req['case_id']} rep {req['rep'] + 1})"
        plt.title(f"tokens over time, {label} — [ ] other requests")
        plt.xlabel("s since sent")
        plt.ylabel("tokens")
        plot.refresh()

    def action_next_tab(self, step: int = 1) -> None:
        tabs = self.query_one(TabbedContent)
        present = [t for t in TABS if self.query(f"#{t}")]
        i = present.index(tabs.active) if tabs.active in present else 0
        tabs.active = present[(i + step) % len(present)]

    def action_request(self, step: int) -> None:
        if not self.requests:
            return
        self.request_pick = (self.request_pick + step) % len(self.requests)
        self._chart_tokens()
        self.query_one(TabbedContent).active = "tab-tokens"

    def action_costs(self) -> None:
        self.app.open_costs([self.run_id])


def _workload_line(run: dict) -> str:
    """The run's workload as `tokentop show` says it: its label and key (tui.cells.workload_of)."""
    from tui.cells import workload_of

    workload = workload_of(run)
    return f"{workload['label']} (key {workload['key']})" if workload.get("key") else str(workload["label"])
