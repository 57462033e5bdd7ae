"""Keyboard everywhere (issue 9): screen keys from every focus state, the palette lists every screen
and action whatever has focus, Help lists the current screen's keys, Esc leaves a field, form fields
do not swallow keys, a prompt typed during engine start-up runs once the engine is ready."""

from __future__ import annotations

import time
from concurrent.futures import Future

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, Select

from tests.support.tui_support import fixed_store
from tests.support.wait import wait_for
from tui.app import TokentopApp
from tui.messages import EngineReady
from tui.screens.help import HelpScreen
from tui.screens.load import LoadScreen
from tui.screens.prices import PricesScreen
from tui.widgets.stream_view import StreamView

SCREEN_KEYS = {"f2": "live", "f3": "suite", "f4": "history"}


@pytest.fixture
def fixed(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    store = fixed_store(tmp_path / "fixed.duckdb")
    yield store
    store.close()
    monkeypatch.undo()
    time.tzset()


class FakeOrchestrator:
    """Takes runs without running them: the test only checks what the app asked for."""

    def __init__(self, requests: list):
        self.requests = requests
        self.current = None

    def subscribe(self, sink, chunks=False):
        return lambda: None

    def start_interactive(self, request):
        from engine.orchestrator import Job

        self.requests.append(request)
        return Job("interactive")

    def stop(self, wait=None):
        return None


class FakeSession:
    """What the app needs from a started engine session, without an engine."""

    device = "CPU"
    gpu = None

    def __init__(self, store):
        self.store = store
        self.requests = []
        self.orchestrator = FakeOrchestrator(self.requests)

    def describe(self):
        return {"engine": "vllm", "model_label": "fake-model"}

    def generate_interactive(self, request, on_chunk):
        self.requests.append(request)
        return Future()  # never finishes: the test stops it

    def shutdown(self):
        pass


def make_app(store, mode="live", session=None) -> TokentopApp:
    return TokentopApp(store=store, session=session, autostart=False, db_label="fixed.duckdb", mode=mode)


async def focus_state(app, pilot, state: str):
    """Put the app in one focus state: a text field, a number field, a table, a form field."""
    screen_mode, selector = {
        "live prompt": ("live", "#live-prompt"),
        "live max tokens": ("live", "#live-max-tokens"),
        "suite name": ("suite", "#suite-name"),
        "suite reps": ("suite", "#suite-reps"),
        "history table": ("history", "#history-table"),
        "history filter": ("history", "#history-filter"),
    }[state]
    await app.switch_mode(screen_mode)
    await pilot.pause()
    app.screen.query_one(selector).focus()
    await pilot.pause()
    assert app.focused is app.screen.query_one(selector)


FOCUS_STATES = ["live prompt", "live max tokens", "suite name", "suite reps", "history table", "history filter"]


async def test_screen_keys_switch_screens_from_every_focus_state(fixed):
    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        for state in FOCUS_STATES:
            for key, mode in SCREEN_KEYS.items():
                await focus_state(app, pilot, state)
                await pilot.press(key)
                await pilot.pause()
                assert app.current_mode == mode and len(app.screen_stack) == 1, (state, key)
        for state in ("live prompt", "suite reps"):  # a text field, a number field
            await focus_state(app, pilot, state)
            await pilot.press("f5")
            await pilot.pause()
            assert isinstance(app.screen, PricesScreen), state
            await pilot.press("f4")  # from a pushed screen straight to another one
            await pilot.pause()
            assert app.current_mode == "history" and len(app.screen_stack) == 1
            await focus_state(app, pilot, state)
            await pilot.press("f6")
            await pilot.pause()
            assert isinstance(app.screen, LoadScreen), state
            app.screen.query_one("#load-levels", Input).focus()  # a Load form field has focus
            await pilot.press("f1")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen) and app.screen.title_text == "Load"
            await pilot.press("f2")  # from Help too
            await pilot.pause()
            assert app.screen.id == "live"


async def test_typing_in_fields_never_switches_screens(fixed):
    app = make_app(fixed, "suite")
    async with app.run_test(size=(80, 24)) as pilot:
        suite = app.screen
        name = suite.query_one("#suite-name", Input)
        name.focus()
        name.value = ""
        await pilot.press(*"seed2", "q", "p", "l", "question_mark")
        assert name.value == "seed2qpl?" and app.screen is suite and app.is_running
        live_prompt_keys = "1 2 3 p l q ? /".split()
        await app.switch_mode("live")
        await pilot.pause()
        prompt = app.screen.query_one("#live-prompt", Input)
        prompt.focus()
        await pilot.press(*[{"?": "question_mark", "/": "slash"}.get(k, k) for k in live_prompt_keys])
        assert prompt.value == "123plq?/" and app.screen.id == "live"


async def test_reps_field_leaves_r_enter_and_esc_to_the_screen(fixed):
    app = make_app(fixed, "suite")
    async with app.run_test(size=(80, 24)) as pilot:
        suite = app.screen
        reps = suite.query_one("#suite-reps", Input)
        reps.focus()
        await pilot.press("3", "r")  # 3 types; r is not a digit: it runs the suite
        assert reps.value == "3"
        await pilot.pause()
        assert any("engine not started" in str(n.message) for n in app._notifications)
        app._notifications.clear()
        await pilot.press("enter")  # Enter in the field runs it too
        await pilot.pause()
        assert any("engine not started" in str(n.message) for n in app._notifications)
        await pilot.press("escape")  # Esc leaves the field, to the results table
        assert isinstance(app.focused, DataTable) and app.screen is suite
        await pilot.press("2")  # now a screen shortcut again (focus is out of the field)
        assert app.screen is suite and reps.value == "3"


async def test_esc_leaves_any_field_and_a_second_esc_does_the_screen_back(fixed):
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        for selector in ("#live-prompt", "#live-max-tokens", "#live-temperature"):
            app.screen.query_one(selector).focus()
            await pilot.press("escape")
            assert isinstance(app.focused, StreamView), selector
        await pilot.press("f6")
        await pilot.pause()
        load = app.screen
        assert isinstance(load, LoadScreen)
        for selector in ("#load-levels", "#load-input-len", "#load-slo", "#load-pattern"):
            load.query_one(selector).focus()
            await pilot.press("escape")
            assert app.screen is load and not isinstance(app.focused, (Input, Select)), selector
        await pilot.press("escape")  # the second Esc: the Load screen's Back
        await pilot.pause()
        assert app.screen.id == "live"


async def test_space_in_history_marks_without_moving_the_cursor(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        history = app.screen
        table = history.query_one(DataTable)
        await pilot.press("down")
        row = table.cursor_row
        await pilot.press("space")
        assert table.cursor_row == row and history.marked == [history.cursor_run_id()]
        await pilot.press("space")
        assert table.cursor_row == row and history.marked == []


async def palette_titles(app, pilot, query: str = "") -> list[str]:
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(app.screen, CommandPalette)
    if query:
        await pilot.press(*query)
    await wait_for(pilot, lambda: app.screen.query_one(CommandList).options, 10, "the palette's commands")
    return [str(o.prompt).split("\n")[0] for o in app.screen.query_one(CommandList).options]


async def test_palette_lists_every_screen_and_action_with_the_prompt_focused(fixed):
    app = make_app(fixed, "live")
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.focused.id == "live-prompt"
        titles = await palette_titles(app, pilot)
        for name in ("Live", "Suite", "History", "Prices", "Load", "Compare", "Run suite", "Start load",
                     "Stop", "Quit", "Help"):
            assert any(t == name or t.startswith(f"{name} (") for t in titles), (name, titles)
        assert "Suite (F3)" in titles and "History (F4)" in titles
        await pilot.press("escape")
        await pilot.pause()
        # search by name and run it: the prompt had focus, History opens
        await palette_titles(app, pilot, "history")
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "history"


async def test_palette_quit_exits(fixed):
    app = make_app(fixed, "suite")
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#suite-reps").focus()
        await palette_titles(app, pilot, "quit")
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.parametrize("mode", ["live", "suite", "history"])
async def test_help_lists_every_key_of_the_current_screen(fixed, mode):
    app = make_app(fixed, mode)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("f1")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        shown = help_screen.rows()
        bindings = type(screen).BINDINGS
        for binding in bindings:
            key = app.get_key_display(binding)
            texts = {b.tooltip or b.description for b in bindings if b.action == binding.action}
            assert any(key in keys.split(" / ") and text in texts for keys, text in shown), (mode, binding)
        for key in ("F2", "F3", "F4", "F5", "F6", "F10", "^p"):
            assert any(key in keys.split(" / ") for keys, _t in shown), key
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_question_mark_opens_help_when_no_field_has_focus(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and app.screen.title_text == "History"


async def test_a_prompt_typed_during_start_up_runs_when_the_engine_is_ready(fixed):
    app = make_app(fixed, "live")
    app.engine_state, app.engine_message = "starting", "loading the model"
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        await pilot.press(*"hello", "enter")
        await pilot.pause()
        assert live.queued is not None and not live.busy
        assert "queued: runs when the engine is ready" in live.query_one(StreamView).text
        session = FakeSession(fixed)
        app.post_message(EngineReady(session))
        await pilot.pause()
        await pilot.pause()
        assert [r.prompt for r in session.requests] == ["hello"]
        assert live.queued is None  # handed to the app's run orchestrator, not queued twice


def test_every_binding_of_every_screen_has_an_id():
    import importlib
    import pkgutil

    from textual.screen import Screen

    import tui.screens

    screens = []
    for info in pkgutil.iter_modules(tui.screens.__path__):
        module = importlib.import_module(f"tui.screens.{info.name}")
        screens += [c for c in vars(module).values()
                    if isinstance(c, type) and issubclass(c, Screen) and c.__module__ == module.__name__]
    assert len(screens) >= 9
    for screen in [*screens, TokentopApp]:
        for binding in screen.BINDINGS:
            assert binding.id, (screen.__name__, binding)


async def test_s_puts_the_cursor_in_the_suite_field_whatever_has_focus(fixed):
    """`s` on Suite moves the cursor into the suite field from the state the screen opens in and from its
    table and answer pane; inside the field `s` is typed, like any letter."""
    app = make_app(fixed, "live")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3", "s")  # at once: before or after the screen's own focus, the same result
        await pilot.pause()
        suite = app.screen
        name = suite.query_one("#suite-name", Input)
        assert suite.id == "suite" and suite.focused is name
        for home in (DataTable, StreamView):
            suite.query_one(home).focus()
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            assert suite.focused is name, home
        await pilot.press("end", "s")
        assert name.value == "seeds"


async def test_a_path_typed_right_after_s_goes_into_the_suite_field(fixed):
    """A terminal delivers `s` and the path typed after it in one burst (tmux send-keys, a paste, a fast
    typist): every key must land in the field. Were the cursor moved one step later, `t`, `m`, `p` and `l`
    would toggle the theme and open Compare, Prices and Load (CI met that)."""
    from textual import events

    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        suite, theme = app.screen, app.theme
        for key in ["s", *"tmpl"]:  # queued together, as the driver queues keys read in one go
            app._driver.send_message(events.Key(key, key))
        await pilot.pause()
        await pilot.pause()
        assert app.screen is suite and app.theme == theme
        assert suite.query_one("#suite-name", Input).value == "tmpl"  # focusing selects "seed": typing replaces it


@pytest.mark.parametrize("mode, keys, field", [
    ("suite", ["shift+tab"] * 3, "#suite-name"),  # table -> answer pane -> reps -> the suite field
    ("load", ["tab"], "#load-levels"),  # pattern -> levels
])
async def test_tab_counts_from_the_screens_auto_focus_even_before_it_is_applied(fixed, mode, keys, field):
    """A Tab that comes before the screen has applied its auto-focus (nothing focused yet: a loaded box)
    lands where it does a moment later, not where Textual's Tab from no focus goes (the first widget)."""
    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6" if mode == "load" else "f3")
        await pilot.pause()
        settled = app.screen.focused
        assert settled is not None  # the screen's auto-focus, as a user normally finds it
        app.screen.set_focus(None)  # the state a key can meet before the screen resumes
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
        assert app.screen.focused is app.screen.query_one(field)


async def test_a_level_typed_right_after_tab_goes_into_the_levels_field(fixed):
    """Tab and a digit in one burst on Load: the digit goes into the levels field Tab moved to, not to
    the selector Tab left, where `1` would switch to Live."""
    from textual import events

    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        load = app.screen
        for key, char in (("tab", None), ("1", "1"), ("comma", ","), ("3", "3")):
            app._driver.send_message(events.Key(key, char))
        await pilot.pause()
        await pilot.pause()
        assert app.screen is load and load.query_one("#load-levels", Input).value == "1,3"
