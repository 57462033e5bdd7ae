"""What a screen shows (issue 24), read as a user reads it: a checkbox's state in its characters, not
only its colour; every screen key (F7 Compare too), the engine and the database on the top line at
80x24; "no GPU" said once on a box without one, with no toast per run repeating it; side by side's
vllm row from the environment a run stored, as its detail shows it."""

from __future__ import annotations

import json
from types import SimpleNamespace

from textual.widgets import DataTable, Select, Static

from data.store.database import Store
from engine.telemetry.gpu import GpuSampler
from tests.support.fake_pynvml import FakeNvml
from tests.support.first_hour_support import screen_text
from tests.support.tui_support import add_fixed_run, fixed_store, settle
from tests.support.wait import wait_for
from tui.app import TokentopApp
from tui.screens.load import LoadScreen
from tui.screens.side_by_side import SideBySideScreen
from tui.widgets.gpu_panel import GpuPanel


class FakeSession:
    """An engine-less session (the app's status bar and the Load form need only these)."""

    device = "CPU"

    def __init__(self, store, gpu=None):
        self.store = store
        self.gpu = gpu

    def describe(self):
        return {"engine": "vllm", "model_label": "SmolLM2-135M-Instruct"}

    def shutdown(self):
        pass


async def test_a_checkbox_reads_on_or_off_without_colour(tmp_path):
    """Load's multi-turn box, off then on: the characters differ ("[ ]" / "[x]"), not only the style."""
    store = fixed_store(tmp_path / "fixed.duckdb")
    try:
        app = TokentopApp(store=store, session=FakeSession(store), autostart=False, db_label="fixed.duckdb")
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.press("f6")
            await wait_for(pilot, lambda: isinstance(app.screen, LoadScreen), 10)
            app.screen.query_one("#load-workload", Select).value = "sharegpt"  # its form has the box
            await pilot.pause()

            def box_line() -> str:
                return next(line for line in screen_text(app).splitlines() if "multi-turn" in line)

            box = app.screen.query_one("#load-multi-turn")
            await wait_for(pilot, lambda: box.region.width > 0, 10)
            off = box_line()
            box.focus()
            await pilot.press("space")
            await wait_for(pilot, lambda: box.value is True, 5)
            await pilot.pause()
            on = box_line()
            assert off != on, (off, on)
            assert "[x]" in on and "[ ]" in off, (off, on)
    finally:
        store.close()


async def test_the_top_line_at_80x24_has_every_screen_key_the_engine_and_the_database(tmp_path):
    store = fixed_store(tmp_path / "fixed.duckdb")
    try:
        app = TokentopApp(store=store, session=FakeSession(store), autostart=False, db_label="fixed.duckdb",
                          mode="history")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            for key in ("f4", "f2", "f3", "f7"):  # screens that are not for typing and ones that are; Compare
                await pilot.press(key)
                await pilot.pause()
                top = screen_text(app).splitlines()[0]
                for name in ("F2", "Live", "F3", "Suite", "F4", "History", "F5", "Prices", "F6", "Load",
                             "F7", "Compare", "vllm", "fixed.duckdb"):
                    assert name in top, (key, name, top)
                assert len(top.rstrip()) <= 80
    finally:
        store.close()


async def test_no_gpu_is_said_once_and_not_toasted_per_run(tmp_path):
    """A box without NVML: the GPU panel says "no GPU" once (with why); two finished loads add no
    toast saying it again (at most one for the app's lifetime)."""
    store = fixed_store(tmp_path / "fixed.duckdb")
    gpu = GpuSampler(nvml=FakeNvml(missing=True).module())
    try:
        app = TokentopApp(store=store, session=FakeSession(store, gpu), autostart=False, db_label="fixed.duckdb")
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await pilot.press("f6")
            await wait_for(pilot, lambda: isinstance(app.screen, LoadScreen), 10)
            screen = app.screen
            panel = screen.query_one(GpuPanel)
            await wait_for(pilot, lambda: panel.has_class("no-gpu"), 10)
            text = str(panel.query_one("#gpu-status", Static).render())
            assert text.count("no GPU") == 1, text
            assert "Shared Library Not Found" in text  # and why
            for _ in range(2):  # two loads end (no engine here: the screen is told as the app tells it)
                view = SimpleNamespace(result=SimpleNamespace(status="completed", error=None, stopped=False,
                                                              runs=["r"], stop_reason="all levels ran"),
                                       job=None)
                screen._load_finished(view)
                await pilot.pause()
            await wait_for(pilot, lambda: "done: 1 level(s) stored" in screen.last_message, 5)
            gpu_toasts = [n for n in app._notifications if "GPU" in f"{n.title} {n.message}"]
            assert len(gpu_toasts) <= 1, [str(n.message) for n in gpu_toasts]
    finally:
        store.close()


async def test_side_by_side_shows_the_vllm_version_each_run_stored(tmp_path, utc):
    """Runs recorded as tokentop records them: the version under the environment's "versions"."""
    from datetime import datetime, timezone

    store = Store(tmp_path / "versions.duckdb")
    ids = []
    for i, version in enumerate(("0.32.0", "0.33.1")):
        run_id = add_fixed_run(store, f"2025030{i + 1}-120000-v{i}v{i}v{i}", host="box", device="CPU", gpu_key=None,
                               started=datetime(2025, 3, i + 1, 12, tzinfo=timezone.utc), model="m", itl_ms=10.0,
                               ttft_ms=50.0, seed=i + 1)
        env = {"hostname": "box", "device": "CPU",
               "versions": {"tokentop": "0.1.0", "python": "3.11.9", "vllm": version, "torch": "2.9.0"}}
        with store.connection() as con:
            con.execute("UPDATE runs SET environment = ? WHERE run_id = ?", [json.dumps(env), run_id])
        ids.append(run_id)
    try:
        assert store.get_run(ids[0])["environment"]["versions"]["vllm"] == "0.32.0"
        app = TokentopApp(store=store, autostart=False, db_label="versions.duckdb", mode="history")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.open_side_by_side(ids)
            await wait_for(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen.runs, 20)
            await pilot.pause()
            table = app.screen.query_one(DataTable)
            rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            vllm = next(r for r in rows if r[0].strip().endswith("vllm"))
            assert vllm[1:] == ["0.32.0", "0.33.1"], vllm
            assert vllm[0].startswith("≠")  # the versions differ
    finally:
        store.close()
