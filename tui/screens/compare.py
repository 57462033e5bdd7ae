"""The Compare screen: for the chosen runs, TPS, TTFT, $/h and $/1M tokens per provider, side by side;
sortable (s), cheapest highlighted; bar charts of TPS by GPU and $/1M tokens by provider x GPU.

The columns a reader needs (provider, GPU, TPS basis, TPS, TTFT, $/h, $/1M) come first and fit in 80
columns; price type, source and run id follow and are reached by scrolling the table sideways."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from data.analysis.compare import RunCosts, compare_runs
from engine.terminal_text import safe_display
from pricing.cost import TpsBasis
from pricing.gpus import gpu_label
from pricing.models import provider_label
from tui.widgets.bar_chart import Bar, BarChart
from tui.widgets.paged_table import PagedTable
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

COLUMNS = ("provider", "GPU", "basis", "TPS", "TTFT ms", "$/h", "$/1M", "type", "source", "run")
# Shown after $/1M when a run carried reasoning: the price of the tokens a user reads.
ANSWER_COLUMN = "$/1M ans"

SORTS = [("$/1M", lambda r: r["usd_per_million"]), ("$/h", lambda r: r["usd_per_hour"]),
         ("TPS", lambda r: -r["tps"]), ("provider", lambda r: (r["provider"], r["usd_per_million"]))]


class CompareScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Costs of the chosen runs"  # Help's title for this screen
    CSS_PATH = "compare.tcss"
    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", id="compare.sort", tooltip="sort by $/1M, $/h, TPS or provider"),
        Binding("v", "columns", "Columns", id="compare.columns",
                tooltip="the table's other columns (type, source, run) when they do not fit"),
        Binding("escape", "app.pop_screen", "Back", id="compare.back", tooltip="back to the previous screen"),
    ]

    @dataclass
    class Loaded(Message):
        results: list[RunCosts]

    @dataclass
    class LoadFailed(Message):
        reason: str

    def __init__(self, store, run_ids: list[str], *, now: datetime | None = None,
                 name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.store = store
        self.run_ids = list(run_ids)
        self.fixed_now = now
        self.results: list[RunCosts] = []
        self.sort_index = 0

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static(Text("Compare runs — cost per 1M output tokens"), id="compare-title")
        yield Static(Text("Loading…"), id="compare-note")
        yield PagedTable(id="compare-table", fixed=1, cursor_type="row", zebra_stripes=True)
        with Horizontal(id="compare-charts"):
            yield BarChart(id="tps-chart")
            yield BarChart(id="cost-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-table", PagedTable).set_columns([(label, label) for label in COLUMNS])
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-load")
    def load(self) -> None:
        try:
            with self.store.reading():  # one open of the file for every query
                # stored runs and price replies: outside text (engine.terminal_text)
                self.post_message(self.Loaded(safe_display(compare_runs(self.store, self.run_ids, now=self.fixed_now))))
        except Exception as exc:
            self.post_message(self.LoadFailed(safe_display(str(exc))))

    @on(Loaded)
    def show(self, message: Loaded) -> None:
        self.results = message.results
        notes = []
        for rc in self.results:
            speeds = rc.speeds or ([{"tps": rc.tps, "tps_basis": rc.tps_basis}] if rc.tps else [])
            basis = "; ".join(f"{s['tps']:.1f} tok/s {s['tps_basis']}" for s in speeds) or "no TPS"
            if rc.per_user_tps:  # a latency figure, never a cost basis
                basis += f"; per-user speed {rc.per_user_tps:.1f} {rc.per_user_label}"
            notes.append(f"{rc.run_id}: {gpu_label(rc.gpu_key) if rc.gpu_key else rc.device} ({basis}). {rc.note}")
        self.query_one("#compare-note", Static).update(Text("\n".join(n.strip() for n in notes)))
        self.fill_table()
        self.draw_charts()

    @on(LoadFailed)
    def failed(self, message: LoadFailed) -> None:
        self.query_one("#compare-note", Static).update(Text(f"Cannot compare: {message.reason}"))

    def rows(self) -> list[dict]:
        out = []
        for rc in self.results:
            for c in rc.costs:
                out.append(dict(run=rc.run_id, gpu=rc.gpu_key or "", provider=c.provider, basis=c.tps_basis,
                                type=c.pricing_type, tps=c.tps, ttft=c.ttft_ms, usd_per_hour=c.usd_per_hour,
                                usd_per_million=c.usd_per_million, source=c.source, cheapest=c.cheapest,
                                approximate=c.approximate, usd_per_million_answer=c.usd_per_million_answer))
            for r in rc.reference:
                if any(o["source"] == r.label and o["provider"] == r.provider and o["gpu"] == r.gpu_key
                       for o in out):
                    continue  # the article's rows are the same for every run: list each once
                out.append(dict(run=r.label, gpu=r.gpu_key, provider=r.provider, basis=r.tps_basis, type=r.pricing_type,
                                tps=r.tps, ttft=None,
                                usd_per_hour=r.usd_per_hour, usd_per_million=r.usd_per_million, source=r.label,
                                cheapest=False, approximate=False, usd_per_million_answer=None))
        return sorted(out, key=SORTS[self.sort_index][1])

    def fill_table(self) -> None:
        table = self.query_one("#compare-table", PagedTable)
        rows = []
        found = self.rows()
        answers = any(r["usd_per_million_answer"] is not None for r in found)
        columns = list(COLUMNS)
        if answers:
            columns.insert(columns.index("$/1M") + 1, ANSWER_COLUMN)
        for r in found:
            style = "bold green" if r["cheapest"] else ("dim" if r["source"].startswith("article") else "")
            answer = r["usd_per_million_answer"]
            answer_cell = [Text("–" if answer is None else f"{answer:.2f}", style=style, justify="right")]
            rows.append((None, [
                Text(provider_label(r["provider"]) + (" ~" if r["approximate"] else ""), style=style),
                Text(r["gpu"], style=style),
                Text(TpsBasis(r["basis"]).short, style=style),
                Text(f"{r['tps']:.1f}", style=style, justify="right"),
                Text("–" if r["ttft"] is None else f"{r['ttft']:.0f}", style=style, justify="right"),
                Text(f"{r['usd_per_hour']:.2f}", style=style, justify="right"),
                Text(f"{r['usd_per_million']:.2f}" + (" ◀" if r["cheapest"] else ""), style=style, justify="right"),
                *(answer_cell if answers else []),
                Text(r["type"], style=style), Text(r["source"], style=style), Text(r["run"], style=style),
            ]))
        table.set_columns_and_rows([(label, label) for label in columns], rows)
        self.query_one("#compare-title", Static).update(
            Text(f"Compare runs — cost per 1M output tokens · sorted by {SORTS[self.sort_index][0]} (s)"))

    def draw_charts(self) -> None:
        """Two bar charts, every bar labelled and starting at 0; what does not fit is named as left out."""
        tps: dict[str, float] = {}
        for rc in self.results:
            if rc.tps:
                tps[f"{rc.gpu_key or rc.device or 'CPU'} (you)"] = rc.tps
            for r in rc.reference:
                label = f"{r.gpu_key} (article)"
                tps[label] = max(tps.get(label, 0), r.tps)
        bars = [Bar(k, v, "bold" if k.endswith("(you)") else "") for k, v in sorted(tps.items(), key=lambda kv: -kv[1])]
        self.query_one("#tps-chart", BarChart).show("TPS by GPU (tok/s)", bars, digits=0, order="the fastest")
        cost: dict[str, float] = {}
        for rc in self.results:
            for c in rc.costs:
                if c.tps_basis != rc.tps_basis:  # chart each run's headline basis only
                    continue
                label = f"{provider_label(c.provider)} {rc.gpu_key or ''}".strip()
                cost[label] = min(cost.get(label, float("inf")), c.usd_per_million)
        if not cost:
            for rc in self.results:
                for r in rc.reference:
                    cost[f"{provider_label(r.provider)} {r.gpu_key} (article)"] = r.usd_per_million
        bars = [Bar(k, v) for k, v in sorted(cost.items(), key=lambda kv: kv[1])]
        self.query_one("#cost-chart", BarChart).show("$/1M output tokens", bars, digits=2, order="the cheapest")

    def action_columns(self) -> None:
        self.query_one("#compare-table", PagedTable).action_next_page()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.fill_table()
