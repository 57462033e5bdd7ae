"""Each `load` option is declared once (engine.workloads.options) and both roads use it: the command's
argparse options and the app's Load form are made from the declarations, and a bad value is refused
with the same one line by `tokentop load` and by the form (issue 22 step 1)."""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager

import pytest
from textual.widgets import Checkbox, Input, Select

from engine.workloads.options import field_shown, form_fields, form_workloads, load_options
from tests.support.tui_support import fixed_store
from tests.tui.test_keys import FakeSession, make_app
from tui.cli import build_parser, main
from tui.cli.common import add_db_option, add_engine_options


def _load_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["load"]


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Each option's first flag (the dest's name), help excluded."""
    return [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"]


@asynccontextmanager
async def load_form(tmp_path):
    """The app at 100x40 on a fixed store (no engine), on its Load screen (F6 from History); yields (pilot,
    the Load screen) and closes the store after."""
    store = fixed_store(tmp_path / "fixed.duckdb")
    try:
        app = make_app(store, "history", session=FakeSession(store))
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("f6")
            await pilot.pause()
            yield pilot, app.screen
    finally:
        store.close()


def test_every_load_option_of_the_command_has_exactly_one_declaration():
    shared = argparse.ArgumentParser()  # the options every command shares: not the load's own
    add_db_option(shared)
    add_engine_options(shared, suppress=True)
    shared.add_argument("--json", action="store_true")
    own = [f for f in _flags(_load_parser()) if f not in set(_flags(shared))]
    declared = [o.flag for o in load_options()]
    assert len(own) > 20
    assert sorted(own) == sorted(declared)  # each once: no option is written twice, none by hand
    assert len(declared) == len(set(declared))


async def test_the_load_form_has_a_field_for_each_declaration_of_the_chosen_workload(tmp_path):
    async with load_form(tmp_path) as (pilot, screen):
        for kind in form_workloads():
            screen.query_one("#load-workload", Select).value = kind
            await pilot.pause()
            for opt in form_fields():
                if not opt.field.group:  # the fields every workload has
                    assert screen.query_one(f"#{opt.field.id}").display
                    continue
                widget = screen.query_one(f"#{opt.field.id}")
                if field_shown(opt, kind, {"multi_turn": False}):  # applies to this workload
                    assert widget.parent.display, (kind, opt.flag)
                elif not any(kind in o.form_workloads() for o in form_fields(opt.field.group)):
                    assert not widget.parent.display, (kind, opt.flag)  # another workload's own
                if not isinstance(widget, Checkbox):
                    assert widget.placeholder
        screen.query_one("#load-workload", Select).value = "sharegpt"
        screen.query_one("#load-multi-turn", Checkbox).value = True
        await pilot.pause()
        assert screen.query_one("#load-think").parent.display  # think time: with multi-turn on


@pytest.mark.parametrize("kind, field, value, argv", [
    ("random", "#load-burstiness", "abc", ["--request-rate", "2", "--burstiness", "abc"]),
    ("timed_trace", "#load-time-scale", "0", ["--dataset-name", "timed_trace", "--dataset-path", "t.jsonl",
                                              "--timed-trace-sec-multiplier", "0"]),
    ("random", "#load-range-ratio", "", ["--random-prefix-len", "-1"]),
])
async def test_a_bad_value_is_refused_with_the_same_line_by_the_command_and_the_form(kind, field, value, argv,
                                                                                    tmp_path, capsys):
    assert main(["load", "--db", str(tmp_path / "x.duckdb"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokentop: error: ") and err.count("\n") == 0
    line = err[len("tokentop: error: "):].split(" (see `tokentop load --help`)")[0]

    async with load_form(tmp_path) as (pilot, screen):
        screen.query_one("#load-workload", Select).value = kind
        await pilot.pause()
        if kind == "timed_trace":
            screen.query_one("#load-file", Input).value = str(tmp_path / "t.jsonl")
        if value:
            screen.query_one(field, Input).value = value
        else:  # a number field takes digits only: the value a user cannot type is set as pasted text
            screen.query_one("#load-prefix-len", Input).value = "-1"
        await pilot.pause()
        with pytest.raises(Exception) as refused:
            screen.build_spec()
        assert str(refused.value) == line
