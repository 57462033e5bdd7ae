"""The Load form keeps what the user typed for the app's lifetime: F6, type a ShareGPT multi-turn load,
F4 for a look at History, F6 again — the values are there, and Ctrl+R asks to run them (not the default
sweep). The app is the real TokentopApp with an engine-less session; the test checks what the screen
asks the app to run (AppRuns.start_load), not an engine."""

from __future__ import annotations

import json

from textual.widgets import Checkbox, Input, Select

from tests.support.tui_support import fixed_store, settle
from tests.tui.test_keys import FakeSession, make_app
from tui.screens.load import LoadScreen

SHAREGPT = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"Question {i} about GPUs, please?"},
                                              {"from": "gpt", "value": f"Answer {i}: GPUs are fast at matrices."},
                                              {"from": "human", "value": "And the memory bandwidth, then?"},
                                              {"from": "gpt", "value": "It bounds decode speed at batch one."}]}
            for i in range(4)]


async def _type(pilot, app, field: str, text: str) -> None:
    widget = app.screen.query_one(field, Input)
    widget.focus()
    await pilot.pause()
    widget.value = ""  # the field's default goes, as a user's select-and-type would
    await pilot.press(*text)


async def test_the_load_form_keeps_its_values_across_screens_and_ctrl_r_runs_them(tmp_path):
    data = tmp_path / "sg.json"
    data.write_text(json.dumps(SHAREGPT))
    store = fixed_store(tmp_path / "fixed.duckdb")
    asked: list = []
    try:
        app = make_app(store, "history", session=FakeSession(store))
        async with app.run_test(size=(100, 40)) as pilot:
            from engine.types import EngineError

            def start_load(spec):  # what the screen asks the app to run
                asked.append(spec)
                raise EngineError("recorded by the test")

            app.runs.start_load = start_load
            await pilot.press("f6")
            await pilot.pause()
            assert isinstance(app.screen, LoadScreen)
            app.screen.query_one("#load-workload", Select).value = "sharegpt"
            await pilot.pause()
            await _type(pilot, app, "#load-file", str(data))
            await _type(pilot, app, "#load-levels", "1,3")
            await _type(pilot, app, "#load-output-len", "64")
            app.screen.query_one("#load-multi-turn", Checkbox).focus()
            await pilot.press("space")
            await pilot.pause()
            await _type(pilot, app, "#load-max-turns", "2")

            await pilot.press("escape", "f4")  # a look at History
            await settle(pilot)
            assert app.current_mode == "history" and not isinstance(app.screen, LoadScreen)
            await pilot.press("f6")
            await pilot.pause()
            load = app.screen
            assert isinstance(load, LoadScreen)
            assert load.query_one("#load-workload", Select).value == "sharegpt"
            assert load.query_one("#load-file", Input).value == str(data)
            assert not load.query_one("#load-file", Input).disabled
            assert load.query_one("#load-levels", Input).value == "1,3"
            assert load.query_one("#load-output-len", Input).value == "64"
            assert load.query_one("#load-multi-turn", Checkbox).value is True
            assert load.query_one("#load-max-turns", Input).value == "2"
            assert load.query_one("#opts-sharegpt").display  # the workload's own fields show

            await pilot.press("ctrl+r")
            await pilot.pause()
    finally:
        store.close()
    assert len(asked) == 1
    spec = asked[0]
    assert [level.max_concurrency for level in spec.levels] == [1, 3]
    workload = spec.prompts.identity()
    assert workload["kind"] == "sharegpt" and workload["file"]["name"] == "sg.json"
    assert workload["params"]["multi_turn"] is True and workload["params"]["max_turns"] == 2
    assert workload["params"]["output_len"] == 64


async def test_compare_keeps_the_slo_last_typed(tmp_path):
    """F7, type an SLO and a percentile, Enter; leave for History; F7 again: the same SLO, computed."""
    from tui.screens.matrix import CompareMatrixScreen

    store = fixed_store(tmp_path / "fixed.duckdb")
    try:
        app = make_app(store, "history")
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("f7", "o")
            screen = app.screen
            assert isinstance(screen, CompareMatrixScreen)
            await _type(pilot, app, "#slo-input", "ttft=250,tpot=40")
            await _type(pilot, app, "#slo-percentile", "90")
            await pilot.press("enter", "escape", "f4")
            await settle(pilot)
            assert app.current_mode == "history" and len(app.screen_stack) == 1
            await pilot.press("f7")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, CompareMatrixScreen)
            assert screen.query_one("#slo-input", Input).value == "ttft=250,tpot=40"
            assert screen.query_one("#slo-percentile", Input).value == "90"
            assert (screen.slo_text, screen.percentile) == ("ttft=250,tpot=40", 90.0)
    finally:
        store.close()
