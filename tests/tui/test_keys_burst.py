"""Keys in the order typed (issue 24): a terminal hands the app every key it read in one go (tmux
send-keys, a paste, a fast typist on a laggy link). Textual 8.2.8 types a letter at once but runs an
editing key (Left, Home, Ctrl+U, Enter: the field's bindings) only once it has bubbled up to the app,
so the letters behind it overtook it: `hello`, Left, Left, `X` gave `helloX`
(Textualize/textual#6605). These tests queue each burst through the driver, as the terminal does,
and check the text and the Enter on Live and on every field of the Load form."""

from __future__ import annotations

import pytest
from textual import events
from textual.app import App
from textual.widgets import Input, Select

from tests.tui.test_keys import FakeSession, fixed, make_app  # noqa: F401  (fixed: the fixture)
from tui.screens.load import LoadScreen
from tui.widgets.fields import TextField

NAMED = {"left", "right", "home", "end", "backspace", "delete", "enter", "tab", "ctrl+u"}
CHAR_KEY = {",": "comma", ".": "full_stop", " ": "space", "!": "exclamation_mark", "?": "question_mark"}


def keys_of(burst: list[str]) -> list[tuple[str, str | None]]:
    """'hello' is five letters; 'left', 'ctrl+u', 'enter', ... are keys."""
    out: list[tuple[str, str | None]] = []
    for item in burst:
        if item in NAMED:
            out.append((item, {"enter": "\r", "tab": "\t"}.get(item)))
        else:
            out += [(CHAR_KEY.get(c, c), c) for c in item]
    return out


async def send_burst(app, pilot, burst: list[str]) -> None:
    """Queue every key before the app handles one, as the driver does with keys read together."""
    for key, character in keys_of(burst):
        app._driver.send_message(events.Key(key, character))
    for _ in range(12):  # every key has bubbled as far as it goes
        await pilot.pause()


@pytest.mark.parametrize("field_class", [Input, TextField])
async def test_plain_textual_input_loses_the_order_and_textfield_keeps_it(field_class):
    """The upstream reproduction (benchmarks/textual_key_order.py): a plain Textual Input gives
    `helloX`; the app's TextField gives `helXlo`, what bash's readline gives for the same keys."""

    class OneField(App):
        def compose(self):
            yield field_class(id="field")

    app = OneField()
    async with app.run_test() as pilot:
        field = app.query_one("#field", Input)
        await send_burst(app, pilot, ["hello", "left", "left", "X"])
        assert field.value == ("helloX" if field_class is Input else "helXlo")


@pytest.mark.parametrize("start, burst, typed", [
    ("", ["hello", "left", "left", "X"], "helXlo"),
    ("", ["abc", "home", "Z"], "Zabc"),
    ("an old prompt", ["ctrl+u", "Why is the sky blue?"], "Why is the sky blue?"),
    ("", ["helo", "left", "l", "end", "backspace", "o!", "home", "delete", "H"], "Hello!"),
])
async def test_live_prompt_takes_a_burst_in_order_and_its_enter(fixed, start, burst, typed):
    session = FakeSession(fixed)
    app = make_app(fixed, "live", session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        prompt = live.query_one("#live-prompt", Input)
        prompt.value = start
        prompt.cursor_position = len(start)
        await pilot.pause()
        assert app.focused is prompt
        await send_burst(app, pilot, [*burst, "enter"])
        # the Enter came after the text: the generation asked for exactly what was typed
        assert prompt.value == typed
        assert [r.prompt for r in session.requests] == [typed]


@pytest.mark.parametrize("field", ["#live-max-tokens", "#live-temperature"])
async def test_live_number_fields_take_a_burst_in_order(fixed, field):
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        widget = app.screen.query_one(field, Input)
        widget.focus()
        widget.value = ""
        await pilot.pause()
        await send_burst(app, pilot, ["2", "home", "1", "end", "8"])
        assert widget.value == "128"


# Every text field of the Load form, with the workload that shows it.
LOAD_FIELDS = [
    ("random", "#load-levels"), ("sharegpt", "#load-file"), ("random", "#load-input-len"),
    ("random", "#load-output-len"), ("random", "#load-num-prompts"), ("random", "#load-burstiness"),
    ("random", "#load-range-ratio"), ("random", "#load-prefix-len"), ("random", "#load-turns"),
    ("prefix_repetition", "#load-prefix"), ("prefix_repetition", "#load-suffix"),
    ("prefix_repetition", "#load-prefixes"), ("sharegpt", "#load-max-turns"),
    ("timed_trace", "#load-time-scale"), ("timed_trace", "#load-block"), ("random", "#load-think"),
    ("random", "#load-warmups"), ("random", "#load-slo"),
]


@pytest.mark.parametrize("workload, field", LOAD_FIELDS)
async def test_every_load_field_takes_a_burst_in_order_and_its_enter(fixed, monkeypatch, workload, field):
    """`2` `4` Home `1` End `8` Left `0` Enter: the field reads 12408 and Enter submits that (the
    old order gave 2480 and submitted whatever had arrived)."""
    submitted: list[tuple[str, str]] = []

    def hook(message):
        if isinstance(message, Input.Submitted) and message.input is not None:
            submitted.append((message.input.id, message.value))

    from engine.types import EngineError
    from tui.runs import AppRuns

    def start_load(runs, spec):  # the Enter reached Start; no load runs (there is no engine here)
        raise EngineError("not in this test")

    monkeypatch.setattr(AppRuns, "start_load", start_load)
    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        load = app.screen
        assert isinstance(load, LoadScreen)
        load.query_one("#load-workload", Select).value = workload
        await pilot.pause()
        widget = load.query_one(field, Input)
        assert isinstance(widget, TextField) and widget.display and not widget.disabled
        widget.value = ""
        widget.focus()
        await pilot.pause()
        await send_burst(app, pilot, ["2", "4", "home", "1", "end", "8", "left", "0", "enter"])
        assert widget.value == "12408"
        assert (field[1:], "12408") in {(i, v) for i, v in submitted if i == field[1:]}


async def test_the_levels_field_takes_commas_in_order(fixed):
    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        levels = app.screen.query_one("#load-levels", Input)
        # every text field of the form is one of LOAD_FIELDS, each tested above
        assert {f"#{w.id}" for w in app.screen.query(Input)} == {f for _w, f in LOAD_FIELDS}
        assert all(isinstance(w, TextField) for w in app.screen.query(Input))
        levels.focus()
        levels.value = ""
        await pilot.pause()
        await send_burst(app, pilot, ["2,4", "home", "1,"])
        assert levels.value == "1,2,4"


async def test_editing_keys_typed_right_after_tab_keep_their_place(fixed):
    """The type-ahead (keys typed behind Tab reach the field Tab moved to) keeps the order too: the
    Home behind `1` is not run ahead of it."""
    app = make_app(fixed, session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        load = app.screen
        levels = load.query_one("#load-levels", Input)
        levels.value = ""
        assert app.focused is load.query_one("#load-pattern")
        await send_burst(app, pilot, ["tab", "2,4", "home", "1,"])
        assert app.screen is load and levels.value == "1,2,4"


@pytest.mark.parametrize("burst, typed", [
    # Textualize/textual#6605 (its inj.py demo: one key press injects "ba\x7fckspace" into stdin)
    (["b", "a", "backspace", "ckspace"], "bckspace"),
    # Textualize/textual PR #6631's regression test: b, a, backspace, c posted without waiting -> "bc"
    (["b", "a", "backspace", "c"], "bc"),
])
async def test_textual_6605_backspace_in_a_burst(fixed, burst, typed):
    """The upstream report's own key sequences, on the Live prompt: Textual 8.2.8 gives 'ba…'."""
    session = FakeSession(fixed)
    app = make_app(fixed, "live", session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one("#live-prompt", Input)
        await send_burst(app, pilot, [*burst, "enter"])
        assert prompt.value == typed and [r.prompt for r in session.requests] == [typed]
