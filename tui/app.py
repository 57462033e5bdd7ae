"""TokentopApp: the live Textual app (Live, Suite and History screens, plus Prices/Compare/Load).

The engine starts in a thread worker that posts typed messages; the first frame does not wait
for it. Tests inject a running Session (the shared engine) and a Store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual import events, on, work
from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Select, TextArea
from textual.worker import get_current_worker

from engine.terminal_text import one_line, safe_text
from tui.messages import (
    ClientHealthWarnings,
    EngineFailed,
    EngineProgress,
    EngineReady,
    PushReport,
    QuitProgress,
    RunEvent,
)
from tui.palette import APP_COMMANDS, TokentopCommands
from tui.runs import AppRuns
from tui.screens.compare import CompareScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.live import LiveScreen
from tui.screens.load import LoadScreen
from tui.screens.matrix import CompareMatrixScreen
from tui.screens.prices import PricesScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.side_by_side import SideBySideScreen
from tui.screens.suite import SuiteScreen
from tui.widgets.fields import TextField
from tui.workers import SaysWorkerFailures

# Widgets that take typing: Esc leaves them (focus moves to the screen's main widget).
TYPING_WIDGETS = (Input, Select, TextArea)


def _start_resource_tracker() -> None:
    """vLLM spawns processes; multiprocessing's resource tracker starts on first use and passes
    sys.stderr.fileno() to its child. While Textual runs, sys.stderr is its capture object whose
    fileno() is -1 ("bad value(s) in fds_to_keep"), so start the tracker before the app runs."""
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    except Exception:
        pass


QUIT_GRACE_S = 5.0  # after a hang-up, how long the UI loop gets to exit once everything is stored


class TokentopApp(SaysWorkerFailures, App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "tokentop"
    MODES = {"live": LiveScreen, "suite": SuiteScreen, "history": HistoryScreen}
    DEFAULT_MODE = "live"
    COMMANDS = App.COMMANDS | {TokentopCommands}
    # The engine's state drives the status bar of the screen shown: "off", "starting", "ready" or "failed".
    # Setting it refreshes the bar (watch_engine_state), on every set as the explicit refresh it replaces did.
    engine_state: var[str] = var("off", always_update=True)
    # Screen keys are function keys: they reach the app through tmux and a browser terminal and never
    # collide with typing. The letters and digits are shortcuts for when no field has focus.
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help", key_display="F1", tooltip="the keys of this screen"),
        Binding("question_mark", "help", "Help", id="app.help_key", show=False),
        Binding("f2", "show_live", "Live", id="app.live", show=False, key_display="F2"),
        Binding("f3", "show_suite", "Suite", id="app.suite", show=False, key_display="F3"),
        Binding("f4", "show_history", "History", id="app.history", show=False, key_display="F4"),
        Binding("f5", "prices", "Prices", id="app.prices", show=False, key_display="F5"),
        Binding("f6", "load", "Load", id="app.load", show=False, key_display="F6"),
        Binding("f7", "compare", "Compare", id="app.compare", show=False, key_display="F7",
                tooltip="your runs by GPU x provider, cost at an SLO, the frontier"),
        Binding("f10", "quit_app", "Quit", id="app.quit", key_display="F10", tooltip="stop what runs, store it, quit"),
        Binding("escape", "leave_field", "Leave field", id="app.leave_field", show=False, priority=True,
                tooltip="leave a text field; a second Esc does the screen's Esc"),
        # Every way out stops and stores what runs (Ctrl+C is a key in the app, not a signal).
        Binding("ctrl+q", "quit_app", "Quit", id="app.quit_ctrl_q", show=False, priority=True),
        Binding("ctrl+c", "quit_app", "Quit", id="app.quit_ctrl_c", show=False, priority=True),
        Binding("1", "show_live", "Live", id="app.live_key", show=False),
        Binding("2", "show_suite", "Suite", id="app.suite_key", show=False),
        Binding("3", "show_history", "History", id="app.history_key", show=False),
        Binding("p", "prices", "Prices", id="app.prices_key", show=False),
        Binding("l", "load", "Load", id="app.load_key", show=False),
        Binding("m", "compare", "Compare", id="app.compare_key", show=False),
        Binding("q", "quit_app", "Quit", id="app.quit_key", show=False),
        Binding("t", "toggle_theme", "Theme", id="app.theme", show=False, tooltip="light or dark theme"),
    ]

    def __init__(
        self,
        *,
        session: Any = None,
        store: Any = None,
        engine_options: dict[str, Any] | None = None,
        autostart: bool = True,
        db_label: str | None = None,
        mode: str = "live",
        handle_signals: bool = False,
    ) -> None:
        super().__init__()
        # The app, not a screen, holds the runs: leaving a screen never orphans one.
        self.runs = AppRuns(self.post_message)
        # What the user typed into a form ({screen: {field id: value}}): a screen left and opened again
        # (F6 after a look at History) shows its values, and Ctrl+R runs them, for the app's lifetime.
        self.form_values: dict[str, dict[str, Any]] = {}
        self.handle_signals = handle_signals  # SIGTERM/SIGHUP stop and store (the real app only)
        self.quitting = False
        self.hung_up = False
        self.session = session
        self.store = store if store is not None else getattr(session, "store", None)
        self.engine_options = engine_options or {}
        self.autostart = autostart and session is None
        self.db_label = db_label
        self.start_mode = mode
        # No screen yet to refresh: set without the watcher.
        self.set_reactive(TokentopApp.engine_state,
                          "ready" if session is not None else ("starting" if self.autostart else "off"))
        self.engine_message = ("" if session is not None
                               else ("starting the engine" if self.autostart else "engine not started"))
        self.engine_error: str | None = None
        self._start_t = time.monotonic()
        self._starting_session: Any = None
        self.first_frame_s: float | None = None
        self._created = time.perf_counter()
        if self.autostart:
            _start_resource_tracker()

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every notification is plain text: they carry engine errors, server replies and file names,
        and a stray "[/x]" in one would be read as markup (and raise), an escape sequence would drive
        the terminal (engine.terminal_text). Screens' notify() lands here."""
        message, title = safe_text(str(message)), safe_text(str(title))
        if timeout is None:
            super().notify(message, title=title, severity=severity, markup=False)
        else:
            super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- lifecycle --------------------------------------------------------------
    def on_mount(self) -> None:
        from data.travel.remote import add_push_listener

        # Runs finished here are pushed in the background when TOKENTOP_REMOTE is set: say how it went.
        self._push_listener = lambda result, error: self.post_message(PushReport(result, error))
        add_push_listener(self._push_listener)
        if self.session is not None:
            self.runs.attach(self.session)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.switch_mode(self.start_mode)
        self.call_after_refresh(self._first_frame)
        if self.autostart:
            self.start_engine()

    def _first_frame(self) -> None:
        if self.first_frame_s is None:
            self.first_frame_s = time.perf_counter() - self._created

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def start_engine(self) -> None:
        """Blocking engine start on a helper thread; this worker waits so it can be cancelled
        (q during start-up) without hanging the app's exit."""
        from data.jobs.session import Session
        from engine.types import BadRequestError, EngineError

        worker = get_current_worker()
        session = Session(self.store, self.engine_options)
        self._starting_session = session
        done = threading.Event()
        failure: list[BaseException] = []

        def progress(text: str) -> None:
            self.post_message(EngineProgress(text))

        def target() -> None:
            try:
                session.start_engine(progress)
            except BaseException as exc:  # reported to the UI, never raised on this thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, name="tokentop-engine-start", daemon=True).start()
        while not done.wait(0.1):
            if worker.is_cancelled:
                return
        if failure:
            exc = failure[0]
            # the engine's own errors (engine.types and subclasses) are said as they are
            message = one_line(exc, typed=not isinstance(exc, EngineError))
            self.post_message(EngineFailed(message, isinstance(exc, BadRequestError)))
        else:
            self.post_message(EngineReady(session))

    @on(EngineProgress)
    def _engine_progress(self, message: EngineProgress) -> None:
        self.engine_message = message.text
        self._refresh_status()

    @on(EngineReady)
    def _engine_ready(self, message: EngineReady) -> None:
        self.session = message.session
        self._starting_session = None
        self.runs.attach(self.session)
        self.engine_state = "ready"  # watch_engine_state refreshes the status bar
        self.notify(f"engine ready: {self.engine_label()}", timeout=3)
        for screen in self._all_mode_screens():
            ready = getattr(screen, "engine_ready", None)
            if ready is not None:
                ready()  # e.g. the Live screen runs a prompt typed during start-up

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        self.engine_error = message.message
        self.engine_message = message.message
        if message.bad_request:
            self.set_reactive(TokentopApp.engine_state, "failed")  # the app exits: no status bar to refresh
            self.exit(return_code=2)
            return
        self.engine_state = "failed"  # watch_engine_state refreshes the status bar
        self.notify(f"the engine could not start: {message.message}", severity="error", timeout=20)

    def watch_engine_state(self) -> None:
        if self.is_running and self.screen_stack:  # set before the app runs (a test's set-up): no bar yet
            self._refresh_status()

    def _refresh_status(self) -> None:
        from tui.widgets.status_bar import StatusBar

        for bar in self.screen.query(StatusBar):
            bar.refresh_status()

    # -- what the status bar shows ---------------------------------------------
    def engine_label(self) -> str:
        if self.session is None:
            return ""
        d = self.session.describe()
        model = d.get("model_label") or d.get("model") or "?"
        return f"{d.get('engine', '?')} · {model} · {self.session.device}"

    def status_parts(self) -> tuple[str, str, str]:
        """(state, engine line, database) for the status bar; the engine line quotes a server's model
        id and start-up messages, so it is made terminal-safe."""
        state, engine, db = self._status_parts()
        return state, safe_text(engine), safe_text(db)

    def _status_parts(self) -> tuple[str, str, str]:
        db = self.db_label or (self._short_path(self.store.path) if self.store is not None else "none")
        if self.engine_state == "ready":
            return "ready", self.engine_label(), db
        if self.engine_state == "starting":
            secs = time.monotonic() - self._start_t
            return "starting", f"starting engine: {self.engine_message} ({secs:.0f} s)", db
        if self.engine_state == "failed":
            return "failed", f"engine failed: {self.engine_message}", db
        return "off", self.engine_message, db

    @staticmethod
    def _short_path(path: Path) -> str:
        try:
            return "~/" + str(Path(path).resolve().relative_to(Path.home()))
        except ValueError:
            return str(path)

    def require_session(self):
        """The running session, or None after telling the user why not."""
        if self.session is not None:
            return self.session
        if self.engine_state == "starting":
            self.notify(f"the engine is still starting ({self.engine_message})", severity="warning")
        else:
            self.notify(self.engine_message or "no engine", severity="error")
        return None

    @on(RunEvent)
    def _run_event(self, message: RunEvent) -> None:
        """Say what was stored, and keep an open History current, whichever screen is shown."""
        from engine.orchestrator import RunFinished

        event = message.event
        if not isinstance(event, RunFinished) or self.quitting:
            return
        run_id, status, kind = event.run.run_id, event.status, event.run.kind
        warnings = ((event.summary or {}).get("client_health") or {}).get("warnings") or []
        # One notice per finished run: a toast per warning stacked over the Live and Suite gauges (as
        # high as TTFT at 80x24) just when the run's final figures are shown. The warnings themselves
        # are in the run (run detail, `tokentop show`).
        checked = (f" · {len(warnings)} client self-check warning{'s' if len(warnings) > 1 else ''}: "
                   "see the run (F4)") if warnings else ""
        level = "warning" if warnings else "information"
        if warnings and kind not in ("interactive", "suite", "load"):  # a load's: the Load screen's notes (n)
            self.post_message(ClientHealthWarnings(run_id, warnings))
        sink = getattr(self.session, "recorder_sink", None)
        if sink is not None and sink.errors:
            self.notify(f"run {run_id} was not stored: {sink.errors.pop()}", severity="error", timeout=10)
        elif kind == "interactive":
            if status == "failed":
                self.notify(f"run {run_id} failed: {event.error}", severity="error")
            else:
                self.notify(f"stored run {run_id} ({status}){checked}", severity=level, timeout=6 if warnings else 3)
        elif kind == "suite":
            done = sum(1 for m in getattr(event.outcome, "metrics", []) if m.success)
            if status == "completed":
                self.notify(f"suite finished: run {run_id}{checked}", severity=level, timeout=6 if warnings else 4)
            elif status == "aborted":
                self.notify(f"suite stopped; {done} finished requests kept in run {run_id}{checked}", severity=level,
                            timeout=6 if warnings else 5)
            else:
                self.notify(f"suite failed: {event.error}", severity="error", timeout=10)
        if isinstance(self.screen, HistoryScreen):
            self.screen.reload()

    def on_unmount(self) -> None:
        from data.travel.remote import remove_push_listener

        remove_push_listener(self._push_listener)

    @on(PushReport)
    def _push_report(self, message: PushReport) -> None:
        result = message.result
        if message.error:
            self.notify(f"push to the remote failed: {message.error}", severity="warning", timeout=10)
            return
        if result.pushed:
            self.notify(f"pushed run(s) {', '.join(result.pushed)} to {result.remote}", timeout=4)
        for run_id, reason in result.failed.items():
            self.notify(f"push of run {run_id} to {result.remote} failed ({reason}); it is retried on the next push",
                        severity="warning", timeout=10)

    @on(ClientHealthWarnings)
    def client_health_warnings(self, message: ClientHealthWarnings) -> None:
        """The client may have shaped a run's figures: say so in one notice, whichever screen ran it (a
        load level's warnings are in the Load screen's notes instead, one sweep, one notice)."""
        self.notify("\n".join(message.warnings), title=f"client self-check · run {message.run_id or '–'}",
                    severity="warning", timeout=10)

    # -- actions ----------------------------------------------------------------
    def action_quit_app(self) -> None:
        """q, Ctrl+Q, Ctrl+C, the palette's Quit, SIGTERM and SIGHUP: stop what runs, store it (as
        aborted, with every finished request), shut the engine down, then exit — saying so."""
        if self.quitting:
            return
        self.quitting = True
        from tui.screens.stopping import StoppingScreen

        job = self.runs.current
        if job is not None:
            text = f"stopping…, storing run {job.current_run_id or ''} ({job.kind}) as aborted"
        else:
            text = "stopping…, shutting the engine down"
        if not self.hung_up:  # after a hang-up there is no terminal to draw on
            self.push_screen(StoppingScreen(text))
        self._quit_worker()

    def action_stop_run(self) -> None:
        """Stop whatever runs, whichever screen started it (stored as aborted with what finished)."""
        job = self.runs.stop()
        if job is None:
            self.notify("nothing is running", timeout=2)
        else:
            self.notify(f"stopping the {job.kind} run: finished requests are kept", timeout=3)

    async def action_quit(self) -> None:  # Textual's own Quit (the command palette)
        self.action_quit_app()

    def action_help_quit(self) -> None:
        self.action_quit_app()

    def _on_signal(self, signum: int) -> None:
        self.hung_up = self.hung_up or signum == getattr(signal, "SIGHUP", None)
        self.action_quit_app()

    def _quit_worker(self) -> None:
        # A plain thread, not a Textual worker: after a hang-up the UI loop may never run again, and
        # the run must still be stored and the engine shut down. It talks to the UI only by posting.
        threading.Thread(target=self._stop_store_shutdown, name="tokentop-quit", daemon=True).start()

    def _stop_store_shutdown(self) -> None:
        job = self.runs.stop(wait=15)
        if job is not None and job.result is not None:
            stored = ", ".join(r.run.run_id for r in job.result.runs) or "nothing"
            self.post_message(QuitProgress(f"stored run {stored} ({job.result.status}); shutting the engine down…"))
        else:
            self.post_message(QuitProgress("shutting the engine down…"))
        self.shutdown_engine()
        self.post_message(QuitProgress("", done=True))
        if self.hung_up:
            # No terminal: if the UI loop cannot finish exiting, leave anyway — the run is stored and
            # the engine is down; close the store so buffered writes reach the file.
            time.sleep(QUIT_GRACE_S)
            try:
                if self.store is not None:
                    self.store.close()
            finally:
                os._exit(129)

    @on(QuitProgress)
    def _quit_progress(self, message: QuitProgress) -> None:
        from tui.screens.stopping import StoppingScreen

        if message.done:
            self.exit(return_code=0)
        elif isinstance(self.screen, StoppingScreen):
            self.screen.say(message.text)

    def _all_mode_screens(self) -> Iterable[Screen]:
        for stack in self._screen_stacks.values():
            yield from stack

    def action_show_live(self) -> None:
        self._show_mode("live")

    def action_show_suite(self) -> None:
        self._show_mode("suite")

    def action_show_history(self) -> None:
        self._show_mode("history")

    def _show_mode(self, mode: str) -> None:
        """A screen key works from anywhere: screens opened on top (Help, Prices, a run's detail) close
        first; the Load screen closes too (its load goes on in the app; F6 shows it again)."""
        self._close_pushed()
        if mode != self.current_mode:
            self.switch_mode(mode)

    def _close_pushed(self) -> None:
        from tui.screens.stopping import StoppingScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, StoppingScreen):
            self.pop_screen()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen.for_screen(self, self.screen))

    def on_key(self, event: events.Key) -> None:
        """Type-ahead. The app hands each key to the widget that has focus when the key comes in. A key
        that moves the cursor into a text field (`s` on Suite, Tab) acts only once it has bubbled back up,
        so the keys typed right behind it (tmux send-keys, a paste, a fast typist) were already handed
        to the old widget. They come back up unused while the field has focus. Each one goes into the
        field, in order, instead of being lost: letters, and the field's editing keys (Left, Home,
        Backspace, Enter: a TextField applies them in its own queue, so they keep their place among the
        letters; were they run here, they would overtake the letters still queued for the field)."""
        if not self._type_ahead(event):
            self._keep_on_form(event)

    def _type_ahead(self, event: events.Key) -> bool:
        """The type-ahead of on_key: True when the key was handed to the focused field."""
        focused = self.focused
        if (getattr(event, "retyped", False) or not isinstance(focused, Input) or focused.disabled
                or getattr(event, "seen_by", None) is focused):
            return False
        if event.is_printable and event.character:
            if not focused.check_consume_key(event.key, event.character):
                return False
        elif not (isinstance(focused, TextField) and focused.own_binding(event.key)):
            return False
        event.stop()
        event.prevent_default()  # App._on_key would run the field's binding now, ahead of its queue
        again = events.Key(event.key, event.character)
        again.retyped = True  # the field had its turn: if it lets this one up again, it stops here
        focused.post_message(again)
        return True

    def _on_form(self) -> bool:
        """A control of the screen's form has focus (a screen with a form says which: `form_has_focus`,
        the Load screen's)."""
        on_form = getattr(self.screen, "form_has_focus", None)
        return bool(on_form is not None and on_form())

    def _keep_on_form(self, event: events.Key) -> None:
        """A letter or digit shortcut of the app (1 2 3 p l m q t ?) that reached the app from a control of
        a form (the Load form's selectors, checkboxes, buttons, or a number field that refused a letter)
        does nothing: on a form a character is typing, never a screen switch (as in Harlequin and Posting,
        whose screen keys are F-keys and Ctrl keys). The F-keys work whatever has focus (F2-F7), and so
        does Esc, which leaves the form for the screen's table, where the shortcuts work again."""
        if event.key in CHARACTER_SHORTCUTS and self._on_form():
            event.stop()
            event.prevent_default()  # App._on_key would run the shortcut
            self.bell()

    def action_focus_next(self) -> None:
        """Tab: the next widget, counted from where the screen's auto-focus puts the cursor (see
        `_settle_auto_focus`)."""
        self._settle_auto_focus()
        self.screen.focus_next()

    def action_focus_previous(self) -> None:
        """Shift+Tab: the previous widget, counted like Tab."""
        self._settle_auto_focus()
        self.screen.focus_previous()

    def _settle_auto_focus(self) -> None:
        """Give a screen with nothing focused its auto-focus first. Textual applies AUTO_FOCUS when the
        screen resumes, and a key can come before that (a loaded box, a terminal that reported focus-out).
        Textual's Tab from no focus goes to the *first* widget, so Tab and Shift+Tab would land somewhere
        else than they do a moment later."""
        screen = self.screen
        if screen.focused is not None:
            return
        selector = self.AUTO_FOCUS if screen.AUTO_FOCUS is None else screen.AUTO_FOCUS
        if not selector:
            return
        target = next((w for w in screen.query(selector) if w.focusable), None)
        if target is not None:
            screen.set_focus(target)

    def action_leave_field(self) -> None:
        """Esc in a text field moves focus out of it, to the screen's main widget; a second Esc does
        what Esc does on that screen (stop, cancel, back)."""
        screen = self.screen
        focused = screen.focused
        if isinstance(screen, ModalScreen) or not (isinstance(focused, TYPING_WIDGETS) or self._on_form()):
            raise SkipAction()  # (a form's buttons and checkboxes are left like its fields)
        if isinstance(focused, Select) and focused.expanded:
            raise SkipAction()
        home = getattr(screen, "HOME_FOCUS", None)
        target = None
        if home:
            try:
                target = screen.query_one(home)
            except Exception:
                target = None
        if target is None or not target.focusable:
            target = next((w for w in screen.focus_chain if not isinstance(w, TYPING_WIDGETS)), None)
        screen.set_focus(target)

    def action_prices(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        if isinstance(self.screen, PricesScreen):
            return
        self.push_screen(PricesScreen(self.store))

    def action_load(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        if isinstance(self.screen, LoadScreen):
            return
        # The form needs no engine: it opens while the engine starts (a sweep started then waits for it).
        self.push_screen(LoadScreen(self.session))

    def action_compare(self) -> None:
        """The Compare matrix: every run in the database by GPU x provider, cost at an SLO, the frontier."""
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        if isinstance(self.screen, CompareMatrixScreen):
            return
        self.push_screen(CompareMatrixScreen(self.store, **self.form_values.get("compare", {})))  # the SLO last typed

    def action_run_suite(self) -> None:
        self._show_mode("suite")
        self.call_after_refresh(lambda: isinstance(self.screen, SuiteScreen) and self.screen.action_run())

    def action_start_load(self) -> None:
        self.action_load()
        self.call_after_refresh(lambda: isinstance(self.screen, LoadScreen) and self.screen.action_start())

    def open_run(self, run_id: str) -> None:
        self.push_screen(RunDetailScreen(run_id))

    def open_side_by_side(self, run_ids: list[str]) -> None:
        self.push_screen(SideBySideScreen(run_ids))

    def open_costs(self, run_ids: list[str]) -> None:
        self.push_screen(CompareScreen(self.store, run_ids))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own (theme, keys, screenshot…); ours come from tui.palette, whatever has focus."""
        yield from super().get_system_commands(screen)

    def palette_commands(self, screen: Screen) -> list[tuple[str, str, Any]]:
        """(title, help, callback) for every screen and action, and the current screen's own keys."""
        out = []
        for title, help_text, action in APP_COMMANDS:
            key = self._key_for(action)
            out.append((f"{title} ({key})" if key else title, help_text, partial(self.run_action, action)))
        seen = {c[0].split(" (")[0] for c in out}
        for binding in getattr(type(screen), "BINDINGS", []):
            if not isinstance(binding, Binding) or not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            key = self.get_key_display(binding)
            out.append((f"{binding.description} ({key})", binding.tooltip or f"on this screen: {key}",
                        partial(self._run_binding, screen, binding.action)))
        return out

    def _key_for(self, action: str) -> str:
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.action == action:
                return self.get_key_display(binding)
        return ""

    async def _run_binding(self, node, action: str) -> None:
        await self.run_action(action, node)

    # -- shutdown ---------------------------------------------------------------
    def shutdown_engine(self) -> None:
        """Stop and store what runs, then the engine (its child processes). Idempotent: the quit
        worker calls it, and so does `tokentop` after the app exits (whatever way it exited)."""
        for session in (self.session, self._starting_session):
            if session is not None:
                try:
                    session.shutdown()
                except Exception:
                    pass


# The app's shortcuts that are characters (1 2 3 p l m q t ?), not F-keys or Ctrl keys: a form's controls
# keep them (TokentopApp._keep_on_form).
CHARACTER_SHORTCUTS = frozenset(b.key for b in TokentopApp.BINDINGS
                                if isinstance(b, Binding) and (len(b.key) == 1 or b.key == "question_mark"))
