"""The Load screen and the GPU panel on a tiny host app (Pilot)."""

from __future__ import annotations

from textual.app import App
from textual.widgets import DataTable, Input, Label, Select, Static

from engine.telemetry.gpu import GpuSampler
from tests.support.apps import LoadHost
from tests.support.fake_pynvml import FakeNvml
from tests.support.wait import wait_for
from tui.widgets.gpu_panel import GpuPanel


class PanelApp(App):
    def __init__(self, sampler=None):
        super().__init__()
        self.sampler = sampler

    def compose(self):
        yield GpuPanel(self.sampler, refresh_s=0.05)


async def test_gpu_panel_without_gpu_says_so():
    sampler = GpuSampler(nvml=FakeNvml(missing=True).module())
    app = PanelApp(sampler)
    async with app.run_test() as pilot:
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        assert panel.has_class("no-gpu")
        text = str(panel.query_one("#gpu-status", Static).render())
        assert "no GPU (NVML unavailable)" in text


async def test_gpu_panel_on_this_cpu_machine():
    app = PanelApp()  # the real pynvml: no GPU here
    async with app.run_test() as pilot:
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        assert panel.sampler.available or panel.has_class("no-gpu")


async def test_gpu_panel_shows_gauges_and_sparklines_from_nvml_double():
    fake = FakeNvml(gpus=[{"name": "NVIDIA H100 80GB HBM3 [bold]x[/bold]", "mem_total": 80 * 1024**3}])
    sampler = GpuSampler(interval_s=0.02, nvml=fake.module()).start()
    app = PanelApp(sampler)
    try:
        async with app.run_test() as pilot:
            panel = app.query_one(GpuPanel)
            await wait_for(pilot, lambda: len(panel._util.get(0, ())) >= 3, 5)
            line = str(panel.query_one("#gpu-line-0", Static).render())
            assert "87 %" in line and "300/700 W" in line and "64 °C" in line and "40.0/80 GiB" in line
            # The driver's name is shown as plain text, markup and all.
            names = [str(lbl.render()) for lbl in panel.query(Label)]
            assert any("[bold]x[/bold]" in n for n in names)
    finally:
        sampler.stop()


async def test_load_screen_runs_a_sweep_and_charts_it(session, store):
    from tui.screens.load import LoadScreen

    app = LoadHost(session)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LoadScreen)
        screen.query_one("#load-levels", Input).value = "1,2"
        screen.query_one("#load-input-len", Input).value = "16"
        screen.query_one("#load-output-len", Input).value = "8"
        screen.query_one("#load-num-prompts", Input).value = "2"
        screen.query_one("#load-slo", Input).value = "ttft=60000"
        await pilot.click("#load-start")
        await wait_for(pilot, lambda: not screen.running and screen.finished, 90)
        assert [row.summary.level.max_concurrency for row in screen.finished] == [1, 2]
        assert screen.query_one("#load-table", DataTable).row_count == 2
        assert len(screen.points) == 2
        assert "done: 2 level(s) stored" in screen.last_message
        runs = [r for r in store.list_runs() if r["kind"] == "load"]
        assert len(runs) == 2
        # Then the sweep's frontier (no GPU here: unpriced points, but the same chart and Pareto marks).
        await wait_for(pilot, lambda: screen.frontier is not None, 30)
        assert screen.chart_view == "frontier" and len(screen.frontier.points) == 2
        assert any(p.pareto_user for p in screen.frontier.points)


async def test_load_screen_rejects_bad_settings(session):
    app = LoadHost(session)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#load-levels", Input).value = "1,zero"
        await pilot.click("#load-start")
        await pilot.pause()
        assert not screen.running
        assert any("not a whole number" in n.message for n in app._notifications)
        screen.query_one("#load-pattern", Select).value = "rate"
        screen.query_one("#load-levels", Input).value = "-2"
        await pilot.click("#load-start")
        await pilot.pause()
        assert not screen.running
