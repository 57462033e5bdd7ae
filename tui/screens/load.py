"""Load screen: pick a pattern, levels, the workload (random tokens, shared prefixes, a dataset file,
a trace, a suite; multi-turn) and SLOs; watch throughput, concurrency, TTFT and errors live; a chart of
throughput and TTFT against concurrency grows as the sweep proceeds. Each workload's own fields show
when it is chosen; the form's values go through the same domain rules as `tokentop load`'s options
(engine.workloads.options: each field is an option's declaration, read by options_from_form with the
command's validators, then load_spec).

The load runs in the app's run orchestrator (engine/orchestrator.py), not in this screen: Esc leaves
while it goes on, and reopening the screen shows it (still going, or its levels). The screen renders
the app's RunWatcher view and the job's live counters on a 4 Hz timer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from engine.load.driver import LoadSnapshot
from engine.terminal_text import safe_display, safe_text
from engine.workloads.options import (
    Option,
    form_fields,
    form_groups,
    form_workloads,
    group_shown,
    option,
    options_from_form,
)
from tui.cells import load_cell, load_columns
from tui.widgets.check_box import CheckBox
from tui.widgets.fields import NumberField, TextField
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.load_chart import LoadChart
from tui.widgets.paged_table import PagedTable
from tui.widgets.status_bar import StatusBar
from tui.workers import SaysWorkerFailures

if TYPE_CHECKING:
    from data.jobs.load import LevelRow

DEFAULT_OUTPUT_LEN = "128"  # vLLM's --random-output-len default, as `tokentop load`


def _labelled(opt: Option):
    """A declared option's form field (engine.workloads.options.Field) as widgets: its label, then the
    input (digits only for a number) or a checkbox."""
    f = opt.field
    if f.widget == "check":
        yield CheckBox(f.label, id=f.id, compact=True)  # [x] / [ ]: on and off told apart without colour
        return
    yield Label(f.label, classes="load-label")
    if f.widget == "number":
        yield NumberField(f.value, placeholder=f.placeholder, id=f.id, restrict=r"[0-9]*", compact=True)
    else:
        yield TextField(f.value, placeholder=f.placeholder, id=f.id, compact=True)


# The end of a sweep's notes (LoadScreen.notes), by title, and the word the end-of-sweep notice uses for each.
NOTE_FAILED = "Requests failed"
NOTE_STEADY = "Steady state (>= 95 % of the concurrency in flight)"
NOTE_SPLIT = "TTFT split by the server's timing (ms)"
NOTE_TURNS = "TTFT p50 by turn"
NOTE_WORKLOAD = "Workload"
NOTE_CHECK = "Client self-check (engine.measure.client_health)"
NOTE_SHORT = {NOTE_FAILED: "failures", NOTE_STEADY: "steady state", NOTE_SPLIT: "TTFT split",
              NOTE_TURNS: "TTFT by turn", NOTE_WORKLOAD: "workload", NOTE_CHECK: "client self-check"}


def _f(value: Any, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


class LoadScreen(SaysWorkerFailures, Screen):
    HELP_TITLE = "Load"  # Help's title for this screen
    CSS_PATH = "load.tcss"
    HOME_FOCUS = "#load-table"
    STATUS_KEY = "load"  # underlined in the status bar
    BINDINGS = [
        # Priority: they work from inside a form field too (an Input takes Ctrl+X for cut otherwise).
        Binding("ctrl+r", "start", "Start", id="load.start", priority=True,
                tooltip="start the load with the form's settings, whatever has focus"),
        Binding("ctrl+x", "stop", "Stop", id="load.stop", priority=True,
                tooltip="stop, whatever has focus: in-flight requests are cut short (kept), unsent ones dropped"),
        Binding("ctrl+f", "frontier", "Frontier", id="load.frontier",
                tooltip="after a sweep: its priced frontier, or back to throughput and TTFT against load"),
        Binding("escape", "app.pop_screen", "Back", id="load.back",
                tooltip="on the form: out of it, to the table (on the form, digits and letters never switch "
                        "screens: F2-F7 do, or Esc then 1 2 3 p m); again: back to the previous screen (a "
                        "running load goes on in the app)"),
        Binding("v", "columns", "Columns", id="load.columns", show=False,
                tooltip="the results table's other columns (at 80 wide they do not all fit)"),
        Binding("n", "notes", "Notes", id="load.notes", show=False,
                tooltip="after a sweep: its notes (failures, steady state, TTFT split, TTFT by turn, workload)"),
    ]
    FORM = ".load-row"  # the form's rows: the app's letter and digit shortcuts never fire from a control in them

    @dataclass
    class FrontierReady(Message):
        frontier: Any

    def __init__(self, session, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.runs = None  # the app's (a load outlives this screen: Esc leaves, the load goes on)
        self.job = None
        self.points: list[tuple[float, float, float | None]] = []  # (concurrency or rate, tok/s, TTFT p99)
        self.finished: list[LevelRow] = []  # the finished levels, typed (data.jobs.load.LevelRow)
        self.check_lines: list[str] = []  # "<level>: <warning>" of the client self-check, for the notes
        self.last_message = ""
        self._final_shown = False
        self._levels_seen = 0
        self.frontier = None  # the last sweep's priced frontier (data.analysis.frontier), shown after it ends
        self.workload = None  # the workload of the load started here (its notes are shown when it ends)
        self._input_len = "128"  # kept while another workload hides the random-only input length
        self.turn_lines: list[str] = []  # TTFT p50 per turn of the last multi-turn load
        # The last sweep's notes, {title: lines}, in one place (n) instead of a toast each over the table.
        self.notes: dict[str, list[str]] = {}
        self.queued = None  # a sweep started (Ctrl+R) while the engine starts: it runs once it is ready
        self._progress: tuple[Any, Any] | None = None  # (the running level, its LevelProgress)
        self.chart_view = "load"  # load: throughput and TTFT vs load; frontier: ctrl+f

    def compose(self) -> ComposeResult:
        # Every field has a label beside it and is wide enough for its whole value and placeholder.
        yield StatusBar()
        with Horizontal(classes="load-row"):
            yield Label("pattern", classes="load-label")
            yield Select([("concurrency", "concurrency"), ("request rate", "rate")], value="concurrency",
                         allow_blank=False, id="load-pattern", compact=True)
            yield Label("levels", classes="load-label")
            yield TextField("1,2,4", placeholder="1,2,4 or sweep", id="load-levels", compact=True)
            yield Button("Start", id="load-start", variant="success", compact=True)
            yield Button("Stop", id="load-stop", variant="error", disabled=True, compact=True)
        with Horizontal(classes="load-row"):
            yield Label("workload", classes="load-label")
            yield Select([(k, k) for k in form_workloads()], value="random", allow_blank=False, id="load-workload",
                         compact=True)
            yield Label("file", classes="load-label")
            yield TextField("", placeholder="a dataset file, or a suite (seed, TOML)", id="load-file", compact=True,
                        disabled=True)
        with Horizontal(classes="load-row"):
            for dest in ("input_len", "output_len", "num_prompts", "burstiness"):
                yield from _labelled(option(dest))
        with Horizontal(classes="load-row", id="load-options"):
            for group in form_groups():  # each workload's own fields, as its module declares them
                with Horizontal(classes="load-opts", id=group):
                    for opt in form_fields(group):
                        yield from _labelled(opt)
            yield from _labelled(option("num_warmups"))
        with Horizontal(classes="load-row"):
            yield from _labelled(option("slo"))
            yield Static(Text("goodput: requests within every SLO"), id="load-slo-hint")
        yield Static("", id="load-live")
        with Horizontal(id="load-body"):
            with Vertical(id="load-left"):
                yield PagedTable(id="load-table", fixed=1, cursor_type="row")
                yield LoadChart(id="load-chart")
            yield GpuPanel(getattr(self.session, "gpu", None), id="load-gpu")  # the session's one sampler
        yield Label("", id="load-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show_workload_fields("random")
        self._restore_form()  # what was typed before this screen was last left
        self._show_table()  # the columns of tui.cells.LOAD_TABLE_COLUMNS that every run shows
        self.query_one("#load-table", PagedTable).border_subtitle = "latencies in ms"
        runs = getattr(self.app, "runs", None)
        if runs is None:  # hosted by a bare App (tests): this screen holds the runs itself
            from tui.runs import AppRuns

            runs = AppRuns(self.post_message)
            runs.attach(self.session)
        self.runs = runs
        self.set_interval(0.25, self.refresh_live)
        self._draw_chart()
        if self._view() is not None:
            self.refresh_live()  # a load started earlier: show it, still going or finished

    # -- the form's values outlive the screen (the app keeps them) ------------------------------
    def _form_fields(self) -> list:
        return [w for w in self.query("Input, Select, Checkbox") if (w.id or "").startswith("load-")]

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _save_form(self) -> None:
        """Every change is kept in the app (`form_values`), so leaving the screen loses nothing."""
        kept = getattr(self.app, "form_values", None)
        if kept is None:  # hosted by a bare App (tests): nothing outlives the screen
            return
        values: dict[str, Any] = {w.id: w.value for w in self._form_fields()}
        values["_input_len"] = self._input_len
        kept["load"] = values

    def _restore_form(self) -> None:
        """The values kept when this screen was last left: the workload and multi-turn first (they decide
        which fields show), then every field as it was, without the change events of a user's edit."""
        values = (getattr(self.app, "form_values", None) or {}).get("load")
        if not values:
            return
        fields = {w.id: w for w in self._form_fields()}
        self._input_len = values.get("_input_len") or self._input_len
        with self.prevent(Select.Changed, Checkbox.Changed):
            for first in ("load-workload", "load-multi-turn"):
                if first in fields and first in values:
                    fields[first].value = values[first]
            self._show_workload_fields(str(fields["load-workload"].value))
            for key, widget in fields.items():
                if key in values and key not in ("load-workload", "load-multi-turn"):
                    widget.value = values[key]

    def _view(self):
        return self.runs.view("load") if self.runs is not None else None

    @property
    def running(self) -> bool:
        """A load runs (or has ended but this screen has not shown its outcome yet)."""
        view = self._view()
        if view is None:
            return False
        return view.running or self.job is not view.job or not self._final_shown

    # -- the workload's fields ---------------------------------------------------------------
    @on(Select.Changed, "#load-workload")
    def _workload_changed(self, event: Select.Changed) -> None:
        # The value shown now, not the event's: Select says Changed for its first value after it mounts,
        # which comes after a kept form was restored (_restore_form).
        self._show_workload_fields(str(self.query_one("#load-workload", Select).value))

    @on(Checkbox.Changed, "#load-multi-turn")
    def _multi_turn_changed(self, event: Checkbox.Changed) -> None:
        self._show_workload_fields(str(self.query_one("#load-workload", Select).value))

    def _show_workload_fields(self, kind: str) -> None:
        """Only the chosen workload's own fields show; input len is for random tokens only; a dataset's
        output lengths are its own unless output len is typed."""
        checked = {o.dest: self.query_one(f"#{o.field.id}", Checkbox).value for o in form_fields()
                   if o.field.widget == "check"}
        for group in form_groups():
            self.query_one(f"#{group}").display = group_shown(group, kind, checked)
        file = self.query_one("#load-file", Input)
        from engine.workloads.registry import file_datasets

        file.disabled = kind not in (*file_datasets(), "suite")  # the families that read no file
        file.placeholder = ("none: tokens are drawn" if file.disabled else "seed, or a suite TOML file"
                            if kind == "suite" else "a JSON, JSONL, CSV or Parquet file")
        trace = kind.endswith("_trace")
        for field in ("#load-pattern", "#load-levels"):  # a trace sets its own send times
            self.query_one(field).disabled = trace
        self.query_one("#load-levels", Input).placeholder = "the trace's times" if trace else "1,2,4 or sweep"
        if trace:
            from engine.workloads.traces import PRESETS

            preset = PRESETS[kind]
            self.query_one("#load-time-scale", Input).placeholder = f"{preset['sec_multiplier']:g}"
            self.query_one("#load-block", Input).placeholder = str(preset["chunk_hash_size"])
        inputs = self.query_one("#load-input-len", Input)
        if kind == "random":
            inputs.disabled = False
            inputs.value = inputs.value or self._input_len
        elif not inputs.disabled:
            self._input_len = inputs.value or self._input_len
            inputs.value, inputs.disabled = "", True
        inputs.placeholder = "128" if kind == "random" else "–"
        output = self.query_one("#load-output-len", Input)
        if kind in ("random", "prefix_repetition"):
            if not output.value:
                output.value = DEFAULT_OUTPUT_LEN
            output.placeholder = DEFAULT_OUTPUT_LEN
        else:
            if output.value == DEFAULT_OUTPUT_LEN:
                output.value = ""  # a dataset's, trace's or suite's own lengths, unless typed
            output.placeholder = "file's" if kind != "suite" else "suite"

    # -- form -> spec -------------------------------------------------------------------
    def build_spec(self):
        """The form's settings through the same domain functions as `tokentop load`'s options."""
        from data.jobs.load import load_spec

        def val(widget_id: str) -> str:
            return self.query_one(widget_id, Input).value.strip()

        def read(dest: str) -> Any:  # a general field through its option's validator; empty: None
            text = val(f"#{option(dest).field.id}")
            return option(dest).parse(text) if text else None

        kind = str(self.query_one("#load-workload", Select).value)
        texts: dict[str, Any] = {o.dest: self.query_one(f"#{o.field.id}").value for o in form_fields()}
        texts["dataset_path"] = val("#load-file")
        options, suite = options_from_form(kind, texts)
        warmups = read("num_warmups") or 0

        pattern = self.query_one("#load-pattern", Select).value
        levels = val("#load-levels") or ("1,2,4" if pattern == "concurrency" else "1")
        burstiness = read("burstiness") or 1.0
        trace = kind.endswith("_trace")
        return load_spec(
            concurrency=None if trace else levels if pattern == "concurrency" else None,
            request_rate=None if trace else levels if pattern == "rate" else None,
            burstiness=burstiness if pattern == "rate" and not trace else 1.0,
            input_len=read("input_len") if kind == "random" else None,
            output_len=read("output_len"),
            num_prompts=read("num_prompts"),
            slo=val("#load-slo") or None,
            suite=suite, workload=options, num_warmups=warmups,
        )

    # -- actions ------------------------------------------------------------------------
    def stop_run(self) -> bool:
        """Stop this screen's kind of run (the app holds it); True when one was running."""
        view = self._view()
        if view is not None and view.running:
            self.runs.stop()
            return True
        return False

    @on(Input.Submitted, ".load-row Input")
    @on(Button.Pressed, "#load-start")
    def action_start(self) -> None:
        if self.running:
            return
        try:
            spec = self.build_spec()
        except Exception as exc:  # UsageError / BadRequestError / ValueError: one line
            self.notify(str(exc), severity="error", title="Load settings")
            return
        self._focus_results()
        if self.session is None and getattr(self.app, "engine_state", None) == "starting":
            # The form needs no engine; the sweep does: it waits for it, as checked now.
            self.queued = spec
            self._set_status("the engine is starting; the sweep starts when it is ready (Ctrl+X drops it)")
            return
        self._start(spec)

    def _focus_results(self) -> None:
        """A sweep started from the form: the cursor leaves it for the results table, so the table's keys
        (v, n, arrows) act on it instead of being typed into the field Enter was pressed in."""
        focused = self.focused
        if focused is None or focused.disabled or self.form_has_focus():
            self.query_one(self.HOME_FOCUS).focus()

    def form_has_focus(self) -> bool:
        """A control of the form (a field, selector, checkbox or button) has the cursor: the app's letter
        and digit shortcuts do not fire from it (tui.app.TokentopApp.on_key)."""
        node = self.focused
        while node is not None and node is not self:
            if node.has_class(self.FORM[1:]):
                return True
            node = node.parent
        return False

    def engine_ready(self) -> None:
        """Called by the app when the engine is up: the screen's session, and the sweep queued meanwhile."""
        self.session = getattr(self.app, "session", None) or self.session
        spec, self.queued = self.queued, None
        if spec is not None and not self.running:
            self._start(spec)

    def _start(self, spec) -> None:
        from engine.types import EngineError

        if getattr(self.runs, "session", None) is None:  # no engine (not started, or it failed): say why
            require = getattr(self.app, "require_session", None)
            if require is None or require() is not None:
                self.notify("the engine is not ready", severity="warning")
            return
        try:
            self.job = self.runs.start_load(spec)
        except EngineError as exc:  # another run holds the engine
            self.notify(str(exc), severity="warning")
            return
        self._reset()
        self.frontier, self.chart_view = None, "load"
        self.workload = spec.prompts
        self._set_status(f"running {len(spec.levels)} level(s) of {spec.prompts.label()}…")
        self._buttons(running=True)

    @on(Button.Pressed, "#load-stop")
    def action_stop(self) -> None:
        if self.queued is not None:
            self.queued = None
            self._set_status("the queued sweep is dropped")
        elif self.stop_run():
            self._set_status("stopping: in-flight requests are cancelled, finished ones are kept")

    def on_unmount(self) -> None:
        if self.queued is not None:  # the screen goes, and the sweep waiting for the engine with it
            self.app.notify("the sweep queued for the engine is dropped (the Load screen was left)",
                            severity="warning", timeout=5)

    @on(Input.Changed, "#load-burstiness")
    def _burstiness_changed(self, event: Input.Changed) -> None:
        """Checked as it is typed, not only at Start: the field turns red and the line below says why."""
        problem = option("burstiness").problem(event.value)  # the command's own validator
        event.input.set_class(problem is not None, "-invalid")
        if problem is not None:
            self._set_status(problem)
        elif self.last_message.startswith("--burstiness"):
            self._set_status("")

    def action_columns(self) -> None:
        self.query_one("#load-table", PagedTable).action_next_page()

    def _reset(self) -> None:
        self.points.clear()
        self.finished.clear()
        self.check_lines = []
        self._final_shown = False
        self._levels_seen = 0
        self.notes = {}
        self._progress = None
        self._show_table()
        self._draw_chart()

    def _buttons(self, running: bool) -> None:
        self.query_one("#load-start", Button).disabled = running
        self.query_one("#load-stop", Button).disabled = not running

    # -- the app's load view -> state ----------------------------------------------------------
    def _level_finished(self, run) -> None:
        from data.jobs.load import LevelRow

        row = LevelRow.of(run.run.run_id, run.status, run.summary)  # the stored summary, read once
        self.finished.append(row)
        # The client self-check's warnings of each level: in the sweep's notes (one toast a level covered
        # the table; the app leaves load runs to this screen).
        health = run.summary.get("client_health") or {}
        self.check_lines.extend(f"{row.label or row.run_id}: {w}" for w in health.get("warnings") or [])
        self._show_table()
        s = row.summary
        if s is None or s.level is None:
            return
        x = s.level.max_concurrency if math.isinf(s.level.request_rate) else s.level.request_rate
        if isinstance(x, (int, float)) and s.output_throughput is not None:
            self.points.append((float(x), float(s.output_throughput), s.p99_ttft_ms))
            self._draw_chart()

    def _show_table(self) -> None:
        """The finished levels under the columns tui.cells.load_columns shows for them (`tokentop load`'s
        table shows the same); a level with failures is flagged in red (how they failed: the status line)."""
        stored = [(f.to_dict(beside=False), f.summary) for f in self.finished]  # the columns' stored names
        columns = load_columns([d for d, _s in stored])
        rows = [(None, [Text(load_cell(d, c), justify=c.align,
                             style="bold red" if c.field == "failed" and s is not None and s.failed else "")
                        for c in columns])
                for d, s in stored]
        self.query_one("#load-table", PagedTable).set_columns_and_rows([(c.header, c.header) for c in columns], rows)

    def _load_finished(self, view) -> None:
        self._final_shown = True
        result = view.result
        self._buttons(running=False)
        live = getattr(view.job, "live", None)
        self.final_counts: Text | None = None
        if live is not None:  # the last counts; nothing is in flight any more and no ETA is left
            self.final_counts = live_text(replace(live.snapshot(), in_flight=0), "")
            self.query_one("#load-live", Static).update(self.final_counts)
        if result.status == "failed" and result.error:
            self._set_status(f"failed: {result.error}")
            self.notify(result.error, severity="error", title="Load run failed")
            return
        # The sweep's notes go in one place (n shows them), and one notice says so: a toast each (steady
        # state, TTFT split, turns, failures, workload) covered the table and the chart at once.
        from engine.measure.metrics import failure_note, steady_state_lines

        self.notes = {}
        levels = [f.summary for f in self.finished if f.summary is not None]  # the levels that stored figures
        flagged = [(s.label, note) for s in levels for note in [failure_note(s)] if note]
        if flagged:  # levels whose requests failed: flagged in the status line, how they failed in the notice
            self.notes[NOTE_FAILED] = [f"{label}: {note}" for label, note in flagged]
        steady = [f"{s.label}: {lines[0]}" for s in levels for lines in [steady_state_lines(s)] if lines]
        if steady:  # each level's plateau beside the table's whole-run figures (vllm-bench's rule)
            self.notes[NOTE_STEADY] = steady
        self._server_timing()
        turns = [s for s in levels if s.ttft_by_turn]
        if turns:  # conversations: TTFT grows with the context, turn by turn
            self.turn_lines = [f"{s.label}: " + ", ".join(
                f"turn {int(t) + 1} {v['p50_ms']:.0f} ms" for t, v in (s.ttft_by_turn or {}).items()) for s in turns]
            self.notes[NOTE_TURNS] = self.turn_lines
        workload = getattr(self, "workload", None)
        if workload is not None and workload.notes:  # what sampling skipped, lengths that are approximate
            self.notes[NOTE_WORKLOAD] = list(workload.notes)
        if self.check_lines:  # the client may have shaped a level's figures
            self.notes[NOTE_CHECK] = list(self.check_lines)
        word = "stopped" if result.stopped else "done"
        status = f"{word}: {len(result.runs)} level(s) stored; {result.stop_reason}"
        if flagged:
            status = f"! failures at {', '.join(str(label) for label, _n in flagged)} · " + status
        self._set_status(status)
        self._end_notice(f"Load {word}: {len(result.runs)} level(s) stored", bool(flagged))
        if self.finished:
            self.load_frontier([f.run_id for f in self.finished])
        # No GPU telemetry: the GPU panel beside the form says so, once; no toast per run repeats it.

    def _server_timing(self) -> None:
        """The last level's mean TTFT split by the server's own timing in the live lines, above the final
        counts (78 columns at 80), every level's in a notification (engine.measure.server_timing); nothing
        without it."""
        from engine.measure.server_timing import split_lines

        levels = [split_lines(f.summary, width=78, label=safe_text(str(f.summary.label)))
                  for f in self.finished if f.summary is not None]
        levels = [lines for lines in levels if lines]
        if not levels:
            return
        # The final counts' second line (done · failed · stopped …) stays; the split's mean takes the first.
        counts = self.final_counts.split("\n")[-1] if self.final_counts is not None else None
        shown = Text("\n".join(levels[-1][:2])) if counts is None else Text("\n").join([Text(levels[-1][0]), counts])
        self.query_one("#load-live", Static).update(shown)
        self.notes[NOTE_SPLIT] = [line for lines in levels for line in lines]

    def _end_notice(self, title: str, failures: bool) -> None:
        """The one notice at a sweep's end: how requests failed, if they did, and where the rest is."""
        lines = list(self.notes.get(NOTE_FAILED, []))
        others = [NOTE_SHORT[t] for t in self.notes if t != NOTE_FAILED]
        if others:
            lines.append(f"n: {', '.join(others)}")
        lines.append("each level's run: F4")
        self.notify("\n".join(lines), title=title, severity="warning" if failures else "information",
                    markup=False, timeout=10 if failures else 6)

    def action_notes(self) -> None:
        if not self.notes:
            self.notify("a sweep's notes appear here when it has finished", severity="information", timeout=3)
            return
        self.app.push_screen(LoadNotes(self.notes))

    def _set_status(self, text: str) -> None:
        self.last_message = text = safe_text(text)  # quotes a server's error
        self.query_one("#load-status", Label).update(Text(text))

    # -- the priced frontier of the sweep just run -------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="load-frontier")
    def load_frontier(self, run_ids: list[str]) -> None:
        from data.analysis.frontier import build_frontier

        # A failure is a notice (SaysWorkerFailures); the sweep's own chart stays, Compare (m) shows the frontier too.
        self.post_message(self.FrontierReady(safe_display(build_frontier(self.session.store, run_ids=run_ids))))

    @on(FrontierReady)
    def _frontier_ready(self, msg: FrontierReady) -> None:
        self.frontier = msg.frontier
        self.chart_view = "frontier"
        self._draw_chart()

    def action_frontier(self) -> None:
        if self.frontier is None:
            self.notify("the priced frontier appears when a sweep has finished", severity="information")
            return
        self.chart_view = "load" if self.chart_view == "frontier" else "frontier"
        self._draw_chart()

    # -- rendering ------------------------------------------------------------------------
    def refresh_live(self) -> None:
        if self.queued is not None and getattr(self.app, "engine_state", None) == "failed":
            self.queued = None
            self._set_status("the engine could not start: the queued sweep is dropped")
        view = self._view()
        if view is None:
            return
        if self.job is not view.job:  # a load started before this screen opened
            self.job = view.job
            self._reset()
        for run in view.runs[len(self.finished):]:
            self._level_finished(run)
        if view.result is not None:
            if not self._final_shown:
                self._load_finished(view)
            return
        self._buttons(running=True)
        if view.stopping:
            self._set_status("stopping: in-flight requests are cancelled, finished ones are kept")
        elif len(view.levels) != self._levels_seen and view.levels:
            self._levels_seen = len(view.levels)
            level = view.levels[-1]
            total = len((level.suite_json or {}).get("levels") or []) or "?"
            label = level.level.label if level.level else ""
            self._set_status(f"level {(level.level_index or 0) + 1}/{total}: {label}")
        s = view.job.live.snapshot()
        self.query_one("#load-live", Static).update(live_text(s, self._level_progress(view, s)))

    def _level_progress(self, view, s) -> str:
        """The running level's progress by tokens where its workload enforces one length (random tokens,
        shared prefixes), else by requests, with the same ETA rule as the CLI (engine.measure.progress).
        In tokens it moves as they stream: the requests in flight count what they have streamed so far
        (LiveLoad.streamed_tokens), so a long request does not hold the count and the ETA still."""
        from engine.measure.progress import LevelProgress, workload_lengths

        level = view.levels[-1] if view.levels else None
        if level is None or level.level is None:
            return ""
        if self._progress is None or self._progress[0] is not level:  # a new level: its own count
            n = level.level.num_prompts  # conversations, multi-turn: the lengths count every turn
            lengths = workload_lengths(self.workload, n) if self.workload is not None else [None] * level.total
            self._progress = (level, LevelProgress(lengths, t0=time.monotonic() - s.elapsed_s))
        progress = self._progress[1]
        streamed = getattr(view.job.live, "streamed_tokens", None)
        progress.update(s.completed + s.failed + s.stopped, streamed() if streamed is not None else 0)
        return progress.text()

    def _draw_chart(self) -> None:
        """The sweep's throughput and TTFT against load, or after it its priced frontier (tui.widgets.load_chart)."""
        chart = self.query_one("#load-chart", LoadChart)
        if self.chart_view == "frontier" and self.frontier is not None and not self.running:
            chart.show_frontier(self.frontier, "frontier: tok/s/GPU vs user tok/s, $/1M (ctrl+f)")
            return
        pattern = self.query_one("#load-pattern", Select).value
        chart.show_load(self.points, "concurrency" if pattern == "concurrency" else "req/s")

def live_text(s: LoadSnapshot, progress: str) -> Text:
    """The running level (engine.load.driver.LoadSnapshot) in two short lines that fit 80 columns (never a
    cut count)."""
    text = Text()

    def part(label: str, value: str, style: str = "bold") -> None:
        if text.plain and not text.plain.endswith("\n"):
            text.append(" · ", style="dim")
        text.append(f"{label} ", style="dim")
        text.append(value, style=style)

    part("", s.level or "–")
    if progress:
        part("", progress)
    part("sent", str(s.sent))
    part("in flight", str(s.in_flight))
    text.append("\n")
    part("done", str(s.completed))
    part("failed", str(s.failed), "bold red" if s.failed else "bold")
    if s.stopped:
        part("stopped", str(s.stopped))
    part("out tok/s", _f(s.output_throughput))
    part("TTFT p50/p99", f"{_f(s.ttft_p50_ms, '{:.0f}')}/{_f(s.ttft_p99_ms, '{:.0f}')} ms")
    return text


class LoadNotes(ModalScreen[None]):
    """The last sweep's notes (LoadScreen.notes: {title: lines}) over the Load screen, on demand (n); they
    scroll at 80x24; Esc, n or q closes."""

    HELP_TITLE = "Load notes"
    DEFAULT_CSS = """
    LoadNotes { align: center middle; }
    #notes-box { width: 78; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                 background: $surface; padding: 0 1; }
    #notes-scroll { height: auto; max-height: 18; scrollbar-size-vertical: 1; }
    #notes-hint { height: 1; color: $text-muted; }
    """
    BINDINGS = [Binding("escape,n,q", "app.pop_screen", "Close", id="load_notes.close")]

    def __init__(self, notes: dict[str, list[str]]):
        super().__init__()
        self.notes = notes

    def text(self) -> Text:
        """Every note as shown: each title (bold), then its lines."""
        out = Text()
        for title, lines in self.notes.items():
            if out.plain:
                out.append("\n")
            out.append(safe_text(title) + "\n", style="bold")
            out.append("\n".join(safe_text(line) for line in lines) + "\n")
        return out

    def compose(self) -> ComposeResult:
        with Vertical(id="notes-box"):
            with VerticalScroll(id="notes-scroll"):
                yield Static(self.text(), id="notes-text")
            yield Static(Text("↑↓ PgUp PgDn scroll · Esc closes · the levels' runs: F4"), id="notes-hint")

    def on_mount(self) -> None:
        self.query_one("#notes-scroll", VerticalScroll).focus()
