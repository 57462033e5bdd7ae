"""The first hour on the real engine: a stopped load counts no request it never sent (through the CLI with
Ctrl-C, and in the app with Ctrl+X typed from a form field), and the suite's ETA counts tokens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from textual.widgets import Input

from tests.support.apps import LoadHost
from tests.support.first_hour_support import cut_numbers, screen_text
from tests.support.wait import wait_for

pytestmark = pytest.mark.engine


def test_ctrl_c_on_a_load_counts_no_unsent_request_as_failed(tokentop_cmd, cli_env, tmp_path):
    db = str(tmp_path / "stop.duckdb")
    proc = subprocess.Popen([*tokentop_cmd, "load", "--concurrency", "1", "--num-prompts", "20", "--input-len", "16",
                             "--output-len", "24", "--db", db], env=dict(cli_env, COLUMNS="80"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "5/20 requests" in line:  # a quarter of the level done (the progress line, by tokens)
                break
        assert any("5/20 requests" in line for line in lines), "".join(lines)[-2000:]
        assert any("120/480 tok" in line and "ETA" in line for line in lines), "".join(lines)[-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, rest[-2000:]
    # At COLUMNS=80 the level's line wraps with an indent (issue 24): read it whole.
    rest_lines = rest.splitlines()
    at = next(i for i, line in enumerate(rest_lines) if "concurrency 1: aborted" in line)
    level = rest_lines[at]
    for more in rest_lines[at + 1:]:
        if not more.startswith(" "):
            break
        level += " " + more.strip()
    m = re.search(r"(\d+) ok / (\d+) failed(?: / (\d+) stopped mid-stream)? \((\d+) not sent\)", level)
    assert m, level
    ok, failed, stopped, not_sent = int(m[1]), int(m[2]), int(m[3] or 0), int(m[4])
    assert failed == 0 and ok >= 5 and stopped <= 1 and ok + stopped + not_sent == 20, level
    assert "sweep: stopped by you during concurrency 1" in out and "stopped: stopped" not in out + rest
    assert all(len(line) <= 80 for line in out.splitlines()) and not cut_numbers(out), out

    from data.store.database import Store

    with Store(db) as store:
        (listed,) = store.list_runs()
        run = store.get_run(listed["run_id"])
        requests = store.get_requests(run["run_id"])
    # Stored: what finished and what the stop cut short; nothing for the requests never sent.
    assert len(requests) == ok + stopped
    assert all(r["success"] or r["error"] == "aborted" for r in requests)
    assert run["summary"]["overall"]["failed"] == 0 and run["summary"]["overall"]["not_sent"] == not_sent


def test_the_bench_eta_counts_tokens(tokentop_cmd, cli_env, tmp_path):
    """A short case first, then one eight times longer: after the first request the ETA must expect the
    long one to take about eight times as long (by requests it said 1x: 'ETA 6s' before a 24 s case)."""
    suite = tmp_path / "uneven.toml"
    suite.write_text('reps = 1\n[[cases]]\nid = "short"\nprompt = "Say hi."\noutput_tokens = 8\n'
                     '[[cases]]\nid = "long"\nprompt = "Tell a story."\noutput_tokens = 64\n')
    out = subprocess.run([*tokentop_cmd, "bench", "--suite", str(suite), "--db", str(tmp_path / "eta.duckdb")],
                         env=cli_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    first = next(line for line in out.stderr.splitlines() if line.startswith("[1/2]"))
    m = re.search(r"8 tok, TTFT (\d+) ms, TPS ([\d.]+) tok/s \(8/72 tok · ETA (\d+):(\d\d)\)", first)
    assert m, first
    e2el_s = 8 / float(m[2])
    eta_s = int(m[3]) * 60 + int(m[4])
    assert eta_s >= 0.5 * 8 * e2el_s, (first, e2el_s)  # 64 tokens left at the first 8 tokens' pace
    assert "engine ready in" in out.stderr and "importing vLLM" in out.stderr  # the start-up counts the import


async def test_ctrl_x_from_a_load_field_stops_it_and_counts_no_unsent_request(session, store):
    app = LoadHost(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        levels = screen.query_one("#load-levels", Input)
        levels.value = "1"
        screen.query_one("#load-input-len", Input).value = "16"
        screen.query_one("#load-output-len", Input).value = "32"
        screen.query_one("#load-num-prompts", Input).value = "20"
        levels.focus()
        await pilot.press("ctrl+r")  # start, from the field
        await wait_for(pilot, lambda: screen.running and screen.job is not None, 30)
        await pilot.pause(0.6)
        levels.focus()  # a start moves the cursor to the results table (issue 24); back in the field
        await pilot.pause()
        assert app.focused is levels
        await pilot.press("ctrl+x")  # stop, from the same field
        await wait_for(pilot, lambda: not screen.running, 60)
        assert "stopped" in screen.last_message
        (row,) = [level.summary for level in screen.finished]
        assert row.failed == 0 and row.completed + row.aborted + row.not_sent == 20
        text = screen_text(app)
        assert not cut_numbers(text), cut_numbers(text)
    runs = [r for r in store.list_runs() if r["kind"] == "load"]
    assert len(runs) == 1 and runs[0]["requests"] == row.completed + row.aborted
