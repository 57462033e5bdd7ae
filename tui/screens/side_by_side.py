"""Two or more runs side by side: settings and per-case figures in columns, differences
highlighted (≠ on rows whose values differ; best figure green, worst red, Δ% against the first run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from data.analysis.run_figures import BATCH1_HEADER, PER_USER_HEADER, speed_header, speed_kind
from data.analysis.workload_labels import label_runs
from engine.terminal_text import one_line, safe_display
from tui.cells import case_rows, fmt_date, model_name, plain_value, workload_name
from tui.matrix_format import short_level
from tui.row_table import RowTable
from tui.widgets.bar_chart import Bar, BarChart
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

# (label, getter, format, higher is better?) for per-case figures
CASE_FIGURES: list[tuple[str, str, str, bool]] = [
    (BATCH1_HEADER, "mean_tps", "{:.1f}", True),  # runs at batch 1 only
    (PER_USER_HEADER, "mean_tps", "{:.1f}", True),  # load levels with requests beside each other only
    ("TTFT mean ms", "mean_ttft_ms", "{:.1f}", False),
    ("TTFT p99 ms", "p99_ttft_ms", "{:.1f}", False),
    ("TPOT mean ms", "mean_tpot_ms", "{:.2f}", False),
    ("ITL p99 ms", "p99_itl_ms", "{:.2f}", False),
    ("decode tok/s", "mean_decode_rate", "{:.1f}", True),
    ("out tok/req", "mean_output_tokens", "{:.0f}", None),
    ("requests", "completed", "{:.0f}", None),
]


def vllm_version(run: dict) -> str | None:
    """The vLLM version a stored run ran with, as its detail shows it: the environment's `versions`
    (engine.telemetry.environment.collect: {"versions": {"vllm": "0.32.0", ...}}), else an older
    environment's top-level `vllm`; None when neither says."""
    env = run.get("environment") or {}
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    return versions.get("vllm") or env.get("vllm")


SETTINGS: list[tuple[str, Callable[[dict], Any]]] = [
    ("started", lambda r: fmt_date(r.get("started_at"))),
    ("status", lambda r: r.get("status")),
    ("kind", lambda r: r.get("kind")),
    ("workload", workload_name),
    ("host", lambda r: r.get("hostname")),
    ("device", lambda r: r.get("device")),
    ("GPU key", lambda r: r.get("gpu_key")),
    ("engine", lambda r: r.get("engine")),
    ("model", model_name),
    ("dtype", lambda r: r.get("dtype")),
    ("suite", lambda r: r.get("suite")),
    ("reps", lambda r: r.get("reps")),
    ("engine args", lambda r: plain_value(dict(sorted((r.get("engine_args") or {}).items())))),
    ("vllm", vllm_version),
]
RUN_COLUMN_WIDTH = 22
ALWAYS_DIFFERENT = {"started"}  # dates always differ; not worth a highlight
LEVEL_ROW = "level"  # the one case every load level has, when the levels differ (see match_cases)


def load_level(run: dict) -> str | None:
    """A stored load level's label ("concurrency 2", data.jobs.load.level_settings' "label"), else its one
    case's name; None for a run that is not a load level."""
    if run.get("kind") != "load":
        return None
    label = (run.get("suite_json") or {}).get("label")
    return label or next(iter((run.get("summary") or {}).get("cases") or {}), None)


def match_cases(runs: list[dict], per_run: list[dict[str, dict]]) -> list[dict[str, dict]]:
    """Which figures share a row: the same case name (a suite's cases, the same load level). Load levels
    are the exception: each is one case named after its level, so `concurrency 1` beside `concurrency 2`
    would share no row; when every run is a load level and their levels differ, each run's one case
    becomes the row LEVEL_ROW ("level"), and which level each run ran is in its column's header and in
    the `level` settings row. Returns per_run, renamed where that applies ({case: figures} per run)."""
    levels = [load_level(r) for r in runs]
    if len(runs) > 1 and all(levels) and all(len(rows) == 1 for rows in per_run) and len(set(levels)) > 1:
        return [{LEVEL_ROW: next(iter(rows.values()))} for rows in per_run]
    return per_run


def numeric_cells(values: list[float | None], pattern: str, higher_better: bool | None) -> tuple[list[Text], bool]:
    present = [v for v in values if v is not None]
    differs = len(set(round(v, 6) for v in present)) > 1 or (present and len(present) != len(values))
    best = worst = None
    if higher_better is not None and len(present) > 1 and differs:
        best = max(present) if higher_better else min(present)
        worst = min(present) if higher_better else max(present)
    base = values[0]
    cells = []
    for i, v in enumerate(values):
        if v is None:
            cells.append(Text("–", justify="right"))
            continue
        t = Text(pattern.format(v), justify="right")
        if i > 0 and base not in (None, 0) and differs:
            delta = (v - base) / abs(base) * 100
            t.append(f" {delta:+.0f}%", style="dim")
        if best is not None and v == best:
            t.stylize("bold green")
        elif worst is not None and v == worst:
            t.stylize("red")
        cells.append(t)
    return cells, bool(differs)


class SideBySideScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Side by side"  # Help's title for this screen
    HELP_SCROLL = "move through the rows: Home the first row, End the last (↑ ↓ PgUp PgDn one row, a page)"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="sidebyside.back"),
        Binding("c", "costs", "Costs", id="sidebyside.costs"),
    ]

    @dataclass
    class RunsLoaded(Message):
        runs: list[dict]
        error: str | None = None

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.runs: list[dict] = []
        self.differences: list[str] = []

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static("", id="sbs-title")
        yield RowTable(id="sbs-table", cursor_type="row", zebra_stripes=True)
        yield BarChart(id="sbs-chart")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sbs-load")
    def _load_runs(self) -> None:
        """The database is read in a worker: another process may hold it for a moment."""
        store = self.app.store
        try:
            with store.reading():  # one open of the file for every run
                runs = [r for r in (store.get_run(i) for i in self.run_ids) if r is not None]
                label_runs(store, runs)  # one label per workload: two that share one are told apart (≠)
        except Exception as exc:
            self.post_message(self.RunsLoaded([], one_line(exc)))
            return
        self.post_message(self.RunsLoaded(safe_display(runs)))  # stored runs: outside text

    @on(RunsLoaded)
    def _runs_loaded(self, message: RunsLoaded) -> None:
        if message.error is not None:
            self.notify(f"could not read the runs: {message.error}", severity="error", timeout=10)
            return
        self.runs = message.runs
        table = self.query_one(DataTable)
        table.add_column("", key="label")
        levels = [load_level(r) for r in self.runs]
        for i, run in enumerate(self.runs):
            # A fixed width: figures (with their Δ%) fit; long settings wrap onto more lines, never cut.
            header = f"{chr(65 + i)} {run['run_id'][-6:]}" if i < 26 else run["run_id"][-6:]
            if levels[i]:  # a load level says which: "A 9647f1 c=2"
                header += " " + short_level(levels[i])[:RUN_COLUMN_WIDTH - len(header) - 1]
            table.add_column(header, key=run["run_id"], width=RUN_COLUMN_WIDTH)
        title = Text()  # wraps between words at 80 columns
        title.append("side by side: ", style="bold")
        title.append("  ".join(f"{chr(65 + i)}={r['run_id']}" for i, r in enumerate(self.runs)))
        title.append("   ≠ differs · green best · red worst · Δ% vs A", style="dim")
        self.query_one("#sbs-title", Static).update(title)

        per_run = match_cases(self.runs, [dict(case_rows(run)) for run in self.runs])
        cases: list[str] = []
        for rows in per_run:
            cases += [c for c in rows if c not in cases]
        for case in cases:
            for label, key, pattern, higher in CASE_FIGURES:
                values = [rows.get(case, {}).get(key) for rows in per_run]
                if label in (BATCH1_HEADER, PER_USER_HEADER):  # one speed, in the column it belongs to
                    kind = "batch1" if label == BATCH1_HEADER else "per_user"
                    values = [v if speed_kind(run) == kind else None for v, run in zip(values, self.runs)]
                if all(v is None for v in values):
                    continue
                cells, differs = numeric_cells(values, pattern, higher)
                name = f"{case} {label}"
                if differs:
                    self.differences.append(name)
                table.add_row(self._label(name, differs), *cells)
        settings = SETTINGS[:3] + ([("level", load_level)] if any(levels) else []) + SETTINGS[3:]  # after kind
        for label, get in settings:
            full = ["" if get(r) is None else str(get(r)) for r in self.runs]
            differs = len(set(full)) > 1 and label not in ALWAYS_DIFFERENT
            if differs:
                self.differences.append(label)
            style = "bold yellow" if differs else ""
            table.add_row(self._label(label, differs), *[Text(v or "–", style=style) for v in full], height=None)

        self._chart(cases, per_run)
        table.focus()

    def on_resize(self) -> None:
        self.query_one(BarChart).display = self.size.height >= 30

    @staticmethod
    def _label(label: str, differs: bool) -> Text:
        return Text(("≠ " if differs else "  ") + label, style="bold" if differs else "dim")

    def _chart(self, cases: list[str], per_run: list[dict[str, dict]]) -> None:
        """Each case's speed per run, one labelled bar each (A, B, ... as in the table's columns)."""
        bars = []
        for case in cases:
            for i, (run, rows) in enumerate(zip(self.runs, per_run)):
                value = rows.get(case, {}).get("mean_tps")
                if value is not None:
                    bars.append(Bar(f"{case} {chr(65 + i)} ({speed_header(run)})", value))
        self.query_one("#sbs-chart", BarChart).show("speed by case and run (tok/s)", bars, digits=1,
                                                    order="in the table's order")

    def action_costs(self) -> None:
        self.app.open_costs([r["run_id"] for r in self.runs])
