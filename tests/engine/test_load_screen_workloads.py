"""The app chooses the workload: the Load screen runs every workload kind on the real engine (stored with
its workload), its fields follow the chosen kind and fit 80x24; the Suite screen runs a suite whose prompts
come from a dataset file."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Checkbox, DataTable, Input, Label, Select

from tests.support.apps import LoadHost
from tests.support.wait import wait_for
from tui.app import TokentopApp

pytestmark = pytest.mark.timeout(600)


def write_files(tmp_path) -> dict[str, str]:
    sharegpt = tmp_path / "sg.json"
    sharegpt.write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "Tell me about GPU memory bandwidth please"},
        {"from": "gpt", "value": "It is how fast the weights can be read"},
        {"from": "human", "value": "And what about the KV cache then"},
        {"from": "gpt", "value": "It grows with every token of the context"}]}] * 3))
    custom = tmp_path / "prompts.jsonl"
    custom.write_text("".join(json.dumps({"prompt": f"Name a prime number above {i}.", "output_tokens": 3}) + "\n"
                              for i in range(4)))
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 200 * i, "input_length": 24, "output_length": 3,
                                         "hash_ids": [5, 6]}) + "\n" for i in range(2)))
    suite = tmp_path / "chats.toml"
    suite.write_text(f'name = "chats"\nreps = 1\n[dataset]\nname = "custom"\npath = "{custom.name}"\n'
                     'num_prompts = 2\noutput_len = 3\n')
    return {"sharegpt": str(sharegpt), "custom": str(custom), "timed_trace": str(trace),
            "mooncake_trace": str(trace), "suite": str(suite)}


# (workload, fields to type, form switches) -> the run's stored workload kind
CASES = {
    "random": ({"#load-input-len": "16", "#load-output-len": "3", "#load-range-ratio": "0.2"}, "random"),
    "random-multi-turn": ({"#load-input-len": "12", "#load-output-len": "3", "#load-turns": "2",
                           "#load-think": "exp 20"}, "random"),
    "prefix_repetition": ({"#load-output-len": "3", "#load-prefix": "32", "#load-suffix": "8",
                           "#load-prefixes": "2"}, "prefix_repetition"),
    "sharegpt": ({"#load-output-len": "3", "#load-think": "10"}, "sharegpt"),
    "custom": ({}, "custom"),
    "timed_trace": ({"#load-block": "16", "#load-time-scale": "0.0005"}, "timed_trace"),
    "mooncake_trace": ({"#load-block": "16"}, "mooncake_trace"),
    "suite": ({}, "custom"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_load_screen_runs_each_workload_and_stores_it(case, session, store, tmp_path):
    kind = case.split("-")[0]
    fields, stored_kind = CASES[case]
    files = write_files(tmp_path)
    app = LoadHost(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#load-workload", Select).value = kind
        await pilot.pause()
        if kind in files:
            screen.query_one("#load-file", Input).value = files[kind]
        if kind == "sharegpt":
            screen.query_one("#load-multi-turn", Checkbox).value = True
            await pilot.pause()
        if not kind.endswith("_trace"):
            screen.query_one("#load-levels", Input).value = "2"
            screen.query_one("#load-num-prompts", Input).value = "2"
        for field, value in fields.items():
            widget = screen.query_one(field, Input)
            assert widget.display and widget.parent.display, f"{field} is shown for {kind}"
            widget.value = value
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not screen.running and screen.finished, 240)
        assert [f.status for f in screen.finished] == ["completed"], screen.last_message
        assert "done: 1 level(s) stored" in screen.last_message
        run = store.get_run(screen.finished[0].run_id)
        assert run["workload"]["kind"] == stored_kind and run["workload_key"] and run["workload_label"]
        rows = store.get_requests(run["run_id"])
        assert rows and all(r["success"] for r in rows)
        if case == "random-multi-turn" or kind == "sharegpt":
            assert {r["turn_index"] for r in rows} == {0, 1}
            assert screen.turn_lines and "turn 1" in screen.turn_lines[0] and "turn 2" in screen.turn_lines[0]
            # in the sweep's notes (n), which its one end-of-sweep notice points at (issue 24)
            await wait_for(pilot, lambda: "TTFT p50 by turn" in screen.notes, 10)
            assert run["workload"]["params"]["turn_delay_dist"] == ("exponential" if kind == "random" else "fixed")
        if kind.endswith("_trace"):
            assert screen.finished[0].label == "trace" and len(rows) == 2
        if kind == "random":
            assert run["workload"]["params"]["range_ratio"] == 0.2 or case != "random"


async def test_the_form_shows_only_the_chosen_workloads_fields_and_says_what_is_wrong(session):
    app = LoadHost(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        shown = lambda group: screen.query_one(f"#{group}").display  # noqa: E731
        assert shown("opts-random") and not shown("opts-prefix") and not shown("opts-trace")
        assert screen.query_one("#load-file", Input).disabled
        screen.query_one("#load-workload", Select).value = "mooncake_trace"
        await pilot.pause()
        assert shown("opts-trace") and not shown("opts-random")
        assert screen.query_one("#load-levels", Input).disabled and screen.query_one("#load-input-len", Input).disabled
        assert screen.query_one("#load-time-scale", Input).placeholder == "0.001"
        assert screen.query_one("#load-output-len", Input).value == ""  # the trace's own lengths
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not screen.running
        assert any("reads a file" in n.message for n in app._notifications)
        screen.query_one("#load-file", Input).value = "/nonexistent/trace.jsonl"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any("trace.jsonl does not exist" in n.message for n in app._notifications)
        screen.query_one("#load-workload", Select).value = "random"
        await pilot.pause()
        assert screen.query_one("#load-output-len", Input).value == "128"
        assert screen.query_one("#load-input-len", Input).value == "128"
        # every label and every field inside 80 columns, whatever the workload
        for kind in ("random", "prefix_repetition", "sharegpt", "custom", "timed_trace", "suite"):
            screen.query_one("#load-workload", Select).value = kind
            await pilot.pause()
            for widget in [*screen.query(Label), *screen.query(Input), *screen.query(Checkbox)]:
                if all(node.display for node in widget.ancestors_with_self if hasattr(node, "display")):
                    assert 0 < widget.region.width and widget.region.right <= 80, (kind, widget.id, widget.region)
                    if isinstance(widget, Input):  # its whole value or placeholder shows
                        shown = widget.value or widget.placeholder
                        assert len(shown) < widget.content_region.width, (kind, widget.id, shown)


async def test_the_suite_screen_runs_a_suite_of_dataset_prompts(session, store, tmp_path):
    files = write_files(tmp_path)
    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#suite-name", Input).value = files["suite"]
        screen.query_one("#suite-reps", Input).value = "1"
        await pilot.pause()
        screen.query_one(DataTable).focus()
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.last_status is not None, 180)
        assert screen.last_status == "completed"
        row = screen.query_one(DataTable).get_row("custom")
        assert str(row[2]) == "2/2"
        run = store.get_run(screen.last_run_id)
    assert run["kind"] == "suite" and run["workload"]["kind"] == "custom"
    assert run["workload"]["file"]["name"] == "prompts.jsonl"
    prompts = sorted(r["prompt"] for r in store.get_requests(run["run_id"]))
    assert len(prompts) == 2 and all(p.startswith("Name a prime number above") for p in prompts)
