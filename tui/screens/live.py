"""Live screen: a prompt box, the streamed answer, and big gauges refreshed on a timer."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from engine.live import LiveMeter, StreamSanitizer
from tui.messages import ClientHealthWarnings, InteractiveStored
from tui.widgets.gauges import GaugePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream_view import StreamView

REFRESH_HZ = 10
MAX_TOKENS_LIMIT = 32768


class LiveScreen(Screen):
    BINDINGS = [
        Binding("slash", "focus_prompt", "Prompt", id="live.prompt"),
        Binding("escape", "stop", "Stop", id="live.stop"),
        Binding("ctrl+l", "clear", "Clear", id="live.clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="live")
        self.meter = LiveMeter(window_s=1.0, bucket_s=0.25)
        self.sanitizer = StreamSanitizer()
        self.handle = None
        self.last_run_id: str | None = None
        self.generations = 0

    def compose(self) -> ComposeResult:
        yield StatusBar()
        with Horizontal(id="live-controls"):
            prompt = Input(placeholder="Type a prompt, Enter to generate", id="live-prompt")
            prompt.border_title = "prompt"
            yield prompt
            max_tokens = Input("128", type="integer", id="live-max-tokens", restrict=r"[0-9]*", max_length=5)
            max_tokens.border_title = "max"
            yield max_tokens
            temp = Input("0.8", type="number", id="live-temperature", max_length=4)
            temp.border_title = "temp"
            yield temp
        with Horizontal(id="live-main"):
            yield StreamView(id="live-output", placeholder="The answer streams here. Esc stops a generation.")
            yield GaugePanel(id="live-gauges")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.ticker = self.set_interval(1 / REFRESH_HZ, self.tick, pause=True)
        self.query_one("#live-prompt", Input).focus()

    # -- generation -------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.handle is not None

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
        session = self.app.require_session()
        if session is None:
            return
        from engine.types import GenerationRequest

        max_tokens, temperature = settings
        request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                                    case_id="interactive")
        output = self.query_one(StreamView)
        output.clear(head=f"› {prompt}")
        self.sanitizer = StreamSanitizer()
        self.meter.begin()
        self.handle = session.generate_interactive(request, self.meter.feed)
        self.generations += 1
        self.ticker.resume()
        output.focus()  # keys (q, 1-3, Esc) work again; / returns to the prompt

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
        handle = self.handle
        record = None
        if handle is not None and handle.done():
            try:
                record = handle.result(0)
            except Exception as exc:  # the engine raised: show it, keep the app alive
                self.notify(f"generation failed: {exc}", severity="error")
            self.meter.finish(st_ns=record.st_ns if record else None)
        snap = self.meter.snapshot()
        with self.app.batch_update():
            self.query_one(StreamView).append(self.sanitizer.feed(snap.text) + (self.sanitizer.flush() if snap.done else ""))
            self.query_one(GaugePanel).show(snap)
        if handle is not None and handle.done():
            self.handle = None
            self.ticker.pause()
            if record is not None:
                self.store_record(record)

    @work(thread=True, exit_on_error=False, group="store")
    def store_record(self, record) -> None:
        session = self.app.session
        try:
            run_id = session.store_interactive(record)
            status = "completed" if record.success else ("aborted" if record.aborted else "failed")
            self.post_message(InteractiveStored(run_id, status, record.error))
            warnings = session.last_client_health.get("warnings") or []
            if warnings:
                self.post_message(ClientHealthWarnings(run_id, warnings))
        except Exception as exc:
            self.post_message(InteractiveStored(None, "failed", f"not stored: {exc}"))

    @on(InteractiveStored)
    def stored(self, message: InteractiveStored) -> None:
        self.last_run_id = message.run_id
        if message.run_id is None:
            self.notify(message.error or "the run was not stored", severity="error")
        elif message.status == "failed":
            self.notify(f"run {message.run_id} failed: {message.error}", severity="error")
        else:
            self.notify(f"stored run {message.run_id} ({message.status})", timeout=3)

    # -- actions ------------------------------------------------------------------
    def action_stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.notify("stopping…", timeout=2)
        elif self.focused is not None and self.focused.id == "live-prompt":
            self.query_one(StreamView).focus()

    def stop_all(self) -> None:
        """On quit: stop the generation and still store it (as aborted)."""
        handle, self.handle = self.handle, None
        if handle is None:
            return
        handle.cancel()
        try:
            record = handle.result(timeout=5)
            self.app.session.store_interactive(record)
        except Exception:
            pass

    def action_focus_prompt(self) -> None:
        self.query_one("#live-prompt", Input).focus()

    def action_clear(self) -> None:
        if not self.busy:
            self.query_one(StreamView).clear()
