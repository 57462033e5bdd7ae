"""The workload is visible wherever a run is: a column of History and `tokentop runs` (and History's filter
matches it), a line of `show` and a key of `show --json`; and one label names one workload, so two
multi-turn workloads never share a heading in Compare or `compare --slo`.

Runs are stored with the real Store and RunRecorder (no engine), as `tokentop load` stores its levels."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from data.jobs.load import LoadSpec, level_settings
from data.store.database import Store
from data.store.recorder import RunRecorder
from engine.load import LoadLevel, summarise_level
from engine.measure.metrics import json_safe, request_metrics
from engine.orchestrator import run_summary
from engine.workloads import WorkloadOptions, make_workload
from engine.workloads.conversations import ThinkTime
from engine.workloads.synthetic import RandomWorkload
from tests.support.first_hour_support import T0, _record
from tests.support.prompts import PromptSource
from tests.support.wait import wait_for
from tui.cli import main

SHAREGPT = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"Question {i} about GPUs, please?"},
                                              {"from": "gpt", "value": f"Answer {i}: GPUs are fast at matrices."},
                                              {"from": "human", "value": "And the memory bandwidth, then?"},
                                              {"from": "gpt", "value": "It bounds decode speed at batch one."}]}
            for i in range(4)]


def sharegpt(tmp_path, **kw):
    path = tmp_path / "ShareGPT_V3_tiny.json"
    path.write_text(json.dumps(SHAREGPT))
    return make_workload(WorkloadOptions(dataset_name="sharegpt", dataset_path=str(path), multi_turn=True, **kw))


def add_sweep(store: Store, identity: dict, *, ttft_ms=(80.0, 900.0), started: datetime,
              concurrencies=(1, 4), prompts: int = 4) -> list[str]:
    """A concurrency sweep stored as `tokentop load` stores it, on the workload `identity`."""
    desc = {"engine": "vllm", "model": "SmolLM2-135M-Instruct", "dtype": "bfloat16", "engine_args": {}}
    levels = [LoadLevel(max_concurrency=c, num_prompts=prompts) for c in concurrencies]
    spec = LoadSpec(levels=levels, prompts=PromptSource(input_len=128, output_len=16))
    ids = []
    for index, (level, ttft) in enumerate(zip(levels, ttft_ms)):
        rec = RunRecorder(store)
        run_id = rec.start(kind="load", engine_description=desc, environment={"hostname": "laptop", "device": "CPU"},
                           suite="load", suite_json=level_settings(spec, level, index), workload=identity)
        rec.set_origin(T0)
        metrics = []
        for i, req in enumerate(spec.prompts.requests(prompts, index)):
            m = request_metrics(_record(req, T0 + i * 10**9, ttft, 30.0, 16))
            rec.record(i, _record(req, T0 + i * 10**9, ttft, 30.0, 16), m)
            metrics.append(m)
        result = replace(summarise_level(level, metrics, 5.0, None), aborted=0, not_sent=0).to_dict()
        rec.finish("completed", duration_s=5.0, summary=json_safe(run_summary([], [], [], level_result=result)))
        with store.connection() as con:
            con.execute("UPDATE runs SET started_at = ?, pid = NULL WHERE run_id = ?",
                        [started + timedelta(minutes=index), run_id])
        ids.append(run_id)
    return ids


# -- the label --------------------------------------------------------------------------------------------
def test_two_random_multi_turn_workloads_with_other_think_times_get_two_labels():
    quick = RandomWorkload(128, 128, turns=3, think=ThinkTime(0.0))
    slow = RandomWorkload(128, 128, turns=3, think=ThinkTime(500.0))
    drawn = RandomWorkload(128, 128, turns=3, think=ThinkTime(500.0, "exponential"))
    labels = [w.identity()["label"] for w in (quick, slow, drawn)]
    assert len({w.identity()["key"] for w in (quick, slow, drawn)}) == 3
    assert labels == ["random 128→128 3 turns", "random 128→128 3 turns think 500ms",
                      "random 128→128 3 turns think ~500ms"]


def test_two_sharegpt_multi_turn_workloads_of_one_file_get_two_labels(tmp_path):
    two, four = sharegpt(tmp_path, max_turns=2), sharegpt(tmp_path, max_turns=4, turn_delay_ms=250)
    assert two.identity()["key"] != four.identity()["key"]
    assert two.label().endswith("multi-turn ≤2 turns")
    assert four.label().endswith("multi-turn ≤4 turns think 250ms")
    assert two.label().startswith("sharegpt ShareGPT_V3_tiny.json#")


def test_labels_that_several_workloads_share_get_the_start_of_their_keys():
    from data.analysis.workload_labels import distinct_labels

    labels = distinct_labels([("aaaa1111", "random 128→128"), ("aaaa2222", "random 128→128"),
                              ("bbbb0000", "sharegpt x.json"), ("aaaa1111", "an older label")])
    assert labels == {"aaaa1111": "random 128→128 #aaaa1", "aaaa2222": "random 128→128 #aaaa2",
                      "bbbb0000": "sharegpt x.json"}


@pytest.fixture
def two_multi_turn_sweeps(tmp_path, utc):
    """Two sweeps on multi-turn workloads stored with one label (as every run before labels said the think
    time): the first meets TTFT ≤ 500 ms at concurrency 1, the second at no level."""
    path = tmp_path / "mt.duckdb"
    store = Store(path)
    quick = RandomWorkload(128, 128, turns=3, think=ThinkTime(0.0)).identity()
    slow = RandomWorkload(128, 128, turns=3, think=ThinkTime(500.0)).identity()
    slow["label"] = quick["label"]  # "random 128→128 3 turns": the label such runs were stored with
    add_sweep(store, quick, ttft_ms=(80.0, 900.0), started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    add_sweep(store, slow, ttft_ms=(700.0, 1900.0), started=datetime(2025, 3, 6, 9, 0, tzinfo=timezone.utc))
    store.close()
    return str(path), quick, slow


def test_compare_slo_gives_each_multi_turn_workload_its_own_title(two_multi_turn_sweeps, capsys, monkeypatch):
    from data.analysis.frontier import cost_at_slo

    db, quick, slow = two_multi_turn_sweeps
    with Store(db) as store:
        answers = cost_at_slo(store, {"ttft": 500.0}, 99.0).answers
    assert len(answers) == 2
    titles = {a.workload_key: a.workload for a in answers}
    assert len(set(titles.values())) == 2  # Compare's SLO tab picks a workload by its label
    assert titles[quick["key"]].startswith("random 128→128 3 turns #")
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--db", db, "compare", "--slo", "ttft=500"]) == 0
    out = capsys.readouterr().out
    headings = [line for line in out.splitlines() if "· workload " in line]
    assert len(headings) == 2 and len(set(headings)) == 2, out


def test_compare_of_two_runs_names_two_workloads(two_multi_turn_sweeps, capsys, monkeypatch):
    db, quick, slow = two_multi_turn_sweeps
    with Store(db) as store:
        ids = [store.query("SELECT run_id FROM runs WHERE workload_key = ? ORDER BY started_at LIMIT 1",
                           [w["key"]])[0]["run_id"] for w in (quick, slow)]
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--db", db, "compare", *ids]) == 0
    out = capsys.readouterr().out
    named = [line for line in out.splitlines() if line.startswith("workload ")]
    assert len(named) == 2 and len(set(named)) == 2, out
    assert "ran different workloads" in out


# -- where a run is shown -------------------------------------------------------------------------------
@pytest.fixture
def random_and_sharegpt(tmp_path, utc):
    path = tmp_path / "w.duckdb"
    store = Store(path)
    random_ids = add_sweep(store, RandomWorkload(128, 128).identity(), concurrencies=(1,),
                           started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    share_ids = add_sweep(store, sharegpt(tmp_path, max_turns=2).identity(), concurrencies=(1,),
                          started=datetime(2025, 3, 6, 9, 0, tzinfo=timezone.utc))
    store.close()
    return str(path), random_ids[0], share_ids[0]


def test_runs_and_show_name_the_workload(random_and_sharegpt, capsys, monkeypatch):
    db, random_id, share_id = random_and_sharegpt
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--db", db, "runs"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "workload" in header.split() and "what" in header.split()
    rows = {line.split()[0]: line for line in out.splitlines() if line[:8].isdigit()}
    assert "random 128→128" in rows[random_id] and "sharegpt" in rows[share_id]
    assert "load c=1" in rows[random_id] and "load c=1" in rows[share_id]  # "what" alone cannot tell them apart

    assert main(["--db", db, "runs", "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[random_id]["workload_label"] == "random 128→128"
    assert listed[share_id]["workload_label"].startswith("sharegpt ShareGPT_V3_tiny.json#")

    assert main(["--db", db, "show", share_id]) == 0
    shown = capsys.readouterr().out
    assert "workload: sharegpt ShareGPT_V3_tiny.json#" in " ".join(shown.split())
    assert main(["--db", db, "show", share_id, "--json"]) == 0
    workload = json.loads(capsys.readouterr().out)["workload"]
    assert workload["kind"] == "sharegpt" and workload["params"]["max_turns"] == 2
    assert workload["label"].endswith("multi-turn ≤2 turns") and len(workload["key"]) == 12


def test_a_run_stored_before_workloads_shows_the_workload_it_derives(tmp_path, capsys, monkeypatch, utc):
    from datetime import datetime as dt

    from tests.support.first_hour_support import add_load_sweep

    db = tmp_path / "old.duckdb"
    store = Store(db)
    c1, _c8 = add_load_sweep(store, started=dt(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    store.close()
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--db", str(db), "runs"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(c1))
    assert "random 128→128 (before workloads)" in row


async def test_history_shows_and_filters_the_workload(random_and_sharegpt):
    from tests.support.tui_support import settle
    from tui.app import TokentopApp

    db, random_id, share_id = random_and_sharegpt
    store = Store(db)
    try:
        app = TokentopApp(store=store, autostart=False, db_label="w.duckdb", mode="history")
        async with app.run_test(size=(160, 24)) as pilot:
            await settle(pilot)
            history = app.screen
            table = history.query_one("#history-table")
            assert "workload" in [str(c.label) for c in table.columns.values()]
            cells = {r["run_id"]: [str(c) for c in history._cells(r)] for r in history.shown}
            assert "random 128→128" in cells[random_id] and "load c=1" in cells[random_id]
            assert any(c.startswith("sharegpt ShareGPT_V3_tiny.json#") for c in cells[share_id])
            await pilot.press("f", *"sharegpt", "escape")
            await pilot.pause()
            assert [r["run_id"] for r in history.shown] == [share_id]
            await pilot.press("f", "ctrl+u", *"multi-turn", "escape")
            await pilot.pause()
            assert [r["run_id"] for r in history.shown] == [share_id]
    finally:
        store.close()


async def test_compare_screen_shows_each_multi_turn_workload_in_its_own_slo_table(two_multi_turn_sweeps):
    """Compare (F7) picks a workload by its label (k moves on): one label for two workloads put one's
    "none meets" and the other's passing level in one SLO table."""
    from textual.widgets import DataTable, Static

    from tui.app import TokentopApp

    db, quick, slow = two_multi_turn_sweeps
    store = Store(db)
    try:
        app = TokentopApp(store=store, autostart=False, db_label="mt.duckdb", mode="history")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f7")
            screen = app.screen
            await wait_for(pilot, lambda: screen.slo is not None and screen.matrix is not None
                           and screen.frontier is not None, 30, "the matrix, SLO and frontier")
            assert len(screen.workloads()) == 2
            title = screen.query_one("#matrix-title", Static)
            await pilot.press("o")
            seen = []
            for _ in range(2):
                await pilot.pause()
                rows = [[str(c) for c in screen.query_one("#slo-table", DataTable).get_row_at(i)]
                        for i in range(screen.query_one("#slo-table", DataTable).row_count)]
                seen.append((str(title.render()), rows))
                from textual.widgets import Input

                if isinstance(app.focused, Input):  # the SLO field has the keys: leave it first
                    await pilot.press("escape")
                await pilot.press("k")
            assert seen[0][0] != seen[1][0]  # two titles
            # each table is one workload's: every row of one meets nothing, the other's first level passes
            verdicts = sorted(sorted({r[1] == "none meets" for r in rows}) for _t, rows in seen)
            assert verdicts == [[False], [True]], seen
    finally:
        store.close()


async def test_side_by_side_marks_two_workloads_stored_with_one_label(two_multi_turn_sweeps):
    from tests.support.tui_support import settle
    from tui.app import TokentopApp

    db, quick, slow = two_multi_turn_sweeps
    store = Store(db)
    try:
        ids = [store.query("SELECT run_id FROM runs WHERE workload_key = ? ORDER BY started_at LIMIT 1",
                           [w["key"]])[0]["run_id"] for w in (quick, slow)]
        app = TokentopApp(store=store, autostart=False, db_label="mt.duckdb", mode="history")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.open_side_by_side(ids)
            await settle(pilot)
            assert "workload" in app.screen.differences  # ≠ on the workload row
    finally:
        store.close()
