"""Suite screen: run a suite at batch 1 live — progress with ETA, the current request's text and
gauges, and a results table that fills in per case as repetitions finish."""

from __future__ import annotations

import threading

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from engine.live import LiveMeter, StreamSanitizer
from tui.messages import CaseStarted, ClientHealthWarnings, RequestFinished, SuiteFinished
from tui.widgets.gauges import GaugePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream_view import StreamView

COLUMNS = [
    # (key, header)
    ("case", "case"),
    ("target", "target"),
    ("done", "done"),
    ("tokens", "tokens"),
    ("ttft_mean", "TTFT ms"),
    ("ttft_median", "median"),
    ("ttft_p99", "p99"),
    ("tpot", "TPOT ms"),
    ("tps", "TPS"),
]


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


class SuiteScreen(Screen):
    AUTO_FOCUS = "#suite-table"
    BINDINGS = [
        Binding("r", "run", "Run", id="suite.run"),
        Binding("escape", "cancel", "Cancel", id="suite.cancel"),
    ]

    def __init__(self) -> None:
        super().__init__(id="suite")
        self.meter = LiveMeter(window_s=1.0, bucket_s=0.25)
        self.sanitizer = StreamSanitizer()
        self.stop_event: threading.Event | None = None
        self.worker_done = threading.Event()
        self.worker_done.set()
        self.running = False
        self.suite = None
        self.reps = 0
        self.requests: list = []
        self.metrics: list = []
        self.records: list = []
        self.last_run_id: str | None = None
        self.last_status: str | None = None

    def compose(self) -> ComposeResult:
        from data.paths import bundled_suite_names

        yield StatusBar()
        with Horizontal(id="suite-controls"):
            name = Input("seed", id="suite-name", placeholder="seed or a TOML file",
                         suggester=SuggestFromList(bundled_suite_names(), case_sensitive=False))
            name.border_title = "suite"
            yield name
            reps = Input("", id="suite-reps", type="integer", restrict=r"[0-9]*", max_length=4)
            reps.border_title = "reps"
            yield reps
            yield Static("", id="suite-desc")
        with Horizontal(id="suite-progress-row"):
            yield ProgressBar(total=1, show_eta=True, id="suite-progress")
            yield Static("r runs the suite", id="suite-progress-label")
        with Horizontal(id="suite-live"):
            yield StreamView(id="suite-output", placeholder="The current request's text streams here.")
            yield GaugePanel(id="suite-gauges", compact=True)
        yield DataTable(id="suite-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        self.ticker = self.set_interval(0.125, self.tick, pause=True)
        self._load_suite(self.query_one("#suite-name", Input).value)

    # -- suite selection -----------------------------------------------------------
    @on(Input.Changed, "#suite-name")
    def _name_changed(self, event: Input.Changed) -> None:
        if not self.running:
            self._load_suite(event.value, quiet=True)

    def _load_suite(self, name: str, quiet: bool = False):
        from engine.types import BadRequestError
        from tui.commands.common import resolve_suite

        desc = self.query_one("#suite-desc", Static)
        try:
            suite = resolve_suite(name.strip() or "seed")
        except BadRequestError as exc:
            desc.update(Text(str(exc), style="red"))
            if not quiet:
                self.notify(str(exc), severity="error")
            return None
        self.suite = suite
        cases = ", ".join(f"{c.id} {c.output_tokens}" for c in suite.cases)
        desc.update(Text(f"{suite.name}: {cases} tok · T {suite.temperature}"))
        reps = self.query_one("#suite-reps", Input)
        reps.placeholder = str(suite.reps)
        if not self.running:
            self._reset_table(suite)
        return suite

    def _reset_table(self, suite, reps: int | None = None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        n = reps or suite.reps
        # a determinate bar at 0 (an indeterminate one animates for ever)
        self.query_one(ProgressBar).update(total=len(suite.cases) * n, progress=0)
        for case in suite.cases:
            table.add_row(Text(case.id), str(case.output_tokens), f"0/{n}", *["–"] * (len(COLUMNS) - 3), key=case.id)

    # -- running -------------------------------------------------------------------
    def action_run(self) -> None:
        if self.running:
            self.notify("the suite is running: Esc cancels it", severity="warning")
            return
        suite = self._load_suite(self.query_one("#suite-name", Input).value)
        if suite is None:
            return
        raw = self.query_one("#suite-reps", Input).value.strip()
        try:
            reps = int(raw) if raw else suite.reps
            if reps < 1:
                raise ValueError
        except ValueError:
            self.notify("reps must be a whole number >= 1", severity="error")
            return
        session = self.app.require_session()
        if session is None:
            return
        self.reps = reps
        self.requests = suite.requests(reps)
        self.metrics, self.records = [], []
        self._reset_table(suite, reps)
        bar = self.query_one(ProgressBar)
        bar.update(total=len(self.requests), progress=0)
        self.stop_event = threading.Event()
        self.running = True
        self.last_status = None
        self.query_one(StreamView).focus()
        self.ticker.resume()
        self.worker_done.clear()
        self.run_worker_suite(session, suite, reps, self.stop_event)

    @work(thread=True, exclusive=True, exit_on_error=False, group="suite")
    def run_worker_suite(self, session, suite, reps: int, stop: threading.Event) -> None:
        def on_start(index, total, request):
            self.meter.begin()  # before the request is submitted: no chunk is lost
            self.post_message(CaseStarted(index, total, request))

        def on_record(index, record, metrics):
            self.post_message(RequestFinished(index, record, metrics))

        try:
            run_id, outcome, _runner = session.run_suite(
                suite, reps, on_start=on_start, on_record=on_record, on_chunk=self.meter.feed, stop=stop
            )
            self.post_message(SuiteFinished(run_id, outcome.status, outcome.error))
            warnings = (outcome.summary.get("client_health") or {}).get("warnings") or []
            if warnings:
                self.post_message(ClientHealthWarnings(run_id, warnings))
        except Exception as exc:
            self.post_message(SuiteFinished(None, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]))
        finally:
            self.worker_done.set()

    @on(CaseStarted)
    def case_started(self, message: CaseStarted) -> None:
        req = message.request
        self.tick()  # flush the previous request's tail first
        self.sanitizer = StreamSanitizer()
        self.query_one(StreamView).clear(head=f"{req.case_id} · rep {req.rep + 1}/{self.reps} · "
                                              f"request {message.index + 1}/{message.total}")
        self.query_one("#suite-progress-label", Static).update(
            Text(f"{message.index}/{message.total} · {req.case_id} rep {req.rep + 1}"))

    @on(RequestFinished)
    def request_finished(self, message: RequestFinished) -> None:
        self.records.append(message.record)
        self.metrics.append(message.metrics)
        self.meter.finish(st_ns=message.record.st_ns)
        self.tick()
        self.query_one(ProgressBar).advance(1)
        self.query_one("#suite-progress-label", Static).update(
            Text(f"{len(self.metrics)}/{len(self.requests)} done"))
        self._update_case(message.record.request.case_id)
        if not message.metrics.success and not message.record.aborted:
            self.notify(f"request failed: {message.record.error}", severity="error")

    def _update_case(self, case_id: str) -> None:
        from engine.runner import summarise

        idx = [i for i, r in enumerate(self.records) if r.request.case_id == case_id]
        summary = summarise([self.records[i].request for i in idx], [self.metrics[i] for i in idx],
                            [self.records[i] for i in idx])
        agg = summary["cases"].get(case_id, {})
        done = agg.get("completed", 0)
        values = {
            "done": f"{done}/{self.reps}",
            "tokens": _fmt(agg.get("total_output_tokens", 0) / done if done else None, "{:.0f}"),
            "ttft_mean": _fmt(agg.get("mean_ttft_ms") if done else None, "{:.1f}"),
            "ttft_median": _fmt(agg.get("median_ttft_ms") if done else None, "{:.1f}"),
            "ttft_p99": _fmt(agg.get("p99_ttft_ms") if done else None, "{:.1f}"),
            "tpot": _fmt(agg.get("mean_tpot_ms") if done else None, "{:.2f}"),
            "tps": _fmt(agg.get("mean_tps") if done else None, "{:.1f}"),
        }
        table = self.query_one(DataTable)
        for key, value in values.items():
            table.update_cell(case_id, key, value)

    @on(SuiteFinished)
    def suite_finished(self, message: SuiteFinished) -> None:
        self.running = False
        self.ticker.pause()
        self.last_run_id = message.run_id
        self.last_status = message.status
        done = sum(1 for m in self.metrics if m.success)
        label = f"{message.status}: {done}/{len(self.requests)} requests · run {message.run_id or '–'}"
        self.query_one("#suite-progress-label", Static).update(Text(label))
        if message.status == "completed":
            self.notify(f"suite finished: run {message.run_id}", timeout=4)
        elif message.status == "aborted":
            self.notify(f"suite cancelled; {done} finished requests kept in run {message.run_id}", timeout=5)
        else:
            self.notify(f"suite failed: {message.error}", severity="error", timeout=10)

    def tick(self) -> None:
        snap = self.meter.snapshot()
        with self.app.batch_update():
            self.query_one(StreamView).append(self.sanitizer.feed(snap.text))
            self.query_one(GaugePanel).show(snap)

    def action_cancel(self) -> None:
        if self.running and self.stop_event is not None:
            self.stop_event.set()
            self.notify("cancelling: finished requests are kept", timeout=3)

    def stop_all(self) -> None:
        """On quit: stop the run and let it store its status (aborted) before the engine goes."""
        if self.stop_event is not None:
            self.stop_event.set()
            self.worker_done.wait(10)
