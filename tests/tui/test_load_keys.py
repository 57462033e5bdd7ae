"""The Load form at the keyboard (issue 24): digits typed on a button or selector of the form stay on
the form (F2-F7 switch screens, or Esc then the digit); after a sweep started with Enter in the levels
field, `v` pages the results table instead of being typed into the field; F6 opens the form while the
engine starts and Ctrl+R then waits for it; a sweep ends with one notice, its notes a key away (n); the
live line counts tokens as they stream. Keys go through the driver, as a terminal delivers them."""

from __future__ import annotations

from textual.widgets import Input

from engine.load import LiveLoad, LoadLevel
from engine.orchestrator import Job, JobFinished, JobStarted, RunFinished, RunInfo, RunStarted, RunWatcher
from engine.types import RequestRecord
from tests.support.wait import wait_for
from tests.tui.test_keys import FakeSession, fixed, make_app  # noqa: F401  (fixed: the fixture)
from tests.tui.test_keys_burst import send_burst
from tui.messages import EngineReady
from tui.runs import AppRuns
from tui.screens.load import NOTE_CHECK, NOTE_FAILED, NOTE_SPLIT, NOTE_STEADY, NOTE_TURNS, LoadNotes, LoadScreen
from tui.widgets.paged_table import PagedTable

FORM_CONTROLS = ["#load-pattern", "#load-workload", "#load-start", "#load-multi-turn", "#load-num-prompts"]


async def open_load(app, pilot) -> LoadScreen:
    await pilot.press("f6")
    await wait_for(pilot, lambda: isinstance(app.screen, LoadScreen), 10, "the Load screen")
    await pilot.pause()
    return app.screen


async def test_digits_and_letters_on_a_form_control_stay_on_the_load_screen(fixed):
    """`2,4` typed on a selector, a checkbox, the Start button (or `q` in a number field) used to open
    Suite (and `q` quit); the rest landed in Live's prompt. On the form they do nothing; F3 still opens
    Suite, and so does Esc (out of the form, to the table) then 2."""
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one("#live-prompt", Input)
        load = await open_load(app, pilot)
        for selector in FORM_CONTROLS:
            control = load.query_one(selector)
            control.focus()
            await pilot.pause()
            await send_burst(app, pilot, ["2,4", "q", "p", "m", "1"])
            assert app.screen is load and app.current_mode == "live", selector
            assert app.is_running and prompt.value == "", selector
            assert load.focused is control, selector
        await pilot.press("f3")  # the F-keys always work
        await wait_for(pilot, lambda: app.current_mode == "suite", 10, "Suite")
        load = await open_load(app, pilot)
        load.query_one("#load-start").focus()
        await pilot.pause()
        await pilot.press("escape")
        assert app.screen is load and isinstance(load.focused, PagedTable)  # out of the form, still on Load
        await pilot.press("2")
        await wait_for(pilot, lambda: app.current_mode == "suite" and len(app.screen_stack) == 1, 10, "Suite")


def _level(job: Job, index: int) -> RunInfo:
    level = LoadLevel(max_concurrency=index + 1, num_prompts=5)
    return RunInfo(f"20261206-120000-lvl00{index}", job.job_id, "load", "load", total=5, level_index=index,
                   level=level)


class Lengths:
    """A workload whose every request generates 100 tokens (engine.measure.progress.workload_lengths)."""

    notes: list[str] = []

    def planned_lengths(self, n: int) -> list[int]:
        return [100] * n

    def label(self) -> str:
        return "random"


def fake_start(asked: list):
    """AppRuns.start_load without an engine: a load job the test drives through the app's watcher."""

    def start_load(runs, spec):
        job = Job("load")
        job.live = LiveLoad()
        asked.append(spec)
        runs.watcher = runs.watcher or RunWatcher()
        runs.watcher(JobStarted(job))
        return job

    return start_load


async def test_v_after_a_sweep_started_from_the_levels_field_pages_the_table(fixed, monkeypatch):
    asked: list = []
    monkeypatch.setattr(AppRuns, "start_load", fake_start(asked))
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        load = await open_load(app, pilot)
        levels = load.query_one("#load-levels", Input)
        levels.focus()
        levels.value = ""
        await pilot.pause()
        await send_burst(app, pilot, ["1", "enter"])
        assert len(asked) == 1 and levels.value == "1"
        job, watcher = load.job, app.runs.watcher
        info = _level(job, 0)
        watcher(RunStarted(info))
        finished = RunFinished(info, "completed", 1.0, {"overall": {"label": "concurrency 1", "completed": 5}})
        watcher(finished)
        watcher(JobFinished(job.job_id, "load", "completed", (finished,)))
        await wait_for(pilot, lambda: load._final_shown, 10, "the sweep's end")
        table = load.query_one("#load-table", PagedTable)
        assert len(table.pages) > 1  # at 80 columns the results take more than one page
        await send_burst(app, pilot, ["v"])
        assert levels.value == "1" and table.page == 1


async def test_f6_opens_the_form_while_the_engine_starts_and_ctrl_r_waits_for_it(fixed, monkeypatch):
    asked: list = []
    monkeypatch.setattr(AppRuns, "start_load", fake_start(asked))
    app = make_app(fixed, "history")
    app.engine_state, app.engine_message = "starting", "loading the model"
    async with app.run_test(size=(80, 24)) as pilot:
        load = await open_load(app, pilot)  # it was refused for the whole start
        await pilot.press("ctrl+r")
        await pilot.pause()
        status = str(load.query_one("#load-status").render())
        assert "the engine is starting; the sweep starts when it is ready" in status
        assert asked == [] and load.queued is not None
        app.post_message(EngineReady(FakeSession(fixed)))
        await wait_for(pilot, lambda: len(asked) == 1, 10, "the queued sweep to start")
        assert load.queued is None and "running 3 level(s)" in str(load.query_one("#load-status").render())


def _level_summary(label: str) -> dict:
    from engine.measure.metrics import aggregate

    # A level as the screen gets it: vLLM's keys (engine.load.results.LevelSummary.from_dict reads them), then
    # the figures this test is about.
    return {**aggregate([], 2.0),
            "label": label, "completed": 3, "failed": 2, "failure_rate": 0.4, "failures_by_kind": {"HTTP 503": 2},
            "duration": 2.0, "steady_state": None, "steady_state_note": "no plateau: too short",
            "ttft_by_turn": {"0": {"p50_ms": 12.0}, "1": {"p50_ms": 30.0}},
            "mean_ttft_client_ms": 40.0, "median_ttft_client_ms": 38.0, "mean_server_queue_time_ms": 5.0,
            "median_server_queue_time_ms": 5.0, "mean_server_ttft_ms": 20.0, "median_server_ttft_ms": 20.0,
            "mean_ttft_rest_ms": 15.0, "median_ttft_rest_ms": 13.0, "server_timed_requests": 3}


async def test_a_sweep_ends_with_one_notice_and_its_notes_a_key_away(fixed, monkeypatch):
    """Steady state, the TTFT split, TTFT by turn and the failures were four toasts over the table and
    the chart; now one notice (the failures, and where the rest is) and the notes behind `n`."""
    monkeypatch.setattr(AppRuns, "start_load", fake_start([]))
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        load = await open_load(app, pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: load.job is not None, 10, "the sweep")
        job, watcher = load.job, app.runs.watcher
        runs = []
        for i, label in enumerate(["concurrency 1", "concurrency 2"]):
            info = _level(job, i)
            watcher(RunStarted(info))
            runs.append(RunFinished(info, "completed", 1.0, {"overall": _level_summary(label)}))
            watcher(runs[-1])
        app._notifications.clear()
        watcher(JobFinished(job.job_id, "load", "completed", tuple(runs)))
        await wait_for(pilot, lambda: load._final_shown, 10, "the sweep's end")
        await pilot.pause()
        notices = list(app._notifications)
        assert len(notices) == 1, [n.title for n in notices]
        (notice,) = notices
        assert notice.title == "Load done: 2 level(s) stored" and notice.severity == "warning"
        assert "concurrency 1: 2 of 5 failed (40 %): HTTP 503 ×2" in notice.message
        assert "n: steady state, TTFT split, TTFT by turn" in notice.message
        assert list(load.notes) == [NOTE_FAILED, NOTE_STEADY, NOTE_SPLIT, NOTE_TURNS]
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LoadNotes), 10, "the notes")
        text = app.screen.text().plain
        assert "concurrency 2: no plateau: too short" in text and "concurrency 2: turn 1 12 ms, turn 2 30 ms" in text
        assert "median 38 = 5.0 + 20 + 13, 3 req" in text
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is load


async def test_the_live_line_counts_tokens_while_a_long_request_streams(fixed):
    """At concurrency 1 the count (and the ETA) moved only when a request ended; now the tokens the
    request in flight has streamed count as they come."""
    app = make_app(fixed, "live", session=FakeSession(fixed))
    async with app.run_test(size=(80, 24)) as pilot:
        load = await open_load(app, pilot)
        load.workload = Lengths()
        job, watcher = Job("load"), RunWatcher()
        job.live = LiveLoad()
        job.live.reset("concurrency 1", 0)
        app.runs.watcher = watcher
        watcher(JobStarted(job))
        watcher(RunStarted(_level(job, 0)))
        record = RequestRecord(request=None)
        job.live.sent, job.live.in_flight, job.live.streaming = 1, 1, {1: record}

        def line() -> str:
            return str(load.query_one("#load-live").visual)

        await wait_for(pilot, lambda: "0/500 tok" in line(), 10, "the level's line")
        record.chunk_tokens.extend([1] * 30)
        await wait_for(pilot, lambda: "30/500 tok" in line(), 10, "30 tokens streamed")
        record.chunk_tokens.extend([1] * 40)
        await wait_for(pilot, lambda: "70/500 tok" in line(), 10, "70 tokens streamed")
        assert "ETA –:––" not in line()


async def test_a_levels_client_self_check_is_in_the_sweeps_notes_not_a_toast_per_level(fixed, monkeypatch):
    """Each level whose client self-check warned added a toast of its own over the table (three levels of
    a busy box: three toasts); now the warnings are in the sweep's notes, named in its one notice."""
    monkeypatch.setattr(AppRuns, "start_load", fake_start([]))
    app = make_app(fixed, "live", session=FakeSession(fixed))
    warning = "client event loop lagged: mean 12.3 ms > 10.0 ms; timestamps may be late"
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        load = await open_load(app, pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: load.job is not None, 10, "the sweep")
        job, watcher = load.job, app.runs.watcher
        app._notifications.clear()
        runs = []
        for i, label in enumerate(["concurrency 1", "concurrency 2", "concurrency 4"]):
            info = _level(job, i)
            watcher(RunStarted(info))
            summary = {"overall": {"label": label, "completed": 5, "failed": 0, "duration": 2.0},
                       "client_health": {"warnings": [warning]}}
            runs.append(RunFinished(info, "completed", 1.0, summary))
            watcher(runs[-1])
        await wait_for(pilot, lambda: len(load.finished) == 3, 10, "the three levels in the table")
        watcher(JobFinished(job.job_id, "load", "completed", tuple(runs)))
        await wait_for(pilot, lambda: load._final_shown, 10, "the sweep's end")
        await pilot.pause()
        notices = list(app._notifications)
        assert [n.title for n in notices] == ["Load done: 3 level(s) stored"], [n.message for n in notices]
        assert "n: client self-check" in notices[0].message
        assert load.notes[NOTE_CHECK] == [f"concurrency {c}: {warning}" for c in (1, 2, 4)]
