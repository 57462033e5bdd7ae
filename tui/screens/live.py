"""Live screen: a prompt box, the streamed answer, and big gauges refreshed on a timer."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from engine.terminal_text import StreamSanitizer
from tui.widgets.fields import TextField, type_into
from tui.widgets.gauges import GaugePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream_view import StreamView

REFRESH_HZ = 10
MAX_TOKENS_LIMIT = 32768


class LiveScreen(Screen):
    HELP_TITLE = "Live"  # Help's title for this screen
    HOME_FOCUS = "#live-output"
    BINDINGS = [
        Binding("slash", "focus_prompt", "Prompt", id="live.prompt", tooltip="type a prompt (Enter generates)"),
        Binding("escape", "stop", "Stop", id="live.stop", tooltip="stop the generation (it is stored as aborted)"),
        Binding("ctrl+x", "stop", "Stop", id="live.stop_ctrl_x", priority=True, show=False,
                tooltip="stop the generation, whatever has focus (the prompt too)"),
        Binding("ctrl+l", "clear", "Clear", id="live.clear", show=False, tooltip="clear the answer pane"),
    ]

    def __init__(self) -> None:
        super().__init__(id="live")
        self.sanitizer = StreamSanitizer()
        self.job = None  # the interactive job shown (the app owns it; this screen only renders it)
        self.generations = 0
        self.queued: tuple[str, int, float] | None = None  # a prompt typed while the engine starts
        self.sent: str | None = None  # the prompt field's text when Enter last sent it
        self._shown_final: str | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar()
        with Horizontal(id="live-controls"):
            prompt = TextField(placeholder="Type a prompt, Enter to generate", id="live-prompt")
            prompt.border_title = "prompt"
            yield prompt
            max_tokens = TextField("128", type="integer", id="live-max-tokens", restrict=r"[0-9]*", max_length=5)
            max_tokens.border_title = "max"
            yield max_tokens
            temp = TextField("0.8", type="number", id="live-temperature", max_length=4)
            temp.border_title = "temp"
            yield temp
        with Horizontal(id="live-main"):
            yield StreamView(id="live-output", placeholder="The answer streams here. Esc stops a generation.")
            yield GaugePanel(id="live-gauges")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.ticker = self.set_interval(1 / REFRESH_HZ, self.tick, pause=True)
        self.query_one("#live-prompt", Input).focus()

    def on_key(self, event) -> None:
        # This screen is for typing: a letter typed while the answer pane has focus goes to the prompt,
        # never to a one-letter shortcut (the F-keys switch screens and quit from here). It starts the next
        # prompt: the one just sent is not continued (`/` puts the cursor back in it to edit it).
        prompt = self.query_one("#live-prompt", Input)
        last = prompt.value
        if type_into(self, event, prompt) and self.sent is not None and last == self.sent:
            prompt.value = event.character
            prompt.cursor_position = len(prompt.value)

    def on_screen_resume(self) -> None:
        if self._view() is not None:
            self.ticker.resume()  # a request started elsewhere (or still streaming): show it

    # -- generation -------------------------------------------------------------
    def _view(self):
        runs = getattr(self.app, "runs", None)
        return runs.view("interactive") if runs is not None else None

    @property
    def busy(self) -> bool:
        view = self._view()
        return view is not None and view.running

    @property
    def last_run_id(self) -> str | None:
        """The run the last finished request was stored as."""
        view = self._view()
        if view is None or view.running or not view.runs:
            return None
        return view.runs[-1].run.run_id

    @on(Input.Submitted, "#live-prompt")
    def submit_prompt(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if self.busy:
            self.notify("a generation is running: Esc stops it", severity="warning")
            return
        settings = self._settings()
        if settings is None:
            return
        self.sent = event.value  # letters typed next start a new prompt (on_key)
        if self.app.session is None and getattr(self.app, "engine_state", "") == "starting":
            self.queued = (prompt, *settings)
            self.query_one(StreamView).clear(head=f"› {prompt}")
            self.query_one(StreamView).append("queued: runs when the engine is ready (Esc drops it)")
            self.query_one(StreamView).focus()
            self.notify("the engine is starting: your prompt runs as soon as it is ready", timeout=4)
            return
        self._generate(prompt, *settings)

    def engine_ready(self) -> None:
        """Called by the app when the engine is up: run the prompt typed during start-up."""
        if self.queued is not None and not self.busy:
            prompt, max_tokens, temperature = self.queued
            self.queued = None
            self._generate(prompt, max_tokens, temperature)

    def _generate(self, prompt: str, max_tokens: int, temperature: float) -> None:
        session = self.app.require_session()
        if session is None:
            return
        from engine.types import EngineError, GenerationRequest

        request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                                    case_id="interactive")
        try:
            self.job = self.app.runs.start_interactive(request)
        except EngineError as exc:  # another run holds the engine
            self.notify(str(exc), severity="warning")
            return
        output = self.query_one(StreamView)
        output.clear(head=f"› {prompt}")
        self.sanitizer = StreamSanitizer()
        self._shown_final = None
        self.generations += 1
        self.ticker.resume()
        output.focus()  # Esc stops it; typing goes back to the prompt

    def _settings(self) -> tuple[int, float] | None:
        raw_n = self.query_one("#live-max-tokens", Input).value.strip()
        raw_t = self.query_one("#live-temperature", Input).value.strip()
        try:
            n = int(raw_n)
            if not 1 <= n <= MAX_TOKENS_LIMIT:
                raise ValueError
        except ValueError:
            self.notify(f"max tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT}", severity="error")
            return None
        try:
            t = float(raw_t)
            if not 0 <= t <= 2:
                raise ValueError
        except ValueError:
            self.notify("temperature must be a number from 0 to 2", severity="error")
            return None
        return n, t

    def tick(self) -> None:
        view = self._view()
        meter = view.meters.get(0) if view is not None else None
        if meter is None:
            return
        snap = meter.snapshot()
        with self.app.batch_update():
            text = self.sanitizer.feed(snap.text) + (self.sanitizer.flush() if snap.done else "")
            self.query_one(StreamView).append(text)
            self.query_one(GaugePanel).show(snap)
        if snap.done and not view.running and snap.tps_now == 0:
            # Finished, and "tok/s now" has decayed to 0: nothing left to redraw.
            self._shown_final = view.job.job_id
            self.ticker.pause()

    # -- actions ------------------------------------------------------------------
    def stop_run(self) -> bool:
        """Stop this screen's kind of run (the app holds it); True when one was running."""
        if self.busy or self.queued is not None:
            self.action_stop()
            return True
        return False

    def action_stop(self) -> None:
        if self.busy:
            self.app.runs.stop()  # kept as aborted with what it streamed
            self.notify("stopping…", timeout=2)
        elif self.queued is not None:
            self.queued = None
            self.query_one(StreamView).clear()
            self.notify("queued prompt dropped", timeout=2)

    def action_focus_prompt(self) -> None:
        self.query_one("#live-prompt", Input).focus()

    def action_clear(self) -> None:
        if not self.busy:
            self.query_one(StreamView).clear()
