"""TokentopApp: the live Textual app (Live, Suite and History screens, plus Prices/Compare/Load).

The engine starts in a thread worker that posts typed messages; the first frame does not wait
for it. Tests inject a running Session (the shared engine) and a Store.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual import on, work
from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Select, TextArea
from textual.worker import get_current_worker

from tui.messages import EngineFailed, EngineProgress, EngineReady, InteractiveStored, RequestFinished, SuiteFinished
from tui.palette import APP_COMMANDS, TokentopCommands
from tui.screens.compare import CompareScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.live import LiveScreen
from tui.screens.load import LoadScreen
from tui.screens.prices import PricesScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.side_by_side import SideBySideScreen
from tui.screens.suite import SuiteScreen

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


class TokentopApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "tokentop"
    MODES = {"live": LiveScreen, "suite": SuiteScreen, "history": HistoryScreen}
    DEFAULT_MODE = "live"
    COMMANDS = App.COMMANDS | {TokentopCommands}
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
                tooltip="cost per 1M tokens of the marked (or newest) runs"),
        Binding("f10", "quit_app", "Quit", id="app.quit", key_display="F10", tooltip="stop what runs, store it, quit"),
        Binding("escape", "leave_field", "Leave field", id="app.leave_field", show=False, priority=True,
                tooltip="leave a text field; a second Esc does the screen's Esc"),
        Binding("1", "show_live", "Live", id="app.live_key", show=False),
        Binding("2", "show_suite", "Suite", id="app.suite_key", show=False),
        Binding("3", "show_history", "History", id="app.history_key", show=False),
        Binding("p", "prices", "Prices", id="app.prices_key", show=False),
        Binding("l", "load", "Load", id="app.load_key", show=False),
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
    ) -> None:
        super().__init__()
        self.session = session
        self.store = store if store is not None else getattr(session, "store", None)
        self.engine_options = engine_options or {}
        self.autostart = autostart and session is None
        self.db_label = db_label
        self.start_mode = mode
        self.engine_state = "ready" if session is not None else ("starting" if self.autostart else "off")
        self.engine_message = "" if session is not None else ("starting the engine" if self.autostart else "engine not started")
        self.engine_error: str | None = None
        self._start_t = time.monotonic()
        self._starting_session: Any = None
        self.first_frame_s: float | None = None
        self._created = time.perf_counter()
        if self.autostart:
            _start_resource_tracker()

    # -- lifecycle --------------------------------------------------------------
    def on_mount(self) -> None:
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
        from data.session import Session
        from engine.types import BadRequestError

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
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if not isinstance(exc, Exception) or type(exc).__module__ != "engine.types":
                message = f"{type(exc).__name__}: {message}"
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
        self.engine_state = "ready"
        self._refresh_status()
        self.notify(f"engine ready: {self.engine_label()}", timeout=3)
        for screen in self._all_mode_screens():
            ready = getattr(screen, "engine_ready", None)
            if ready is not None:
                ready()  # e.g. the Live screen runs a prompt typed during start-up

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        self.engine_state = "failed"
        self.engine_error = message.message
        self.engine_message = message.message
        if message.bad_request:
            self.exit(return_code=2)
            return
        self._refresh_status()
        self.notify(f"the engine could not start: {message.message}", severity="error", timeout=20)

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

    @on(InteractiveStored)
    @on(RequestFinished)
    @on(SuiteFinished)
    def runs_changed(self) -> None:
        """A run was stored while another screen was working: keep an open History current."""
        if isinstance(self.screen, HistoryScreen):
            self.screen.reload()

    # -- actions ----------------------------------------------------------------
    def action_quit_app(self) -> None:
        for screen in (self.screen, *self._all_mode_screens()):
            stop = getattr(screen, "stop_all", None)
            if stop:
                stop()
        self.exit(return_code=0)

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
        first; a Load screen with a load running stays, so coming back shows it still going."""
        self._close_pushed()
        if mode != self.current_mode:
            self.switch_mode(mode)

    def _close_pushed(self) -> None:
        while len(self.screen_stack) > 1 and not (isinstance(self.screen, LoadScreen) and self.screen.running):
            self.pop_screen()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen.for_screen(self, self.screen))

    def action_leave_field(self) -> None:
        """Esc in a text field moves focus out of it, to the screen's main widget; a second Esc does
        what Esc does on that screen (stop, cancel, back)."""
        screen = self.screen
        focused = screen.focused
        if isinstance(screen, ModalScreen) or not isinstance(focused, TYPING_WIDGETS):
            raise SkipAction()
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
        session = self.require_session()
        if session is not None:
            self.push_screen(LoadScreen(session))

    def action_compare(self) -> None:
        """Costs of the runs marked in History, else of the run under History's cursor, else the newest run."""
        chosen: list[str] = []
        for screen in self._all_mode_screens():
            if isinstance(screen, HistoryScreen) and screen.is_mounted:
                chosen = screen.chosen_runs()
        if not chosen and self.store is not None:
            runs = self.store.list_runs()
            chosen = [runs[0]["run_id"]] if runs else []
        if not chosen:
            self.notify("no run stored yet to price: run a prompt or a suite first", severity="warning")
            return
        self.open_costs(chosen)

    def action_run_suite(self) -> None:
        self._show_mode("suite")
        self.call_after_refresh(lambda: isinstance(self.screen, SuiteScreen) and self.screen.action_run())

    def action_start_load(self) -> None:
        self.action_load()
        self.call_after_refresh(lambda: isinstance(self.screen, LoadScreen) and self.screen.action_start())

    def action_stop_run(self) -> None:
        """Stop whatever is running, on whichever screen started it."""
        stopped = False
        for screen in {*self._all_mode_screens(), self.screen}:
            stop = getattr(screen, "stop_run", None)
            if stop is not None and stop():
                stopped = True
        if not stopped:
            self.notify("nothing is running", timeout=2)

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
        """Stop generations and the engine (its child processes). Called after the app exits."""
        for session in (self.session, self._starting_session):
            if session is not None:
                try:
                    session.shutdown()
                except Exception:
                    pass
