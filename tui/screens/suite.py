"""Suite screen: run a suite at batch 1 live — progress with ETA, the current request's text and
gauges, and a results table that fills in per case as repetitions finish."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from data.analysis.run_figures import BATCH1_HEADER
from engine.measure.progress import TokenProgress, planned_lengths
from engine.terminal_text import StreamSanitizer
from tui.widgets.fields import NumberField, TextField
from tui.widgets.gauges import GaugePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream_view import StreamView

COLUMNS = [
    # (key, header): every latency header says ms; TPS at batch 1 is the article's batch-1 TPS
    ("case", "case"),
    ("target", "target"),
    ("done", "done"),
    ("tokens", "out tok"),
    ("ttft_mean", "TTFT ms"),
    ("ttft_median", "med ms"),
    ("ttft_p99", "p99 ms"),
    ("tpot", "TPOT ms"),
    ("tps", BATCH1_HEADER),
]


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


class SuiteScreen(Screen):
    HELP_TITLE = "Suite"  # Help's title for this screen
    AUTO_FOCUS = "#suite-table"
    HOME_FOCUS = "#suite-table"
    BINDINGS = [
        Binding("r", "run", "Run", id="suite.run", tooltip="run the suite (Enter in a field does too)"),
        Binding("ctrl+r", "run", "Run", id="suite.run_ctrl", show=False, priority=True,
                tooltip="run the suite, whatever has focus"),
        Binding("s", "edit_suite", "Suite field", id="suite.edit", show=False,
                tooltip="the cursor to the suite field (seed, a TOML file or a dataset file); Tab then goes to reps"),
        Binding("escape", "cancel", "Cancel", id="suite.cancel",
                tooltip="cancel the running suite; finished requests are kept"),
        Binding("ctrl+x", "cancel", "Stop", id="suite.stop", priority=True,
                tooltip="stop the running suite, whatever has focus; finished requests are kept"),
    ]

    def __init__(self) -> None:
        super().__init__(id="suite")
        self.sanitizer = StreamSanitizer()
        self.job = None  # the suite shown (the app owns it; this screen only renders it)
        self.suite = None
        self.reps = 0
        self.requests: list = []
        self.metrics: list = []
        self.records: list = []
        self.shown_index: int | None = None  # the request whose gauges and text are shown
        self.progress = TokenProgress([])  # in tokens: the ETA the CLI gives too
        self._applied = 0  # finished requests already in the table
        self._final_shown = False

    def compose(self) -> ComposeResult:
        from data.paths import bundled_suite_names

        yield StatusBar()
        with Horizontal(id="suite-controls"):
            name = TextField("seed", id="suite-name", placeholder="seed or a TOML file",
                         suggester=SuggestFromList(bundled_suite_names(), case_sensitive=False))
            name.border_title = "suite"
            yield name
            reps = NumberField("", id="suite-reps", type="integer", restrict=r"[0-9]*", max_length=4)
            reps.border_title = "reps"
            yield reps
            yield Static("", id="suite-desc")
        with Horizontal(id="suite-progress-row"):
            # The ETA is ours (engine.measure.progress: by tokens, as `tokentop bench`), in the label.
            yield ProgressBar(total=1, show_eta=False, id="suite-progress")
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

    def on_screen_resume(self) -> None:
        view = self._view()
        if view is not None and (view.running or not self._final_shown):
            self.ticker.resume()  # catch up with a suite that ran while this screen was away

    def _view(self):
        runs = getattr(self.app, "runs", None)
        return runs.view("suite") if runs is not None else None

    @property
    def running(self) -> bool:
        view = self._view()
        return view is not None and view.running

    @property
    def last_run_id(self) -> str | None:
        view = self._view()
        return view.run_id if view is not None and view.result is not None else None

    @property
    def last_status(self) -> str | None:
        view = self._view()
        return view.result.status if view is not None and view.result is not None and self._final_shown else None

    # -- suite selection -----------------------------------------------------------
    @on(Input.Changed, "#suite-name")
    def _name_changed(self, event: Input.Changed) -> None:
        if not self.running:
            self._load_suite(event.value, quiet=True)

    def _load_suite(self, name: str, quiet: bool = False):
        from data.paths import resolve_suite
        from engine.types import BadRequestError

        desc = self.query_one("#suite-desc", Static)
        try:
            suite = resolve_suite(name.strip() or "seed")
        except BadRequestError as exc:
            desc.update(Text(str(exc), style="red"))
            if not quiet:
                self.notify(str(exc), severity="error")
            return None
        self.suite = suite
        if suite.dataset is not None:  # the prompts come from a dataset file (engine.workloads)
            desc.update(Text(f"{suite.name}: {suite.workload().label()}, {suite.dataset_prompts} prompts a "
                             f"repetition, T={suite.temperature}"))
        else:
            cases = ", ".join(f"{c.id} {c.output_tokens}" for c in suite.cases)
            desc.update(Text(f"{suite.name}: {cases} tok, T={suite.temperature}"))
        reps = self.query_one("#suite-reps", Input)
        reps.placeholder = str(suite.reps)
        if not self.running:
            self._reset_table(suite)
        return suite

    def _reset_table(self, suite, reps: int | None = None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        n = reps or suite.reps
        per_case = n * (suite.dataset_prompts if suite.dataset is not None else 1)  # a dataset: its prompts, each rep
        # a determinate bar at 0 (an indeterminate one animates for ever)
        self.query_one(ProgressBar).update(total=len(suite.cases) * per_case, progress=0)
        for case in suite.cases:
            target = str(case.output_tokens) if case.output_tokens else "file's"
            # Placeholders right-aligned like the figures that replace them (a stopped suite's unreached
            # cases keep theirs): every cell of a figure column lines up at its right edge.
            table.add_row(Text(case.id), target, Text(f"0/{per_case}", justify="right"),
                          *[Text("–", justify="right")] * (len(COLUMNS) - 3), key=case.id)

    @on(Input.Submitted, "#suite-name, #suite-reps")
    def _field_submitted(self) -> None:
        self.action_run()

    # -- running -------------------------------------------------------------------
    def stop_run(self) -> bool:
        """Stop this screen's kind of run (the app holds it); True when one was running."""
        if self.running:
            self.app.runs.stop()
            return True
        return False

    def action_edit_suite(self) -> None:
        """`s`: the cursor into the suite field, whatever had focus (or nothing yet, on a screen just opened).
        At once, not with Widget.focus(), which defers the move behind keys already queued: a path typed
        right after `s` would run its letters as shortcuts."""
        self.set_focus(self.query_one("#suite-name", Input))

    def action_run(self) -> None:
        if self.running:
            self.notify("the suite is running: Esc stops it", severity="warning")
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
        from engine.types import EngineError

        try:
            self.job = self.app.runs.start_suite(suite, reps)
        except EngineError as exc:  # another run holds the engine
            self.notify(str(exc), severity="warning")
            return
        self.reps = reps
        # A dataset suite's prompts are sampled in the run's own thread (a file read, maybe a tokenizer load).
        self.requests = suite.requests(reps) if suite.dataset is None else []
        self.metrics, self.records = [], []
        self.shown_index, self._applied, self._final_shown = None, 0, False
        self._reset_table(suite, reps)
        # Progress in tokens where every request's length is known; a dataset suite (sampled later, in
        # the run's thread) counts requests.
        self.progress = TokenProgress(planned_lengths(self.requests) if self.requests
                                      else [None] * (len(suite.cases) * self._per_case()))
        self.query_one(ProgressBar).update(total=self.progress.total, progress=0)
        self.query_one(StreamView).focus()
        self.ticker.resume()

    def tick(self) -> None:
        """Render the app's suite view: each request's own gauges and text (never two mixed),
        finished requests into the table, and the outcome once it is stored."""
        view = self._view()
        if view is None:
            return
        if self.job is not view.job:  # started before this screen knew (or a new app run)
            self._adopt(view)
        if self._final_shown:
            self._settle_gauges(view)
            return
        with self.app.batch_update():
            self._show_request(view)
            self._apply_finished(view)
            if view.result is not None and self.shown_index == view.current_index and not self._final_shown:
                meter = view.meters.get(self.shown_index) if self.shown_index is not None else None
                if meter is None or meter.done:
                    self._finished(view)
            elif view.stopping:
                self.query_one("#suite-progress-label", Static).update(
                    Text(f"stopping… storing run {view.run_id} as aborted"))

    def _adopt(self, view) -> None:
        self.job = view.job
        self.requests = [view.requests[i] for i in sorted(view.requests)]
        self.metrics, self.records = [], []
        self.shown_index, self._applied, self._final_shown = None, 0, False
        if self.suite is not None:
            reps = max(1, view.total // max(1, len(self.suite.cases)))
            self._reset_table(self.suite, reps)
            self.progress = TokenProgress(planned_lengths(self.suite.requests(reps)) if self.suite.dataset is None
                                          else [None] * view.total)  # a dataset is never sampled here
        else:
            self.progress = TokenProgress([None] * view.total)

    def _show_request(self, view) -> None:
        current = view.current_index
        if current is None:
            return
        if self.shown_index is None:
            self._switch_to(view, min(view.meters) if view.meters else current)
        index = self.shown_index
        meter = view.meters.get(index)
        if meter is None:  # dropped while away: jump ahead
            self._switch_to(view, current)
            index, meter = current, view.meters.get(current)
            if meter is None:
                return
        snap = meter.snapshot()
        text = self.sanitizer.feed(snap.text) + (self.sanitizer.flush() if snap.done else "")
        self.query_one(StreamView).append(text)
        self.query_one(GaugePanel).show(snap)
        if not snap.done:
            self.progress.live(snap.tokens)
            self._show_progress(view)
        if snap.done and index < current:
            self._switch_to(view, index + 1)  # the next request shows from the next tick

    def _switch_to(self, view, index: int) -> None:
        self.shown_index = index
        req = view.requests.get(index)
        total = view.total
        self.sanitizer = StreamSanitizer()
        if req is not None:
            self.query_one(StreamView).clear(head=f"{req.case_id} · rep {req.rep + 1}/{self._per_case()} · "
                                                  f"request {index + 1}/{total}")
            self.query_one("#suite-progress-label", Static).update(
                Text(f"{len(self.metrics)}/{total} req · {self.progress.text()}"))

    def _apply_finished(self, view) -> None:
        while self._applied in view.records:
            i = self._applied
            record, metrics = view.records[i], view.metrics[i]
            self.records.append(record)
            self.metrics.append(metrics)
            self._applied += 1
            self.progress.live(0)
            self.progress.finish(i)
            self._show_progress(view)
            self._update_case(record.request.case_id, view.case_summaries.get(record.request.case_id, {}))
            if not metrics.success and not record.aborted:
                self.notify(f"request failed: {record.error}", severity="error")

    def _show_progress(self, view) -> None:
        self.query_one(ProgressBar).update(total=self.progress.total, progress=self.progress.progress)
        self.query_one("#suite-progress-label", Static).update(
            Text(f"{len(self.metrics)}/{view.total} req · {self.progress.text()}"))

    def _per_case(self) -> int:
        """Requests per case: the repetitions, or for a dataset suite its prompts in every repetition."""
        suite = self.suite
        if suite is not None and suite.dataset is not None:
            return (self.reps or suite.reps) * suite.dataset_prompts
        return self.reps

    def _update_case(self, case_id: str, agg: dict) -> None:
        done = agg.get("completed", 0)
        values = {
            "done": f"{done}/{self._per_case()}",
            "tokens": _fmt(agg.get("mean_output_tokens") if done else None, "{:.0f}"),
            "ttft_mean": _fmt(agg.get("mean_ttft_ms") if done else None, "{:.1f}"),
            "ttft_median": _fmt(agg.get("median_ttft_ms") if done else None, "{:.1f}"),
            "ttft_p99": _fmt(agg.get("p99_ttft_ms") if done else None, "{:.1f}"),
            "tpot": _fmt(agg.get("mean_tpot_ms") if done else None, "{:.2f}"),
            "tps": _fmt(agg.get("mean_tps") if done else None, "{:.1f}"),
        }
        table = self.query_one(DataTable)
        for key, value in values.items():
            try:
                # update_width: a value wider than the column's first "–" must widen it, never be cut
                table.update_cell(case_id, key, Text(value, justify="right"), update_width=True)
            except Exception:  # a case not in the table (the suite field changed meanwhile)
                pass

    def _settle_gauges(self, view) -> None:
        """After the suite ended or was stopped: the last request's gauges keep being drawn until
        "tok/s now" (a 1 s window on the wall clock) has fallen to 0, as on Live; then the ticker
        stops. Drawn no longer, it froze at its last value (17.0 twelve seconds after a stop)."""
        meter = view.meters.get(self.shown_index) if self.shown_index is not None else None
        snap = meter.snapshot() if meter is not None else None
        if snap is not None:
            self.query_one(GaugePanel).show(snap)
        if snap is None or snap.tps_now == 0:
            self.ticker.pause()

    def _finished(self, view) -> None:
        self._final_shown = True
        result = view.result
        done = sum(1 for m in self.metrics if m.success)
        label = f"{result.status}: {done}/{view.total} requests · run {view.run_id or '–'}"  # wraps, never cut
        self.query_one("#suite-progress-label", Static).update(Text(label))

    def action_cancel(self) -> None:
        if self.running:
            self.app.runs.stop()
            self.notify("stopping: finished requests are kept", timeout=3)
