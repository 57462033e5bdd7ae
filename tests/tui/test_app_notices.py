"""What the app tells a user about work it does in the background: runs pushed to TOKENTOP_REMOTE
(or not), and notices carrying untrusted text (a server's reply, an engine error) shown as plain text."""

from __future__ import annotations

import asyncio

import pytest

from data.store.database import Store
from data.travel import remote as remote_mod
from tests.support.transfer_support import record_run
from tests.support.wait import wait_for
from tui.app import TokentopApp


async def wait_notice(pilot, app, needle: str, timeout: float = 60.0) -> str:
    def notice() -> str | None:
        return next((str(n.message) for n in app._notifications if needle in str(n.message)), None)

    try:
        await wait_for(pilot, notice, timeout, f"a notice with {needle!r}")
    except AssertionError:
        raise AssertionError(f"no notice with {needle!r}; saw {[str(n.message) for n in app._notifications]}") from None
    return notice()


@pytest.fixture
def fresh_pushers(monkeypatch):
    monkeypatch.setattr(remote_mod, "_pushers", {})
    monkeypatch.setattr(remote_mod, "_global_listeners", [])


async def test_app_says_a_finished_run_reached_the_remote(tmp_path, monkeypatch, fresh_pushers):
    share = tmp_path / "share"
    share.mkdir()
    monkeypatch.setenv("TOKENTOP_REMOTE", str(share))
    store = Store(tmp_path / "box.duckdb")
    app = TokentopApp(store=store, autostart=False, db_label="box.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        run_id = await asyncio.to_thread(record_run, store, seed=1)  # finish() queues the push
        message = await wait_notice(pilot, app, "pushed run(s)")
        assert run_id in message and str(share) in message
    assert set(remote_mod.open_remote(str(share)).complete_runs()) == {run_id}
    # Closed, the app no longer hears about pushes.
    assert not remote_mod._global_listeners and not remote_mod.auto_pusher().listeners


async def test_app_says_a_push_failed_and_keeps_the_run(tmp_path, monkeypatch, fresh_pushers):
    monkeypatch.setenv("TOKENTOP_REMOTE", str(tmp_path / "not-mounted" / "share"))
    store = Store(tmp_path / "box.duckdb")
    app = TokentopApp(store=store, autostart=False, db_label="box.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        run_id = await asyncio.to_thread(record_run, store, seed=2)
        message = await wait_notice(pilot, app, "failed")
        assert run_id in message and "retried on the next push" in message
        severity = next(n.severity for n in app._notifications if n.message == message)
        assert severity == "warning"
    assert store.get_run(run_id)["status"] == "completed"
    assert len(store.get_requests(run_id)) == 3


async def test_notices_show_untrusted_text_as_plain_text(tmp_path):
    store = Store(tmp_path / "box.duckdb")
    app = TokentopApp(store=store, autostart=False, db_label="box.duckdb")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        # A server reply quoted in an error: "[/b]" would be a closing markup tag (and raise).
        app.notify("the engine could not start: server said [/b] [bold]oops[/bold]", severity="error")
        app.screen.notify("request failed: [red]x")
        def shown() -> list[str]:
            return [str(t.render()) for t in app.screen.query("Toast")]

        await wait_for(pilot, lambda: len(shown()) >= 2, 10, "both toasts on screen")
        toasts = shown()
        assert any("server said [/b] [bold]oops[/bold]" in t for t in toasts), toasts
        assert any("request failed: [red]x" in t for t in toasts), toasts


def screen_lines(app) -> list[str]:
    """The screen as text, toasts included (what a terminal or a browser shows)."""
    update = app.screen._compositor.render_update(full=True)
    return ["".join(segment.text for segment in strip) for strip in update.strips]


@pytest.mark.parametrize("size", [(80, 24), (122, 32)], ids=["80x24", "browser-122x32"])
async def test_a_finished_runs_notices_leave_its_figures_readable(tmp_path, size):
    """The serve browser test once missed `TTFT <n> ms` right after "stored run" (issue 15): the notices
    at the end of a run (engine ready, one toast per client self-check warning, stored run) stack up
    bottom-right, over the gauge panel, as high as its TTFT row. A finished run says one thing, once."""
    import re
    import time

    from engine.orchestrator import ChunkArrived, Job, JobStarted, RequestStarted, RunFinished, RunInfo, RunWatcher
    from engine.types import Chunk, GenerationRequest
    from tui.messages import RunEvent

    store = Store(tmp_path / "box.duckdb")
    app = TokentopApp(store=store, autostart=False, db_label="box.duckdb")
    async with app.run_test(size=size, notifications=True) as pilot:
        job, watcher = Job("interactive"), RunWatcher()
        app.runs.watcher = watcher
        watcher(JobStarted(job))
        t0 = time.perf_counter_ns()
        watcher(RequestStarted("r", job.job_id, 0, 1, GenerationRequest("Name three colours.", 128), t0))
        for i in range(28):
            watcher(ChunkArrived("r", job.job_id, 0, Chunk(t0 + 1_250_000_000 + i * 60_000_000, "red ", 1)))
        app.screen.tick()
        app.notify("engine ready: vllm · SmolLM2-135M-Instruct · CPU", timeout=30)  # as the app says it
        run_id = "20261129-090033-ab04e1"
        warnings = ["client event loop lagged: mean 12.3 ms (p99 45 ms) > 10.0 ms; timestamps may be late — "
                    "the client may be the bottleneck",
                    "the server sent 1.35 tokens per chunk: per-chunk ITL is not per-token latency; use TPOT"]
        info = RunInfo(run_id, job.job_id, "interactive", "interactive", total=1)
        app.post_message(RunEvent(RunFinished(info, "completed", 3.1, {"client_health": {"warnings": warnings}})))
        notice = await wait_notice(pilot, app, "stored run")
        await wait_for(pilot, lambda: "stored run" in "\n".join(screen_lines(app)), 30, "its toast drawn")
        screen = "\n".join(screen_lines(app))
        assert "stored run" in screen, screen
        assert re.search(r"TTFT\s+\d+ ms", screen) and re.search(r"TPS \(req\)\s+[\d.]+ tok/s", screen), screen
        assert "2 client self-check warnings" in notice  # the warnings themselves: in the run
        assert len(app.screen.query("Toast")) == 2  # engine ready, and one for the finished run
